"""Issue 9: every line waiting on ``import_delay_minutes`` shows why and until when, in
``ci-connector sync`` (text and JSON) and ``ci-connector status``. Before, such lines sat in
``staged`` with no reason anywhere. Real plugin, simulator on a real socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from connector.cli import main
from mock_ci_server.app import create_app
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.state import SimState

SUPPLIER = "88031"
TOKEN = "cli-delay-SECRET-5f4e3d2c1b0a9f8e"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    state = SimState()
    state.add_account(SUPPLIER, TOKEN, region="US")
    state.seed(SUPPLIER, orders=3, seed=5, spread_hours=2)
    server = serve_in_thread(create_app(state))
    monkeypatch.setenv("DELAY_US_TOKEN", TOKEN)
    path = tmp_path / "connector.toml"
    path.write_text(
        '[connector]\ndata_dir = "data"\n\n'
        f'[[accounts]]\nname = "us"\nchannel = "groupon"\nsupplier_id = "{SUPPLIER}"\n'
        f'region = "US"\nbase_url = "{server.url}"\ntoken_env = "DELAY_US_TOKEN"\n\n'
        '[accounts.options]\nsku_fallback = "sku"\nimport_delay_minutes = 600000\n',
        encoding="utf-8",
    )
    try:
        yield path
    finally:
        server.stop()


def run(config: Path, *args: str) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert TOKEN not in result.output
    assert "Traceback" not in result.output
    return result


def test_sync_and_status_say_why_lines_wait_and_until_when(config: Path) -> None:
    result = run(config, "sync", "--account", "us")
    assert result.exit_code == 0, result.output
    assert "line(s) wait on the import delay" in result.output
    assert "import_delay_minutes=600000" in result.output
    assert " until 20" in result.output  # an ISO date follows

    data = json.loads(run(config, "sync", "--json").stdout)
    waiting = data["accounts"][0]["waiting"]
    assert waiting
    assert all(w["until"] and "import_delay_minutes=600000" in w["reason"] for w in waiting)

    status = run(config, "status", "--account", "us")
    assert status.exit_code == 0, status.output  # waiting is not a failure
    assert f"waiting on the import delay: {len(waiting)}" in status.output
    data = json.loads(run(config, "status", "--json").stdout)
    assert len(data["accounts"][0]["waiting"]) == len(waiting)
