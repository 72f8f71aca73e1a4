"""The typed facade: firstresult ownership, NoChannelPlugin, and one test per hook."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pluggy
import pytest

from connector.models import (
    ChannelInfo,
    ImportBatch,
    LineOutcome,
    Shipment,
    StoredOrder,
)
from connector.reference_host.facade import ChannelFacade, NoChannelPlugin


@pytest.fixture
def two_channels(pm: pluggy.PluginManager, kit: Any) -> Any:
    calls: list[str] = []
    alpha, beta = kit.FakeChannel("alpha", calls), kit.FakeChannel("beta", calls)
    pm.register(alpha, name="alpha")
    pm.register(beta, name="beta")
    yield alpha, beta, calls
    pm.unregister(name="alpha")
    pm.unregister(name="beta")


def test_firstresult_only_the_owning_plugin_answers(
    pm: pluggy.PluginManager, kit: Any, two_channels: Any
) -> None:
    _alpha, beta, calls = two_channels
    beta.orders = [kit.order("B1", [1])]
    facade = ChannelFacade(pm)
    batch = facade.import_orders(account=kit.account(channel="beta"))
    assert [o.orderid for o in batch.orders] == ["B1"]
    assert calls == ["beta:import_orders"]
    calls.clear()
    assert facade.import_orders(account=kit.account(channel="alpha")).orders == ()
    assert calls == ["alpha:import_orders"]


def test_no_plugin_for_the_channel_raises(
    pm: pluggy.PluginManager, kit: Any, two_channels: Any
) -> None:
    facade = ChannelFacade(pm)
    account = kit.account(name="eu", channel="amazon")
    with pytest.raises(NoChannelPlugin) as info:
        facade.flush_outbox(account=account)
    message = str(info.value)
    assert message.startswith("no plugin answers for channel 'amazon'")
    assert "account 'eu'" in message
    assert "oms_flush_outbox" in message
    assert "alpha" in message
    assert "beta" in message
    assert "tok-SECRET" not in message
    assert info.value.channel == "amazon"


def test_hook_oms_channel_info(pm: pluggy.PluginManager, two_channels: Any) -> None:
    infos = ChannelFacade(pm).channel_infos()
    assert all(isinstance(i, ChannelInfo) for i in infos)
    assert ChannelFacade(pm).channels() == ["alpha", "beta"]


def test_hook_oms_import_orders(pm: pluggy.PluginManager, kit: Any, fake: Any) -> None:
    fake.orders = [kit.order("O1", [11, 12])]
    fake.held = [kit.unmapped_hold(13, "O2")]
    batch = ChannelFacade(pm).import_orders(account=kit.account())
    assert isinstance(batch, ImportBatch)
    assert batch.orders[0].ci_lineitemids == (11, 12)
    assert batch.held[0].ci_lineitemid == 13


def test_hook_oms_mark_exported(pm: pluggy.PluginManager, kit: Any, fake: Any) -> None:
    facade = ChannelFacade(pm)
    receipts = [StoredOrder("O1", "HO-1", (11, 12))]
    first = facade.mark_exported(account=kit.account(), stored=receipts)
    again = facade.mark_exported(account=kit.account(), stored=tuple(receipts))
    assert [r.outcome for r in first] == [LineOutcome.ACCEPTED] * 2
    assert [r.outcome for r in again] == [LineOutcome.ALREADY_DONE] * 2


def test_hook_oms_dispatch(pm: pluggy.PluginManager, kit: Any, fake: Any) -> None:
    shipment = Shipment.single("S1", "UPS", "1Z999", {11: 2})
    [result] = ChannelFacade(pm).dispatch(account=kit.account(), shipment=shipment)
    assert (result.ci_lineitemid, result.outcome, result.tracking_number) == (
        11,
        LineOutcome.ACCEPTED,
        "1Z999",
    )


def test_hook_oms_flush_outbox(pm: pluggy.PluginManager, kit: Any, fake: Any) -> None:
    facade = ChannelFacade(pm)
    assert facade.flush_outbox(account=kit.account()) == []  # empty list is an answer, not None


def test_hook_oms_held_lines(pm: pluggy.PluginManager, kit: Any, fake: Any) -> None:
    fake.held = [kit.unmapped_hold(13, "O2")]
    [held] = ChannelFacade(pm).held_lines(account=kit.account())
    assert held.reason == "SKU-13 has no alias"


def test_hook_oms_sla_at_risk(pm: pluggy.PluginManager, kit: Any, fake: Any) -> None:
    fake.orders = [kit.order("O1", [11])]
    facade = ChannelFacade(pm)
    late = kit.T0 + timedelta(days=5)
    [risk] = facade.sla_at_risk(account=kit.account(), now=late)
    assert risk.orderid == "O1"
    assert risk.state == "overdue"
    assert facade.sla_at_risk(account=kit.account(), now=kit.T0) == []
    with pytest.raises(ValueError, match="aware datetime"):
        facade.sla_at_risk(account=kit.account(), now=late.replace(tzinfo=None))
