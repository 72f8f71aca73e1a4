"""Dispatch benchmark: tracking for N imported lines, through the reference host, over loopback.

The plan is one shipment per order (all its lines, full quantity, one valid UPS number), built
from the simulator's listing in the parent and handed to both children. Untimed set-up in each
child brings the simulator to the same state (connector: one sync; floor: the import floor);
the timed part is the tracking only:

* connector: ``ReferenceHost.ship`` per shipment (host commit, pre-flight, outbox, one
  ``tracking_notification`` call per shipment); with ``wave`` > 0, ``ReferenceHost.ship_many``
  per wave of ``wave`` shipments (the batch hook ``oms_dispatch_many``: one host transaction,
  one outbox transaction, tracking packed ``tracking_batch_size`` items a call);
* floor: the same ``tracking_notification`` calls with plain ``requests`` (packed the same
  way for waves, :func:`benchmarks.floor.packed_batches`).

Both children report the CPU time of their timed part and the tracking calls they made.

The floor brackets the connector: each side has its own identically seeded simulator (both
live in the parent), and the floor child, its set-up done, sends the first half of its calls
just before the connector child runs and the second half just after it; its time is the sum.
This machine's speed drifts over minutes (three floors in a row: 16.7, 12.7 and 9.6 s, while
the connector moved from 25.0 to 21.4 s), so a floor timed wholly after the connector
measured a different machine; split around it, a drift of steady pace cancels out. The
connector child closes its host and ledger (their checkpoint threads stopped) before it
answers, so none of its work runs on the floor's clock.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bench_import import (
    ChildError,
    SteppedChild,
    cpu_seconds,
    listing_pages,
    make_host,
    max_rss_mb,
    run_child,
    running_simulator,
)

__all__ = ["CARRIER", "COURIER", "DispatchRun", "measure_dispatch", "shipment_plan", "ups_number"]

COURIER = "UPS"  # host courier name; mappings/couriers.csv maps it to carrier code "ups"
CARRIER = "ups"

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


def ups_number(serial: int) -> str:
    """A valid UPS 1Z number for ``serial``: the crash worker's ``ups_tracking_number``."""
    # Imported here (as the check it replaces was): benchmark children that import this
    # module must not load the crash worker's connector imports with it.
    from benchmarks.crash_worker import ups_tracking_number

    return ups_tracking_number(serial)


