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

The two sides take turns. Each child has its own identically seeded simulator (both live in
the parent) and does its set-up first; then the shipments are cut into slices (one wave each,
or :data:`SLICES` for one shipment per hook) and the connector and the floor each do slice
1, then slice 2 in the other order, and so on; each side's time is the sum of its slices.
This machine's speed drifts within seconds: three one-shipment floors in a row took 16.7,
12.7 and 9.6 s while the connector moved from 25.0 to 21.4 s, and the two halves of one wave
floor (52 and 53 calls) 0.36 and 0.59 s. A floor timed wholly before or after the connector
measured another machine; taking turns, both sides see the same one. After each connector
slice the parent waits :data:`SETTLE_SECONDS` on neither clock, so the WAL checkpoint the
connector's last commits woke does not run in the floor's turn. Each slice's ratio is
reported too.
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
    running_simulator,
)

__all__ = ["CARRIER", "COURIER", "DispatchRun", "measure_dispatch", "shipment_plan", "ups_number"]

SLICES = 8
"""Slices of a one-shipment run (a wave run takes turns wave by wave)."""
SETTLE_SECONDS = 0.8
"""Pause after each connector slice, on neither clock: the WAL checkpoint its last commits
woke runs within ``connector.runtime.checkpoint.INTERVAL`` (0.5 s), not in the floor's turn."""

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


