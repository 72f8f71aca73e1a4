"""Fixtures shared by the runtime tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.config import load_config
from mock_ci_server.app import create_app
from mock_ci_server.serve import RunningServer, serve_in_thread
from mock_ci_server.state import SimState
from tests.connector.runtime._support import Setup


@pytest.fixture
def simulated_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Setup]]:
    """Make a :class:`Setup`: ``make(supplier, token, token_env, seed={...},
    options="key = value\\n...", ledger_url=None)`` seeds the simulator account with
    ``SimState.seed(supplier, **seed)``, writes the config (no retries, SKU fallback, the
    extra ``options`` lines) and sets ``token_env``. Servers stop at the end of the test."""
    servers: list[RunningServer] = []

    def make(
        supplier: str,
        token: str,
        token_env: str,
        *,
        seed: dict[str, Any],
        options: str = "",
        ledger_url: str | None = None,
    ) -> Setup:
        state = SimState()
        state.add_account(supplier, token, region="US", merchant_level=5)
        state.seed(supplier, **seed)
        app = create_app(state)
        server = serve_in_thread(app)
        servers.append(server)
        monkeypatch.setenv(token_env, token)
        path = tmp_path / "connector.toml"
        path.write_text(
            '[connector]\ndata_dir = "data"\n'
            + (f'ledger_url = "{ledger_url}"\n' if ledger_url else "")
            + "\n"
            f'[[accounts]]\nname = "us"\nchannel = "groupon"\nsupplier_id = "{supplier}"\n'
            f'region = "US"\nbase_url = "{server.url}"\ntoken_env = "{token_env}"\n\n'
            '[accounts.options]\nsku_fallback = "sku"\nmax_retries = 0\nbackoff_seconds = 0.0\n'
            + options,
            encoding="utf-8",
        )
        return Setup(state, path, load_config(path).account("us"), app)

    try:
        yield make
    finally:
        for server in servers:
            server.stop()
