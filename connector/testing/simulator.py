"""Start a CommerceInterface simulator for a host's tests, on a socket or in process.

This module (with :mod:`connector.demo`) is the only part of :mod:`connector` that imports
:mod:`mock_ci_server`; it is test tooling, never used by the plugin itself.
"""

from __future__ import annotations

import importlib.util
import secrets
import shutil
import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from connector.mappings import default_mappings_dir
from connector.models import Account, AccountOptions
from connector.secrets import Secret

__all__ = [
    "MissingExtraError",
    "SimulatorHandle",
    "Transport",
    "make_account",
    "require_extras",
    "running_simulator",
]

Transport = Literal["socket", "in_process"]
IN_PROCESS_URL = "http://ci-simulator.invalid"


class MissingExtraError(ImportError):
    """The simulator (or its in-process transport) needs packages of an optional extra."""


# transport -> modules it imports; which extra brings them
_NEEDS: dict[str, tuple[str, ...]] = {
    "socket": ("flask", "waitress"),
    "in_process": ("flask", "responses"),
}


def require_extras(transport: str = "socket", purpose: str = "the CI simulator") -> None:
    """Raise :class:`MissingExtraError` naming the extra to install when a module is missing.

    The connector installs without the simulator's web stack; ``ci-connector demo`` and the
    pytest fixtures need the ``simulator`` / ``testing`` extras.
    """
    missing = [m for m in _NEEDS.get(transport, ()) if importlib.util.find_spec(m) is None]
    if missing:
        extra = "testing" if "responses" in missing else "simulator"
        raise MissingExtraError(
            f"{purpose} needs {', '.join(missing)}, which the connector does not install by "
            f"itself: pip install 'groupon-ci-connector[{extra}]' (or [testing] for the "
            "pytest fixtures, [dev] for development)"
        )


def _token() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(31))


@dataclass
class SimulatorHandle:
    """A running simulator with one seeded-ready account.

    :ivar url: base URL to give :class:`~connector.models.Account` (``base_url``).
    :ivar state: the simulator's :class:`mock_ci_server.state.SimState` (seed, clock, cancel,
        inspect lines directly).
    :ivar transport: ``"socket"`` (a real loopback server) or ``"in_process"`` (``requests``
        calls are routed into the app through ``responses``; no socket).
    """

    url: str
    state: Any
    app: Any
    transport: Transport
    supplier_id: str
    token: str = field(repr=False)
    region: str = "US"

    def seed(self, orders: int = 10, **knobs: Any) -> dict[str, Any]:
        """Generate orders for the account (knobs as for ``SimState.seed``)."""
        result: dict[str, Any] = self.state.seed(self.supplier_id, orders=orders, **knobs)
        return result

    def lines(self) -> list[dict[str, Any]]:
        """The simulator's view of every line of the account (export flag, tracking, calls)."""
        lines: list[dict[str, Any]] = self.state.get_state(self.supplier_id)["lines"]
        return lines

    def set_faults(self, rules: list[dict[str, Any]], seed: int = 0) -> None:
        """Inject faults into the real-API routes (first match wins; ``[]`` turns them off)."""
        faults = self.app.extensions["sim_faults"]
        faults.set_seed(seed)
        faults.set_rules(rules)

    def add_account(self, supplier_id: str, region: str = "US", **kwargs: Any) -> str:
        """Another supplier account on the same simulator; returns its token."""
        token = _token()
        self.state.add_account(supplier_id, token, region=region, **kwargs)
        return token


@contextmanager
def running_simulator(
    transport: Transport = "socket",
    *,
    supplier_id: str = "90001",
    region: str = "US",
    merchant_level: int = 5,
    token: str | None = None,
) -> Iterator[SimulatorHandle]:
    """Start a fresh simulator with one account; stop it on exit.

    ``socket`` serves on ``127.0.0.1`` at a free port (waitress); ``in_process`` patches
    ``requests`` through ``responses`` for as long as the block runs.
    """
    require_extras(transport)
    from mock_ci_server.app import create_app
    from mock_ci_server.state import SimState

    state = SimState()
    token = token or _token()
    state.add_account(supplier_id, token, region=region, merchant_level=merchant_level)
    app = create_app(state)
    if transport == "socket":
        from mock_ci_server.serve import serve_in_thread

        with serve_in_thread(app) as server:
            yield SimulatorHandle(server.url, state, app, transport, supplier_id, token, region)
    elif transport == "in_process":
        from mock_ci_server.transport import InProcessTransport

        with InProcessTransport(app, IN_PROCESS_URL):
            yield SimulatorHandle(IN_PROCESS_URL, state, app, transport, supplier_id, token, region)
    else:
        raise ValueError(f"transport must be 'socket' or 'in_process', got {transport!r}")


def make_account(
    sim: SimulatorHandle,
    workdir: Path,
    *,
    name: str = "groupon-test",
    copy_mappings: bool = True,
    **options: Any,
) -> Account:
    """An :class:`~connector.models.Account` for ``sim``'s account, with its data in
    ``workdir``. With ``copy_mappings`` the shipped mapping CSVs are copied into
    ``workdir/mappings`` so a test can edit them; ``options`` override
    :class:`~connector.models.AccountOptions` (fast retries by default)."""
    mappings_dir: Path | None = None
    if copy_mappings:
        mappings_dir = workdir / "mappings"
        if not mappings_dir.exists():
            shutil.copytree(default_mappings_dir(), mappings_dir)
    base = AccountOptions(max_retries=2, backoff_seconds=0.05, timeout_seconds=10.0)
    return Account(
        name=name,
        channel="groupon",
        supplier_id=sim.supplier_id,
        token=Secret(sim.token),
        region=sim.region,
        api_version="v4",
        base_url=sim.url,
        data_dir=workdir / "data",
        mappings_dir=mappings_dir,
        options=replace(base, **options),
    )