def connector_dispatch_steps(
    url: str,
    supplier_id: str,
    token: str,
    workdir: Path,
    plan: list[dict[str, Any]],
    wave: int = 0,
) -> Generator[dict[str, Any], Any, None]:
    """Child side, in steps (:class:`~benchmarks.bench_import.SteppedChild`): a sync
    (untimed), then it yields how many shipments there are; each command ``(start, stop)``
    ships shipments ``start`` to ``stop`` through the host (timed): one ``ship`` per
    shipment, or ``ship_many`` per ``wave`` shipments when ``wave`` > 0 (``start`` a multiple
    of it); it yields their seconds, CPU and the plugin's share. The command ``"done"``
    yields the totals (tracking calls, outcomes, peak RSS)."""
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
        plugin_seconds = 0.0

        def timed(call: Callable[..., Any]) -> Callable[..., Any]:
            def run(**kwargs: Any) -> Any:
                nonlocal plugin_seconds
                t0 = time.perf_counter()
                try:
                    return call(**kwargs)
                finally:
                    plugin_seconds += time.perf_counter() - t0

            return run

        host.facade.dispatch = timed(host.facade.dispatch)
        host.facade.dispatch_many = timed(host.facade.dispatch_many)
        calls_key = "calls:tracking_notification"
        calls_before = host.facade.channel_stats(account=account).get(calls_key, 0)
        results: list[LineResult] = []
        command = yield {"shipments": len(shipments)}
        while command != "done":
            start, stop = command
            plugin_before = plugin_seconds
            cpu_before = cpu_seconds()
            started = time.perf_counter()
            if wave > 0:
                for first in range(start, stop, wave):
                    results += host.ship_many(account, shipments[first : min(first + wave, stop)])
            else:
                for shipment in shipments[start:stop]:
                    results += host.ship(account, shipment)
            command = yield {
                "seconds": time.perf_counter() - started,
                "cpu_seconds": cpu_seconds() - cpu_before,
                "plugin_seconds": plugin_seconds - plugin_before,
            }
        outcomes: dict[str, int] = {}
        for result in results:
            outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
        yield {
            "tracking_calls": host.facade.channel_stats(account=account).get(calls_key, 0)
            - calls_before,
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
    the import floor (untimed), then it yields; each command ``(start, stop)`` sends the
    tracking calls of shipments ``start`` to ``stop`` (one per shipment, or packed per wave
    as ``oms_dispatch_many`` packs them, ``start`` a multiple of ``wave``) and yields their
    seconds, CPU, lines and calls."""
    import requests

    from benchmarks.floor import dispatch_floor, import_floor, packed_batches, tracking_batches

    with requests.Session() as session:
        import_floor(session, url, supplier_id, token)
        command = yield {}
        while True:
            start, stop = command
            part = plan[start:stop]
            calls = (
                packed_batches(part, CARRIER, wave) if wave > 0 else tracking_batches(part, CARRIER)
            )
            cpu_before = cpu_seconds()
            result = dispatch_floor(session, url, supplier_id, token, calls)
            result["cpu_seconds"] = cpu_seconds() - cpu_before
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
    # Connector seconds / floor seconds of each slice, in order (see measure_dispatch).
    slice_ratios: tuple[float, ...] = ()

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


def _slices(shipments: int, wave: int) -> list[tuple[int, int]]:
    """The shipment ranges the two sides take turns on: one wave each, or :data:`SLICES`."""
    size = wave if wave > 0 else max(1, -(-shipments // SLICES))
    return [(start, min(start + size, shipments)) for start in range(0, shipments, size)]


def measure_dispatch(lines: int, *, progress: Progress = _quiet, wave: int = 0) -> DispatchRun:
    """Dispatch ``lines`` lines with the connector and with the floor, each on its own
    identically seeded simulator, taking turns slice by slice (see the module docstring);
    one ``oms_dispatch`` per shipment, or ``oms_dispatch_many`` per ``wave`` shipments."""
    label = f"dispatch {lines:,}" + (f" in waves of {wave}" if wave > 0 else " one by one")
    sides: dict[str, list[dict[str, Any]]] = {"connector": [], "floor": []}
    with (
        tempfile.TemporaryDirectory(prefix="bench-dispatch-") as tmp,
        running_simulator(lines) as sim,
        running_simulator(lines) as floor_sim,
    ):
        plan = shipment_plan(listing_pages(sim))
        progress(f"{label}: set-up of both children (a sync; the import floor)")
        with (
            SteppedChild(
                connector_dispatch_steps,
                url=sim.url,
                supplier_id=sim.supplier_id,
                token=sim.token,
                workdir=Path(tmp),
                plan=plan,
                wave=wave,
            ) as connector,
            SteppedChild(
                dispatch_floor_steps,
                url=floor_sim.url,
                supplier_id=floor_sim.supplier_id,
                token=floor_sim.token,
                plan=plan,
                wave=wave,
            ) as floor,
        ):
            slices = _slices(len(plan), wave)
            progress(f"{label}: {len(plan):,} shipments in {len(slices)} slices, taking turns")
            for number, part in enumerate(slices):
                turns = (("connector", connector), ("floor", floor))
                for side, child in turns if number % 2 == 0 else turns[::-1]:
                    sides[side].append(child.send(part))
                    if side == "connector":
                        # Off both clocks: the checkpoint its last commits woke (see above).
                        time.sleep(SETTLE_SECONDS)
            totals = connector.send("done")
        shipped = _shipped(sim, plan)
        floor_shipped = _shipped(floor_sim, plan)
    ours, theirs = sides["connector"], sides["floor"]
    floor_lines = sum(int(step["lines"]) for step in theirs)
    if floor_lines != lines:
        raise ChildError(f"dispatch floor sent {floor_lines} lines, expected {lines}")

    def total(steps: list[dict[str, Any]], key: str) -> float:
        return sum(float(step[key]) for step in steps)

    return DispatchRun(
        lines=lines,
        shipments=len(plan),
        connector_seconds=total(ours, "seconds"),
        plugin_seconds=total(ours, "plugin_seconds"),
        floor_seconds=total(theirs, "seconds"),
        accepted=int(totals["accepted"]),
        outcomes={str(k): int(v) for k, v in totals["outcomes"].items()},
        shipped_in_sim=shipped,
        floor_shipped_in_sim=floor_shipped,
        tracking_calls=sum(int(step["calls"]["tracking_notification"]) for step in theirs),
        connector_tracking_calls=int(totals["tracking_calls"]),
        wave=wave,
        connector_cpu_seconds=total(ours, "cpu_seconds"),
        floor_cpu_seconds=total(theirs, "cpu_seconds"),
        slice_ratios=tuple(
            float(c["seconds"]) / float(f["seconds"]) for c, f in zip(ours, theirs, strict=True)
        ),
    )
