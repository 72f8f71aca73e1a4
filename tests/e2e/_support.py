"""Shared harness for the end-to-end tests: a Groupon plugin inside the reference host, wired to
a simulator, with the CI clients it builds kept so their retry statistics can be read."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.ci.client import CIClient, ClientStats
from connector.models import Account, AccountOptions, Parcel, Shipment, ShipmentLine
from connector.plugin import CIPort, GrouponPlugin
from connector.reference_host.facade import ChannelFacade
from connector.reference_host.host import ReferenceHost
from connector.reference_host.plugins import get_plugin_manager
from connector.secrets import Secret
from connector.testing.simulator import SimulatorHandle

T0 = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)  # a Monday


class StepClock:
    """The plugin's clock: real time does not matter to it, so tests move it by hand (the
    dispatcher's retry backoff is counted in this clock's minutes)."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta


@dataclass
class ClientRecorder:
    """A ``client_factory`` for :class:`GrouponPlugin` that keeps every client it built."""

    clients: list[CIClient] = field(default_factory=list)

    def __call__(self, account: Account) -> CIPort:
        client = CIClient.for_account(account)
        self.clients.append(client)
        return client

    def stats(self) -> ClientStats:
        """Every client's statistics, summed."""
        calls: dict[str, int] = {}
        retries: dict[str, int] = {}
        failures: dict[str, int] = {}
        protocol = 0
        for client in self.clients:
            s = client.stats
            for target, source in ((calls, s.calls), (retries, s.retries), (failures, s.failures)):
                for key, value in source.items():
                    target[key] = target.get(key, 0) + value
            protocol += s.protocol_errors
        return ClientStats(calls, retries, protocol, failures)


def make_account(
    *,
    name: str,
    supplier_id: str,
    token: str,
    base_url: str,
    data_dir: Path,
    mappings_dir: Path | None = None,
    **options: Any,
) -> Account:
    """A Groupon v4 US account against ``base_url``; ``options`` are AccountOptions fields."""
    opts: dict[str, Any] = {"watch_cancellations": False, "tracking_format_policy": "off"}
    opts.update(options)
    return Account(
        name=name,
        channel="groupon",
        supplier_id=supplier_id,
        token=Secret(token),
        region="US",
        api_version="v4",
        base_url=base_url,
        data_dir=data_dir,
        mappings_dir=mappings_dir,
        options=AccountOptions(**opts),
    )


@dataclass
class HostRig:
    """One reference host with the Groupon plugin loaded through pluggy."""

    host: ReferenceHost
    plugin: GrouponPlugin
    clients: ClientRecorder
    clock: StepClock

    def close(self) -> None:
        self.plugin.close()
        self.host.close()


def make_rig(db_path: Path, clock: StepClock | None = None) -> HostRig:
    """A reference host over ``db_path`` with a fresh plugin (own clients, own ledgers)."""
    clock = clock or StepClock()
    clients = ClientRecorder()
    plugin = GrouponPlugin(client_factory=clients, clock=clock)
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(plugin, name="groupon")
    return HostRig(ReferenceHost(db_path, ChannelFacade(pm)), plugin, clients, clock)


def open_lines_by_order(rig: HostRig, account: Account) -> dict[str, list[tuple[int, int]]]:
    """The host's open lines grouped by Groupon orderid: ``[(ci_lineitemid, open quantity)]``."""
    grouped: dict[str, list[tuple[int, int]]] = {}
    for row in rig.host.store.open_lines(account.name):
        lid = int(str(row["ci_lineitemid"]))
        open_qty = int(str(row["quantity"])) - int(str(row["shipped_quantity"]))
        if open_qty > 0:
            grouped.setdefault(str(row["orderid"]), []).append((lid, open_qty))
    return grouped


def ship_open_orders(
    rig: HostRig,
    account: Account,
    *,
    per_shipment: int = 100,
    tracking: Callable[[str], str] = lambda orderid: f"TRK{orderid}",
) -> list[Shipment]:
    """Ship every open line the host has: one parcel (own tracking number) per order, up to
    ``per_shipment`` orders per host shipment. Returns the shipments sent."""
    grouped = sorted(open_lines_by_order(rig, account).items())
    shipments = []
    for start in range(0, len(grouped), per_shipment):
        chunk = grouped[start : start + per_shipment]
        parcels = tuple(
            Parcel(tracking(orderid), tuple(ShipmentLine(lid, qty) for lid, qty in lines))
            for orderid, lines in chunk
        )
        shipment = Shipment(f"SHP-{account.name}-{chunk[0][0]}", "UPS", parcels)
        rig.host.ship(account, shipment)
        shipments.append(shipment)
    return shipments


def lines_in_sim(state: Any, supplier_id: str) -> list[dict[str, Any]]:
    """The simulator's view of one supplier's lines."""
    lines: list[dict[str, Any]] = state.get_state(supplier_id=supplier_id)["lines"]
    return lines


def conditional_probabilities(weights: Iterable[float], total: float) -> list[float]:
    """Per-rule probabilities for first-match-wins rules so that rule ``i`` fires on a share
    ``total * w_i / sum(w)`` of the requests they all match."""
    ws = list(weights)
    whole = sum(ws)
    out, used = [], 0.0
    for w in ws:
        share = total * w / whole
        out.append(min(1.0, share / (1.0 - used)))
        used += share
    return out


@contextmanager
def simulator_host(
    sim: SimulatorHandle, data_dir: Path
) -> Iterator[tuple[GrouponPlugin, ChannelFacade, ReferenceHost]]:
    """The Groupon plugin loaded through pluggy and a reference host (store in ``data_dir``),
    both on the simulator's clock (the host runs on CI's clock); the plugin is closed on
    exit."""
    pm = get_plugin_manager(load_entrypoints=False)
    plugin = GrouponPlugin(clock=sim.state.clock.now)
    pm.register(plugin, name="groupon")
    facade = ChannelFacade(pm)
    host = ReferenceHost(data_dir / "host.sqlite3", facade, clock=sim.state.clock.now)
    try:
        yield plugin, facade, host
    finally:
        plugin.close()
