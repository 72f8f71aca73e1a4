"""Batch dispatch benchmark (issue 10 / issue 11 item 4): the same shipments sent one call per
shipment (``ReferenceHost.ship`` -> ``oms_dispatch``) and in waves (``ReferenceHost.ship_many``
-> ``oms_dispatch_many``), each on a fresh, identically seeded simulator over loopback.

Untimed set-up in each child: one sync (import + acknowledge every line). Timed: the tracking
only. Printed: wall seconds, shipments per second, CI tracking calls, and the speed-up. Run::

    make bench-dispatch-many                   # 3,000 lines (about 1,900 shipments)
    .venv/bin/python -m benchmarks.bench_dispatch_many --lines 6000 --wave 500
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_dispatch import COURIER, shipment_plan
from benchmarks.bench_import import listing_pages, make_host, run_child, running_simulator

__all__ = ["main", "measure"]


def _child(
    url: str,
    supplier_id: str,
    token: str,
    workdir: Path,
    plan: list[dict[str, Any]],
    wave: int,
) -> dict[str, Any]:
    """Sync (untimed), then ship the plan one by one (``wave == 0``) or in waves (timed)."""
    from connector.models import Shipment

    host, account = make_host(url, supplier_id, token, workdir)
    try:
        report = host.sync(account)
        expected = sum(len(s["lines"]) for s in plan)
        if report.lines_marked_exported != expected:
            raise RuntimeError(f"set-up acknowledged {report.lines_marked_exported} of {expected}")
        shipments = [
            Shipment.single(s["shipment_id"], COURIER, s["tracking"], dict(map(tuple, s["lines"])))
            for s in plan
        ]
        before = host.facade.channel_stats(account=account)
        outcomes: dict[str, int] = {}
        started = time.perf_counter()
        if wave <= 0:
            results = [r for s in shipments for r in host.ship(account, s)]
        else:
            results = []
            for start in range(0, len(shipments), wave):
                results += host.ship_many(account, shipments[start : start + wave])
        seconds = time.perf_counter() - started
        after = host.facade.channel_stats(account=account)
        for r in results:
            outcomes[r.outcome.value] = outcomes.get(r.outcome.value, 0) + 1
        key = "calls:tracking_notification"
        return {
            "seconds": seconds,
            "lines": expected,
            "shipments": len(shipments),
            "outcomes": outcomes,
            "tracking_calls": after.get(key, 0) - before.get(key, 0),
        }
    finally:
        host.close()


def measure(lines: int, wave: int) -> dict[str, Any]:
    """Both runs on fresh simulators seeded alike; the figures of each and the speed-up."""
    runs: dict[str, dict[str, Any]] = {}
    plan: list[dict[str, Any]] = []
    for name, size in (("one_by_one", 0), ("batched", wave)):
        with (
            tempfile.TemporaryDirectory(prefix=f"bench-many-{name}-") as tmp,
            running_simulator(lines) as sim,
        ):
            plan = shipment_plan(listing_pages(sim))
            runs[name] = run_child(
                _child,
                url=sim.url,
                supplier_id=sim.supplier_id,
                token=sim.token,
                workdir=Path(tmp),
                plan=plan,
                wave=size,
            )
    one, many = runs["one_by_one"], runs["batched"]
    return {
        "lines": lines,
        "shipments": len(plan),
        "wave": wave,
        "one_by_one_s": round(one["seconds"], 3),
        "batched_s": round(many["seconds"], 3),
        "one_by_one_shipments_per_s": round(len(plan) / one["seconds"], 1),
        "batched_shipments_per_s": round(len(plan) / many["seconds"], 1),
        "one_by_one_tracking_calls": one["tracking_calls"],
        "batched_tracking_calls": many["tracking_calls"],
        "speedup": round(one["seconds"] / many["seconds"], 2),
        "one_by_one_outcomes": one["outcomes"],
        "batched_outcomes": many["outcomes"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--wave", type=int, default=500, help="shipments per ship_many call")
    args = parser.parse_args(argv)
    figures = measure(args.lines, args.wave)
    complete = (
        figures["one_by_one_outcomes"]
        == figures["batched_outcomes"]
        == {"accepted": figures["one_by_one_outcomes"].get("accepted", 0)}
    )
    figures["every_line_accepted_both_ways"] = complete
    print(json.dumps(figures))
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
