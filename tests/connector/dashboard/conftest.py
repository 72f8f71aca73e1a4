"""A connector configured against a running simulator, synced twice: real ledger rows, held
lines (an unmapped SKU) and a sync log for the dashboard tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.testing.simulator import SimulatorHandle, running_simulator

TOKEN = "DashboardSecretToken0123456789a"


@dataclass
class Synced:
    sim: SimulatorHandle
    config: Path
    data_dir: Path
    sim_now: datetime


def write_config(path: Path, sim: SimulatorHandle, level: int = 2) -> None:
    path.write_text(
        f'[connector]\ndata_dir = "data"\n\n'
        f'[[accounts]]\nname = "us"\nchannel = "groupon"\nsupplier_id = "{sim.supplier_id}"\n'
        f'region = "US"\nbase_url = "{sim.url}"\ntoken_env = "DASH_CI_TOKEN"\n\n'
        f"[accounts.options]\nmax_retries = 1\nbackoff_seconds = 0.01\n"
        f"merchant_level = {level}\nimport_delay_minutes = 0\n",
        encoding="utf-8",
    )


@pytest.fixture
def synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Synced]:
    monkeypatch.setenv("DASH_CI_TOKEN", TOKEN)
    monkeypatch.delenv("CI_CONNECTOR_CONFIG", raising=False)
    with running_simulator("socket", token=TOKEN, merchant_level=5) as sim:
        # Orders of the last two days; a few carry a SKU no alias maps (held lines).
        sim.seed(orders=24, seed=5, lines_per_order=(1, 2), unmapped_share=0.2, spread_hours=40)
        config = tmp_path / "connector.toml"
        write_config(config, sim)
        runner = CliRunner()
        first = runner.invoke(main, ["--config", str(config), "sync"])
        assert first.exit_code in (0, 1), first.output
        sim.seed(orders=6, seed=6)
        # One 503 on the next read: the second sync retries once (shown on the dashboard).
        sim.set_faults([{"method": "GET", "path": "/api/*/get_orders", "status": 503, "count": 1}])
        second = runner.invoke(main, ["--config", str(config), "sync"])
        assert second.exit_code in (0, 1), second.output
        yield Synced(sim, config, tmp_path / "data", sim.state.clock.now())


def later(synced: Synced, days: float) -> str:
    """An ISO moment ``days`` after the simulator's now (to judge SLA states)."""
    return (synced.sim_now + timedelta(days=days)).isoformat()
