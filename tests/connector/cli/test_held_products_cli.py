"""``ci-connector held`` and ``ci-connector products`` on a real sync against the simulator,
and ``status`` no longer exiting 1 for a superseded hold (issue 10 item 1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from connector.cli import main
from connector.config import load_config
from connector.models import LineOutcome, Shipment
from connector.plugin import new_plugin
from connector.runtime.identity import REFERENCE_HOST, acting_as
from connector.testing.simulator import SimulatorHandle, running_simulator
from connector.tracking_formats import check_tracking_number

TOKEN = "HeldCliToken0123456789abcdefXYZ"


def _ups(serial: int) -> str:
    from connector.demo import ups_tracking_number

    number = ups_tracking_number(serial)
    assert check_tracking_number("ups", number).valid
    return number


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator("socket", token=TOKEN) as handle:
        handle.seed(orders=3, lines_per_order=(1, 1))
        yield handle


@pytest.fixture
def config(sim: SimulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HELD_CI_TOKEN", TOKEN)
    monkeypatch.delenv("CI_CONNECTOR_CONFIG", raising=False)
    monkeypatch.setenv("OMS_LOAD_PLUGINS", "groupon")
    path = tmp_path / "connector.toml"
    path.write_text(
        f'[connector]\ndata_dir = "data"\n\n'
        f'[[accounts]]\nname = "us"\nchannel = "groupon"\nsupplier_id = "{sim.supplier_id}"\n'
        f'region = "US"\nbase_url = "{sim.url}"\ntoken_env = "HELD_CI_TOKEN"\n\n'
        f"[accounts.options]\nmax_retries = 1\nbackoff_seconds = 0.01\n"
        f"watch_cancellations = false\n",
        encoding="utf-8",
    )
    return path


def _run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def _dispatch(config: Path, shipment: Shipment) -> Any:
    account = load_config(config).account("us")
    plugin = new_plugin()
    try:
        # The host that ran `ci-connector sync` (the reference host) ships.
        with acting_as(REFERENCE_HOST):
            return plugin.oms_dispatch(account=account, shipment=shipment)
    finally:
        plugin.close()


def _line_ids(config: Path) -> list[int]:
    account = load_config(config).account("us")
    plugin = new_plugin()
    try:
        with acting_as(REFERENCE_HOST):
            return sorted(line.ci_lineitemid for line in plugin.ledger_for(account).lines())
    finally:
        plugin.close()


def test_held_list_dismiss_retry_and_status_exit_codes(config: Path) -> None:
    assert _run(config, "sync").exit_code == 0
    first, second, _third = _line_ids(config)
    # Over-ship line 1: held. status exits 1 and held list shows it.
    [held] = _dispatch(config, Shipment.single("S-OVER", "UPS", _ups(1), {first: 5}))
    assert held.outcome is LineOutcome.HELD
    assert _run(config, "status").exit_code == 1
    listing = _run(config, "held", "list", "--json")
    assert listing.exit_code == 0, listing.output
    [row] = json.loads(listing.output)["held"]
    assert (row["shipment_id"], row["ci_lineitemid"], row["line_known"]) == ("S-OVER", first, True)
    # The line is then shipped correctly: the hold is superseded and status is clean again.
    [ok] = _dispatch(config, Shipment.single("S-OK", "UPS", _ups(2), {first: 1}))
    assert ok.outcome is LineOutcome.ACCEPTED
    status = _run(config, "status")
    assert status.exit_code == 0, status.output
    assert json.loads(_run(config, "held", "list", "--json").output)["held"] == []
    closed = json.loads(_run(config, "held", "list", "--closed", "--json").output)["held"]
    assert [(c["shipment_id"], c["state"]) for c in closed] == [("S-OVER", "superseded")]

    # Unknown courier on line 2: held; retry keeps it held (exit 1); dismiss needs a reason.
    [courier] = _dispatch(config, Shipment.single("S-VAN", "Our Van", _ups(3), {second: 1}))
    assert courier.outcome is LineOutcome.HELD
    [row] = json.loads(_run(config, "held", "list", "--json").output)["held"]
    retried = _run(config, "held", "retry", "--account", "us", str(row["id"]))
    assert retried.exit_code == 1
    assert "held" in retried.output
    no_reason = _run(config, "held", "dismiss", "--account", "us", str(row["id"]))
    assert no_reason.exit_code == 2  # usage: --reason is required
    dismissed = _run(
        config, "held", "dismiss", "--account", "us", str(row["id"]), "--reason", "wrong van"
    )
    assert dismissed.exit_code == 0, dismissed.output
    assert f"{row['id']}: dismissed" in dismissed.output
    assert _run(config, "status").exit_code == 0
    again = _run(config, "held", "dismiss", "--account", "us", "999999", "--reason", "x")
    assert again.exit_code == 1
    assert "not a held dispatch row" in again.output


def test_products_lists_the_catalogue_with_unlimited_stock(config: Path) -> None:
    assert _run(config, "sync").exit_code == 0
    result = _run(config, "products", "--json")
    assert result.exit_code == 0, result.output
    products = json.loads(result.output)["products"]
    assert products
    assert {p["stock"] for p in products} == {None}
    assert all(p["sku"] and p["name"] and p["lines_seen"] >= 1 for p in products)
    table = _run(config, "products")
    assert "unlimited" in table.output
    assert TOKEN not in table.output
