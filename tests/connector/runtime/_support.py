"""Set-up shared by the runtime tests (the fixture is in this folder's conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from connector.models import Account
from mock_ci_server.state import SimState


@dataclass
class Setup:
    """A simulator serving one seeded US account over a socket, and a config naming it
    (account ``us``, data in ``<tmp>/data``)."""

    state: SimState
    config_path: Path
    account: Account
    app: object