def shipment_plan(pages: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One shipment per order, in order of first appearance in the listing."""
    by_order: dict[str, list[list[int]]] = {}
    for records in pages:
        for record in records:
            lines = by_order.setdefault(str(record["orderid"]), [])
            lines.extend(
                [int(i["ci_lineitemid"]), int(i["quantity"])] for i in record["line_items"]
            )
    return [
        {"shipment_id": f"SHIP-{orderid}", "tracking": ups_number(n), "lines": lines}
        for n, (orderid, lines) in enumerate(by_order.items())
    ]


def connector_dispatch(
    url: str,
    supplier_id: str,
    token: str,
    workdir: Path,
    plan: list[dict[str, Any]],
    wave: int = 0,
) -> dict[str, Any]:
    """Child side: sync (untimed), then ship every planned shipment through the host (timed):
    one ``ship`` per shipment, or ``ship_many`` per ``wave`` shipments when ``wave`` > 0."""
    from connector.models import LineOutcome, LineResult, Shipment

    host, account = make_host(url, supplier_id, token, workdir)
    try:
        report = host.sync(account)
        expected = sum(len(s["lines"]) for s in plan)
        if report.lines_marked_exported != expected:
            raise RuntimeError(
                f"set-up sync acknowledged {report.lines_marked_exported} of {expected} lines"
            )
        shipments = [
            Shipment.single(s["shipment_id"], COURIER, s["tracking"], dict(map(tuple, s["lines"])))
            for s in plan
        ]
        outcomes: dict[str, int] = {}
        plugin_seconds = 0.0
        facade_dispatch = host.facade.dispatch

        def timed_dispatch(**kwargs: Any) -> Any:
            nonlocal plugin_seconds
            t0 = time.perf_counter()
            try:
                return facade_dispatch(**kwargs)
            finally:
                plugin_seconds += time.perf_counter() - t0

        facade_many = host.facade.dispatch_many

        def timed_many(**kwargs: Any) -> Any:
            nonlocal plugin_seconds
            t0 = time.perf_counter()
            try:
                return facade_many(**kwargs)
            finally:
                plugin_seconds += time.perf_counter() - t0

        host.facade.dispatch = timed_dispatch
        host.facade.dispatch_many = timed_many
        calls_key = "calls:tracking_notification"
        calls_before = host.facade.channel_stats(account=account).get(calls_key, 0)
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        if wave > 0:
            results: list[LineResult] = []
            for start in range(0, len(shipments), wave):
                results += host.ship_many(account, shipments[start : start + wave])
        else:
            results = [r for shipment in shipments for r in host.ship(account, shipment)]
        seconds = time.perf_counter() - started
        cpu = cpu_seconds() - cpu_before
        calls = host.facade.channel_stats(account=account).get(calls_key, 0) - calls_before
        for result in results:
            outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "tracking_calls": calls,
            "plugin_seconds": plugin_seconds,
            "lines": expected,
            "accepted": outcomes.get(LineOutcome.ACCEPTED.value, 0),
            "outcomes": outcomes,
            "peak_rss_mb": max_rss_mb(),
        }
    finally:
        host.close()


def dispatch_floor_steps(
    url: str, supplier_id: str, token: str, plan: list[dict[str, Any]], wave: int = 0
) -> Generator[dict[str, Any], tuple[int, int], None]:
    """Child side of the dispatch floor, in steps (:class:`~benchmarks.bench_import.SteppedChild`):
    the import floor (untimed), then it yields how many tracking calls the plan makes (one
    per shipment, or packed per wave as ``oms_dispatch_many`` packs them); each command
    ``(start, stop)`` sends calls ``start`` to ``stop`` and yields their seconds and CPU."""
    import requests

    from benchmarks.floor import dispatch_floor, import_floor, packed_batches, tracking_batches

    with requests.Session() as session:
        import_floor(session, url, supplier_id, token)
        calls = packed_batches(plan, CARRIER, wave) if wave > 0 else tracking_batches(plan, CARRIER)
        command = yield {"calls": len(calls)}
        while True:
            start, stop = command
            cpu_before = cpu_seconds()
            result = dispatch_floor(session, url, supplier_id, token, calls[start:stop])
            result["cpu_seconds"] = cpu_seconds() - cpu_before
            result["peak_rss_mb"] = max_rss_mb()
            command = yield result


@dataclass
class DispatchRun:
    """One connector dispatch run and its floor."""

    lines: int
    shipments: int
    connector_seconds: float
    plugin_seconds: float
    floor_seconds: float
    accepted: int
    outcomes: dict[str, int]
    shipped_in_sim: int
    floor_shipped_in_sim: int
    tracking_calls: int
    connector_tracking_calls: int = -1
    wave: int = 0
    connector_cpu_seconds: float = float("nan")
    floor_cpu_seconds: float = float("nan")
    # The floor's seconds before the connector child and after it (floor_seconds is the sum).
    floor_halves: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def ratio(self) -> float:
        """Connector wall time (host.ship end to end) / floor wall time."""
        return self.connector_seconds / self.floor_seconds

    @property
    def complete(self) -> bool:
        """Every line accepted by CI and shipped in the simulator, on both sides, with the
        same number of tracking calls on both sides."""
        return (
            self.accepted == self.lines == self.shipped_in_sim == self.floor_shipped_in_sim
            and self.connector_tracking_calls == self.tracking_calls
        )


def _shipped(sim: Any, plan: list[dict[str, Any]]) -> int:
    count = 0
    for shipment in plan:
        for lid, _qty in shipment["lines"]:
            line = sim.state.line(lid)
            count += line is not None and line.status == "shipped"
    return count


def measure_dispatch(lines: int, *, progress: Progress = _quiet, wave: int = 0) -> DispatchRun:
    """Dispatch ``lines`` lines with the connector, against a floor on its own identically
    seeded simulator that sends half of its calls just before the connector child and the
    other half just after it (see the module docstring); one ``oms_dispatch`` per shipment,
    or ``oms_dispatch_many`` per ``wave`` shipments."""
    label = f"dispatch {lines:,}" + (f" in waves of {wave}" if wave > 0 else " one by one")
    with (
        tempfile.TemporaryDirectory(prefix="bench-dispatch-") as tmp,
        running_simulator(lines) as sim,
        running_simulator(lines) as floor_sim,
    ):
        progress(f"{label}: seeded two simulators; planning shipments")
        plan = shipment_plan(listing_pages(sim))
        progress(f"{label}: floor child, set-up (the import floor)")
        with SteppedChild(
            dispatch_floor_steps,
            url=floor_sim.url,
            supplier_id=floor_sim.supplier_id,
            token=floor_sim.token,
            plan=plan,
            wave=wave,
        ) as floor:
            calls = int(floor.ready["calls"])
            half = calls // 2
            progress(f"{label}: floor, first half ({half:,} of {calls:,} calls)")
            before = floor.send((0, half))
            progress(f"{label}: connector child ({len(plan):,} shipments)")
            child = run_child(
                connector_dispatch,
                url=sim.url,
                supplier_id=sim.supplier_id,
                token=sim.token,
                workdir=Path(tmp),
                plan=plan,
                wave=wave,
            )
            progress(f"{label}: floor, second half ({calls - half:,} calls)")
            after = floor.send((half, calls))
        shipped = _shipped(sim, plan)
        floor_shipped = _shipped(floor_sim, plan)
    floor_lines = int(before["lines"]) + int(after["lines"])
    if floor_lines != lines:
        raise ChildError(f"dispatch floor sent {floor_lines} lines, expected {lines}")
    return DispatchRun(
        lines=lines,
        shipments=len(plan),
        connector_seconds=float(child["seconds"]),
        plugin_seconds=float(child["plugin_seconds"]),
        floor_seconds=float(before["seconds"]) + float(after["seconds"]),
        accepted=int(child["accepted"]),
        outcomes={str(k): int(v) for k, v in child["outcomes"].items()},
        shipped_in_sim=shipped,
        floor_shipped_in_sim=floor_shipped,
        tracking_calls=int(before["calls"]["tracking_notification"])
        + int(after["calls"]["tracking_notification"]),
        connector_tracking_calls=int(child["tracking_calls"]),
        wave=wave,
        connector_cpu_seconds=float(child["cpu_seconds"]),
        floor_cpu_seconds=float(before["cpu_seconds"]) + float(after["cpu_seconds"]),
        floor_halves=(float(before["seconds"]), float(after["seconds"])),
    )
