"""Fixtures shared by every test folder: the headless browser for the web UIs, the PostgreSQL
server and the ``ledger_backend`` parametrization (defined in :mod:`tests.ledger_backends`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import Browser, chromium, unavailable_reason
from tests.ledger_backends import (
    _postgres_databases,
    ledger_backend,
    postgres_server,
    postgres_url,
)

__all__ = ["_postgres_databases", "browser", "ledger_backend", "postgres_server", "postgres_url"]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """A fresh headless Chromium; screenshots land in ``tmp_path/screenshots``.

    Skips (with how to install) only where Chromium or its driver is missing.
    """
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with chromium(tmp_path) as b:
        yield b
