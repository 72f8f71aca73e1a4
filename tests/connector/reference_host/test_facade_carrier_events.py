"""The host side of carrier events: facade method and ReferenceHost forwarding, checked by the
ContractMonitor of the ``pm`` fixture (exact kwargs, a list of CarrierEvent)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pluggy
import pytest

from connector.models import CarrierEvent, CarrierEventKind, LineOutcome
from connector.reference_host.facade import ChannelFacade, NoChannelPlugin
from connector.reference_host.host import ReferenceHost


def test_facade_reports_events_as_a_list_and_returns_results(
    pm: pluggy.PluginManager, kit: Any, fake: Any
) -> None:
    scan = CarrierEvent(7, CarrierEventKind.SCAN, kit.T0, "1Z7")
    results = ChannelFacade(pm).report_carrier_events(account=kit.account(), events=(scan, scan))
    assert [r.outcome for r in results] == [LineOutcome.ACCEPTED, LineOutcome.ALREADY_DONE]
    assert fake.carrier_events == [scan]
    assert pm.contract_monitor.seen == ["oms_report_carrier_events"]  # type: ignore[attr-defined]


def test_facade_names_the_channel_nobody_answers_for(
    pm: pluggy.PluginManager, kit: Any, fake: Any
) -> None:
    with pytest.raises(NoChannelPlugin, match="hook oms_report_carrier_events") as err:
        ChannelFacade(pm).report_carrier_events(account=kit.account(channel="ebay"), events=[])
    assert err.value.channel == "ebay"


def test_reference_host_forwards_carrier_events(
    pm: pluggy.PluginManager, kit: Any, fake: Any, tmp_path: Path
) -> None:
    delivered = CarrierEvent(7, CarrierEventKind.DELIVERED, kit.T0 + timedelta(days=3))
    with ReferenceHost(tmp_path / "host.sqlite3", ChannelFacade(pm)) as host:
        [result] = host.report_carrier_events(kit.account(), [delivered])
    assert (result.ci_lineitemid, result.outcome) == (7, LineOutcome.ACCEPTED)
    assert fake.calls == ["fake:report_carrier_events"]
