"""The reference host on contract v2 (issue 10): shipment identity on the host side, batch
shipping, plugin instances per manager, one owner per channel, no silent ``{}`` stats."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest

from connector import hookimpl
from connector.models import ChannelInfo, LineOutcome, Shipment, StoredOrder
from connector.plugin import plugin as module_plugin
from connector.reference_host import ChannelFacade, NoChannelPlugin, ReferenceHost, plugins
from connector.reference_host.plugins import OmsPluginManager, get_plugin_manager
from tests.connector.fakes import T0, make_host, make_line, make_record


def _host(tmp_path: Path, *records: dict[str, Any]) -> tuple[Any, Any, ReferenceHost]:
    fakes = make_host()
    acct = fakes.account(tmp_path)
    for rec in records:
        fakes.cis["us"].add(rec)
    host = ReferenceHost(tmp_path / "host.sqlite3", ChannelFacade(fakes.pm), clock=lambda: T0)
    report = host.sync(acct)
    assert report.ok, report
    return fakes, acct, host


def test_host_refuses_a_reused_shipment_id_with_other_contents(tmp_path: Path) -> None:
    """Issue 10 item 3: the reference host kept only the first SHP-1 while CI got both."""
    fakes, acct, host = _host(tmp_path, make_record("A", [make_line(1), make_line(2, "SKU-2")]))
    with host:
        [ok] = host.ship(acct, Shipment.single("SHP-1", "UPS", "1Z001", {1: 1}))
        assert ok.outcome is LineOutcome.ACCEPTED
        [refused] = host.ship(acct, Shipment.single("SHP-1", "UPS", "1Z002", {2: 1}))
        assert refused.outcome is LineOutcome.REJECTED
        assert "other contents" in refused.reason
        assert "1Z002" in refused.reason
        assert len(fakes.cis["us"].calls_to("tracking_notification")) == 1
        assert host.store.line("us", 2)["shipped_quantity"] == 0  # type: ignore[index]
        [same] = host.ship(acct, Shipment.single("SHP-1", "UPS", "1Z001", {1: 1}))
        assert same.outcome is LineOutcome.ALREADY_DONE


def test_host_ships_a_wave_in_one_dispatch_call(tmp_path: Path) -> None:
    records = [make_record(f"O{i}", [make_line(i)]) for i in range(1, 5)]
    fakes, acct, host = _host(tmp_path, *records)
    with host:
        host.ship(acct, Shipment.single("S1", "UPS", "1ZA1", {1: 1}))
        wave = [Shipment.single(f"S{i}", "UPS", f"1ZA{i}", {i: 1}) for i in range(2, 5)]
        wave.append(Shipment.single("S1", "UPS", "1ZXX", {1: 1}))  # S1 reused: refused
        results = host.ship_many(acct, wave)
        assert [(r.shipment_id, r.outcome) for r in results] == [
            ("S1", LineOutcome.REJECTED),
            ("S2", LineOutcome.ACCEPTED),
            ("S3", LineOutcome.ACCEPTED),
            ("S4", LineOutcome.ACCEPTED),
        ]
        calls = fakes.cis["us"].calls_to("tracking_notification")
        assert [len(items) for items in calls] == [1, 3]  # the wave went out in one call
        assert host.store.undispatched_shipments("us") == []
        void = host.void(acct, "S2", "wrong parcel")
        assert [r.ci_lineitemid for r in void.already_sent] == [2]


def _stub_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = importlib.metadata.EntryPoint("groupon", "connector.plugin:plugin", "oms")
    monkeypatch.setattr(plugins, "_entry_points", lambda: [ep])


def test_each_manager_gets_its_own_groupon_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10 item 7: the entry-point object was shared by every manager in the process."""
    _stub_entry_point(monkeypatch)
    first = get_plugin_manager(allow=["groupon"])
    second = get_plugin_manager(allow=["groupon"])
    a, b = first.get_plugin("groupon"), second.get_plugin("groupon")
    assert a is not None
    assert b is not None
    assert a is not b
    assert a is not module_plugin


class _Claimant:
    def __init__(self, channel: str) -> None:
        self.channel = channel

    @hookimpl
    def oms_channel_info(self) -> ChannelInfo:
        return ChannelInfo(self.channel, "1", frozenset(), ())


def test_second_claimant_of_a_channel_is_refused_at_registration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(_Claimant("groupon"), name="first")
    with pytest.raises(
        ValueError, match=r"claims channel\(s\) groupon, already owned by plugin 'first'"
    ):
        pm.register(_Claimant("groupon"), name="second")
    assert pm.get_plugin("second") is None
    pm.register(_Claimant("other"), name="third")  # another channel is fine
    # Installed plugins: reported as a load error naming both, the first one stays.
    _stub_entry_point(monkeypatch)
    manager = OmsPluginManager()
    from connector import hookspecs

    manager.add_hookspecs(hookspecs)
    manager.register(_Claimant("groupon"), name="inline")
    errors = plugins.load_entrypoint_plugins(manager, allow=["groupon"])
    assert len(errors) == 1
    assert "already owned by plugin 'inline'" in str(errors[0])
    assert manager.get_plugin("groupon") is None


def test_facade_does_not_turn_unanswered_stats_into_empty(tmp_path: Path) -> None:
    fakes = make_host()
    acct = fakes.account(tmp_path)
    facade = ChannelFacade(fakes.pm)
    assert isinstance(facade.channel_stats(account=acct), dict)
    from dataclasses import replace

    other = replace(acct, channel="nobody")
    with pytest.raises(NoChannelPlugin, match="oms_channel_stats"):
        facade.channel_stats(account=other)


def test_facade_exposes_the_v2_hooks(tmp_path: Path) -> None:
    fakes = make_host()
    acct = fakes.account(tmp_path)
    fakes.cis["us"].add(make_record("A", [make_line(1)]))
    facade = ChannelFacade(fakes.pm)
    batch = facade.import_orders(account=acct)
    facade.mark_exported(
        account=acct, stored=[StoredOrder("A", "H", batch.orders[0].ci_lineitemids)]
    )
    [r] = facade.dispatch_many(account=acct, shipments=[Shipment.single("S", "UPS", "1Z1", {1: 1})])
    assert r.outcome is LineOutcome.ACCEPTED
    assert facade.flush_outbox(account=acct, force=True) == []
    assert [p.sku for p in facade.channel_products(account=acct)] == ["SKU-1"]
    assert facade.void_shipment(account=acct, shipment_id="S", reason="x").already_sent
