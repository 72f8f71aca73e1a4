"""The core ``ci-connector`` commands through click's CliRunner, with fake channel plugins
installed through stub entry points (so discovery is exercised too)."""

from __future__ import annotations

import json
import re
import shutil
import sys
import types
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from connector import __version__, hookimpl
from connector.cli import LazyGroup, main
from connector.models import (
    Account,
    Address,
    ChannelInfo,
    HeldLine,
    HoldKind,
    ImportBatch,
    LineOutcome,
    LineResult,
    Order,
    OrderLine,
    Shipment,
    StoredOrder,
)
from connector.reference_host import plugins
from connector.reference_host.host import HOST_DB_NAME
from connector.reference_host.store import HostStore

TOKEN = "tok-CLI-SECRET-98765"
T0 = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)
REPO_MAPPINGS = Path(__file__).resolve().parents[3] / "mappings"


def _order(orderid: str, lids: Sequence[int]) -> Order:
    lines = tuple(
        OrderLine(lid, f"F{lid}", f"SKU-{lid}", None, f"Item {lid}", 1, Decimal("5.00"))
        for lid in lids
    )
    return Order(
        "us", orderid, T0, T0 + timedelta(days=2), Address("Ann", "1 Main"), lines, Decimal("5")
    )


class FakeChannel:
    """Serves channel 'fake'; re-offers orders until they are marked exported."""

    __version__ = "0.0.1"

    def __init__(self) -> None:
        self.orders = [_order("O1", [11, 12]), _order("O2", [21])]
        self.confirmed: set[int] = set()
        self.held: list[HeldLine] = []

    @hookimpl
    def oms_channel_info(self) -> ChannelInfo:
        return ChannelInfo("fake", "0.0.1", frozenset({"import"}), ())

    @hookimpl
    def oms_import_orders(self, account: Account) -> ImportBatch | None:
        if account.channel != "fake":
            return None
        new = tuple(o for o in self.orders if not set(o.ci_lineitemids) <= self.confirmed)
        return ImportBatch(new, tuple(self.held))

    @hookimpl
    def oms_mark_exported(
        self, account: Account, stored: Sequence[StoredOrder]
    ) -> list[LineResult] | None:
        if account.channel != "fake":
            return None
        ids = [lid for receipt in stored for lid in receipt.ci_lineitemids]
        self.confirmed.update(ids)
        return [LineResult(lid, LineOutcome.ACCEPTED) for lid in ids]

    @hookimpl
    def oms_flush_outbox(self, account: Account) -> list[LineResult] | None:
        return [] if account.channel == "fake" else None

    @hookimpl
    def oms_held_lines(self, account: Account) -> list[HeldLine] | None:
        return list(self.held) if account.channel == "fake" else None


class StubEP:
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value, self.group, self.dist = name, value, "oms", None

    def load(self) -> Any:
        module, _, attr = self.value.partition(":")
        __import__(module)
        return getattr(sys.modules[module], attr)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeChannel:
    plugin = FakeChannel()
    module = types.ModuleType("fake_cli_channel")
    module.plugin = plugin  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_cli_channel", module)
    monkeypatch.setattr(
        plugins, "_entry_points", lambda: [StubEP("fake", "fake_cli_channel:plugin")]
    )
    monkeypatch.delenv("OMS_LOAD_PLUGINS", raising=False)
    return plugin


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAKE_US_TOKEN", TOKEN)
    monkeypatch.setenv("FAKE_UK_TOKEN", TOKEN + "-uk")
    monkeypatch.delenv("CI_CONNECTOR_CONFIG", raising=False)
    path = tmp_path / "connector.toml"
    path.write_text(
        '[connector]\ndata_dir = "data"\n\n'
        '[[accounts]]\nname = "us"\nchannel = "fake"\nsupplier_id = "1"\nregion = "US"\n'
        'token_env = "FAKE_US_TOKEN"\n\n'
        '[[accounts]]\nname = "uk"\nchannel = "fake"\nsupplier_id = "2"\nregion = "UK"\n'
        'token_env = "FAKE_UK_TOKEN"\n',
        encoding="utf-8",
    )
    return path


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert TOKEN not in result.output, "a token leaked into the output"
    return result


