"""``ci-connector reconcile`` through CliRunner, with a config file pointing at the simulator
served on a real socket (127.0.0.1, port 0) and the reference host's database in data_dir."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from connector.cli.context import CliContext
from connector.cli.reconcile import reconcile
from connector.config import load_config
from connector.models import Account
from connector.plugin import GrouponPlugin
from connector.reference_host.facade import ChannelFacade
from connector.reference_host.host import HOST_DB_NAME, ReferenceHost
from connector.reference_host.plugins import get_plugin_manager
from mock_ci_server.app import create_app
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.state import SimState

SUPPLIER = "88001"
TOKEN = "cli-recon-SECRET-0123456789abcd"


@dataclass
class Setup:
    state: SimState
    config_path: Path
    account: Account
    line_ids: list[int]

    def sync(self) -> None:
        """One reference-host sync with the real plugin over the socket."""
        plugin = GrouponPlugin()
        pm = get_plugin_manager(load_entrypoints=False)
        pm.register(plugin, name="groupon")
        try:
            with ReferenceHost(self.account.data_dir / HOST_DB_NAME, ChannelFacade(pm)) as host:
                report = host.sync(self.account)
                assert report.ok, report.errors
        finally:
            plugin.close()


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    state = SimState()
    state.add_account(SUPPLIER, TOKEN, region="US")
    seeded = state.seed(SUPPLIER, orders=2, seed=3, spread_hours=20)
    server = serve_in_thread(create_app(state))
    monkeypatch.setenv("RECON_US_TOKEN", TOKEN)
    path = tmp_path / "connector.toml"
    path.write_text(
        '[connector]\ndata_dir = "data"\n\n'
        f'[[accounts]]\nname = "us"\nchannel = "groupon"\nsupplier_id = "{SUPPLIER}"\n'
        f'region = "US"\nbase_url = "{server.url}"\ntoken_env = "RECON_US_TOKEN"\n\n'
        '[accounts.options]\nsku_fallback = "sku"\nmax_retries = 0\nbackoff_seconds = 0.0\n',
        encoding="utf-8",
    )
    config = load_config(path)
    try:
        yield Setup(state, path, config.account("us"), list(seeded["ci_lineitemids"]))
    finally:
        server.stop()


def run(setup: Setup, *args: str) -> Result:
    result = CliRunner().invoke(
        reconcile, list(args), obj=CliContext(config_path=setup.config_path)
    )
    assert TOKEN not in result.output, "a token leaked into the output"
    assert "Traceback" not in result.output
    return result


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(reconcile, ["--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "ci-connector" in result.output.split("Example:")[1]
    assert "--fix" in result.output


def test_clean_account_exits_zero(setup: Setup) -> None:
    setup.sync()
    result = run(setup, "--account", "us")
    assert result.exit_code == 0, result.output
    assert "us: clean" in result.output
    assert "2 exported" in result.output
    assert str(setup.config_path.parent / "data" / HOST_DB_NAME) in result.output


def test_finding_table_then_fix_then_sync_then_clean(setup: Setup) -> None:
    lost = setup.line_ids[0]
    setup.state.mark_exported(SUPPLIER, TOKEN, [lost])
    setup.sync()

    result = run(setup)
    assert result.exit_code == 1
    header = result.output.splitlines()[1].split()
    assert header[:4] == ["check", "kind", "line", "order/shipment"]
    row = next(ln for ln in result.output.splitlines() if str(lost) in ln and "not_in_host" in ln)
    assert row.split()[0] == "exported_missing"
    assert "fixable" in row
    assert "run with --fix" in result.output

    payload = json.loads(run(setup, "--json").output)
    assert payload["clean"] is False
    assert payload["counts"]["exported_missing"] == {"found": 1, "fixed": 0, "remaining": 1}
    (acc,) = payload["accounts"]
    assert [f["ci_lineitemid"] for f in acc["findings"]["exported_missing"]] == [lost]
    assert acc["findings"]["unacked"] == []

    fixed = run(setup, "--fix", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.output)["counts"]["exported_missing"]["fixed"] == 1

    setup.sync()
    assert run(setup).exit_code == 0


def test_without_host_db_the_ledger_is_trusted(setup: Setup, tmp_path: Path) -> None:
    setup.sync()
    (setup.config_path.parent / "data" / HOST_DB_NAME).rename(tmp_path / "moved.sqlite3")
    result = run(setup, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["accounts"][0]["host_db"] is None
    explicit = run(setup, "--host-db", str(tmp_path / "moved.sqlite3"), "--days", "2")
    assert explicit.exit_code == 0, explicit.output
    assert "3 CI window(s) over 2 day(s)" in explicit.output


def test_bad_inputs_are_clean_errors(setup: Setup, tmp_path: Path) -> None:
    missing = run(setup, "--host-db", str(tmp_path / "nope.sqlite3"))
    assert missing.exit_code == 1
    assert "nope.sqlite3: file not found" in missing.output
    assert run(setup, "--days", "0").exit_code == 2
    unknown = run(setup, "--account", "fr")
    assert unknown.exit_code == 1
    assert "'us'" in unknown.output


def test_refused_credentials_are_an_account_failure(setup: Setup) -> None:
    setup.state.add_account(SUPPLIER, "another-token-entirely-0000000", region="US")
    result = run(setup, "--json")
    assert result.exit_code == 1
    payload = json.loads(result.output)
    assert payload["accounts"] == []
    assert payload["failures"][0]["account"] == "us"
    assert "CI refused" in payload["failures"][0]["error"]


def test_other_channels_are_skipped_unless_named(setup: Setup, monkeypatch: Any) -> None:
    monkeypatch.setenv("OTHER_TOKEN", "other-channel-token-000000000000")
    text = setup.config_path.read_text(encoding="utf-8")
    setup.config_path.write_text(
        text.replace(
            "[[accounts]]",
            '[[accounts]]\nname = "shop"\nchannel = "othershop"\nsupplier_id = "1"\n'
            'token_env = "OTHER_TOKEN"\n\n[[accounts]]',
            1,
        ),
        encoding="utf-8",
    )
    setup.sync()
    everything = run(setup, "--json")
    assert everything.exit_code == 0, everything.output
    assert [a["account"] for a in json.loads(everything.output)["accounts"]] == ["us"]
    named = run(setup, "--account", "shop")
    assert named.exit_code == 1
    assert "channel 'othershop' is not groupon" in named.output
