"""A local simulator of Groupon CommerceInterface (CI) and the GPN Transaction API.

``create_app`` and ``SimState`` are importable from here; they load lazily so that importing a
submodule (e.g. ``mock_ci_server.carriers``) does not pull in Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mock_ci_server.app import create_app
    from mock_ci_server.state import SimState

__all__ = ["SimState", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from mock_ci_server.app import create_app

        return create_app
    if name == "SimState":
        from mock_ci_server.state import SimState

        return SimState
    raise AttributeError(f"module 'mock_ci_server' has no attribute {name!r}")