def _every_command() -> list[list[str]]:
    """The root, every registered command and every subcommand of a group."""
    import click

    from connector.cli import COMMANDS

    found: list[list[str]] = [[]]
    ctx = click.Context(main)
    for name, _module, _attr in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None, name
        found.append([name])
        if isinstance(command, click.Group):
            found += [[name, sub] for sub in command.list_commands(ctx)]
    return found


@pytest.mark.parametrize("command", _every_command(), ids=lambda c: " ".join(c) or "root")
def test_every_help_has_an_example(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0
    parts = re.split(r"Examples?:", result.output, maxsplit=1)
    assert len(parts) == 2, f"no example in: ci-connector {' '.join(command)} --help"
    assert "ci-connector" in parts[1]


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_unknown_option_is_a_usage_error() -> None:
    assert run("sync", "--no-such-option").exit_code == 2


def test_missing_config_is_a_clean_error(tmp_path: Path) -> None:
    result = run("--config", str(tmp_path / "nope.toml"), "sync")
    assert result.exit_code == 1
    assert "nope.toml: configuration file not found" in result.output
    assert "Traceback" not in result.output


def test_sync_json_then_nothing_new(config: Path, fake: FakeChannel) -> None:
    result = run("--config", str(config), "-vv", "sync", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is True
    by_account = {a["account"]: a for a in payload["accounts"]}
    assert set(by_account) == {"us", "uk"}
    assert (by_account["us"]["orders_new"], by_account["us"]["lines_marked_exported"]) == (2, 3)
    # One reference host database holds both accounts, in the config's data_dir.
    with HostStore(config.parent / "data" / HOST_DB_NAME) as store:
        assert store.count_orders("us") == 2
        assert store.duplicates() == []
    again = json.loads(run("--config", str(config), "sync", "--account", "us", "--json").stdout)
    assert [a["orders_new"] for a in again["accounts"]] == [0]


def test_sync_table_and_progress_on_stderr(config: Path, fake: FakeChannel) -> None:
    result = run("--config", str(config), "sync", "--account", "us")
    assert result.exit_code == 0
    header = result.stdout.splitlines()[0].split()
    assert header[:3] == ["account", "orders", "lines"]
    assert result.stdout.splitlines()[1].split()[:3] == ["us", "2", "3"]
    assert "━" not in result.stderr  # off a terminal no bar is drawn (retry lines only)


def test_sync_with_one_token_unset_syncs_the_others_and_names_the_variable(
    config: Path, fake: FakeChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAKE_UK_TOKEN")
    result = run("--config", str(config), "sync", "--json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert [a["account"] for a in payload["accounts"]] == ["us"]
    assert payload["accounts"][0]["orders_new"] == 2
    [failure] = payload["failures"]
    assert failure["account"] == "uk"
    assert "environment variable FAKE_UK_TOKEN is not set" in failure["error"]
    # Commands that only read local data do not need the token at all.
    assert run("--config", str(config), "status", "--account", "uk").exit_code in (0, 1)
    assert "FAKE_UK_TOKEN" not in run("--config", str(config), "status").output


def test_sync_unknown_account_names_the_known_ones(config: Path, fake: FakeChannel) -> None:
    result = run("--config", str(config), "sync", "--account", "fr")
    assert result.exit_code == 1
    assert "no account named 'fr'" in result.output
    assert "'us', 'uk'" in result.output


def test_sync_without_a_plugin_for_the_channel_fails_per_account(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMS_LOAD_PLUGINS", "")
    result = run("--config", str(config), "sync", "--json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    assert [f["account"] for f in payload["failures"]] == ["us", "uk"]
    assert "no plugin answers for channel 'fake'" in payload["failures"][0]["error"]


def test_status_lists_held_lines_and_exits_1(config: Path, fake: FakeChannel) -> None:
    fake.held = [
        HeldLine(
            "us", HoldKind.UNMAPPED_SKU, "SKU-31 has no alias in sku_aliases.csv", 31, "O3", T0
        )
    ]
    result = run("--config", str(config), "status", "--account", "us", "--json")
    assert result.exit_code == 1
    [status] = json.loads(result.stdout)["accounts"]
    assert status["held"] == [
        {
            "account": "us",
            "kind": "unmapped_sku",
            "reason": "SKU-31 has no alias in sku_aliases.csv",
            "ci_lineitemid": 31,
            "orderid": "O3",
            "since": T0.isoformat(),
        }
    ]
    assert status["pending_outbox"] == []
    assert "lines" in status["summary"]
    text = run("--config", str(config), "status", "--account", "us").stdout
    assert "held lines: 1" in text
    assert "SKU-31 has no alias" in text


def test_status_clean_account_exits_0(config: Path, fake: FakeChannel) -> None:
    result = run("--config", str(config), "status")
    assert result.exit_code == 0, result.output
    assert "held lines: 0" in result.stdout
    assert "pending outbox: 0" in result.stdout


def test_mappings_check_shipped_mappings_are_valid(config: Path) -> None:
    result = run("--config", str(config), "mappings", "check")
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout
    assert "US" in result.stdout


def test_mappings_check_reports_every_problem_with_location(tmp_path: Path) -> None:
    broken = tmp_path / "mappings"
    shutil.copytree(REPO_MAPPINGS, broken)
    couriers = broken / "couriers.csv"
    couriers.write_text(
        couriers.read_text(encoding="utf-8") + "US,Pigeon,,not-a-code\nUS,Owl\n", encoding="utf-8"
    )
    n_lines = len(couriers.read_text(encoding="utf-8").splitlines())
    result = run(
        "--config", str(tmp_path / "absent.toml"), "mappings", "check", "--dir", str(broken)
    )
    assert result.exit_code == 1
    problems = [line for line in result.stdout.splitlines() if "couriers.csv:" in line]
    assert len(problems) >= 2
    assert any(f"couriers.csv:{n_lines - 1}" in p and "not-a-code" in p for p in problems)
    assert any(f"couriers.csv:{n_lines}" in p for p in problems)


def test_mappings_check_lists_unmapped_couriers(tmp_path: Path) -> None:
    result = run(
        "--config",
        str(tmp_path / "absent.toml"),
        "mappings",
        "check",
        "--couriers",
        "UPS, Pigeon Express,fedex",
        "--region",
        "US",
    )
    assert result.exit_code == 1
    assert "US: courier 'Pigeon Express' has no carrier code" in result.stdout
    assert "'UPS'" not in result.stdout
    assert "'fedex'" not in result.stdout


def test_mappings_check_uses_the_reference_hosts_shipments(config: Path) -> None:
    with HostStore(config.parent / "data" / HOST_DB_NAME) as store:
        store.create_shipment("uk", Shipment.single("S1", "Royal Mail", "RM1", {1: 1}))
        store.create_shipment("uk", Shipment.single("S2", "Carrier Pigeon", "CP1", {2: 1}))
        store.create_shipment("us", Shipment.single("S3", "UPS", "1Z1", {3: 1}))
    result = run("--config", str(config), "mappings", "check")
    assert result.exit_code == 1
    assert "UK: courier 'Carrier Pigeon' has no carrier code" in result.stdout
    assert "US: all 1 courier(s) mapped" in result.stdout


def test_plugins_lists_loaded_plugins(fake: FakeChannel) -> None:
    result = run("plugins", "--json")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["errors"] == []
    [info] = payload["plugins"]
    assert info["name"] == "fake"
    assert info["version"] == "0.0.1"
    assert info["hooks"] == [
        "oms_channel_info",
        "oms_flush_outbox",
        "oms_held_lines",
        "oms_import_orders",
        "oms_mark_exported",
    ]


def test_plugins_reports_a_broken_plugin_and_exits_1(
    fake: FakeChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    eps = [StubEP("fake", "fake_cli_channel:plugin"), StubEP("busted", "no_such_module_xyz:plugin")]
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    result = run("plugins")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1].startswith("fake")
    assert "plugin 'busted' from dist unknown failed to load: ModuleNotFoundError" in result.stderr


def test_a_command_that_fails_to_import_is_reported_cleanly() -> None:
    group = LazyGroup(name="x", lazy=[("ghost", "connector.cli.no_such_module", "ghost")])
    result = CliRunner().invoke(group, ["ghost"])
    assert result.exit_code == 1
    assert "command 'ghost' is unavailable: connector.cli.no_such_module failed to load" in (
        result.output
    )
    assert isinstance(group.get_command(click.Context(group), "ghost"), click.Command)
