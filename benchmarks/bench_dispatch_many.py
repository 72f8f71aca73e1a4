"""Batch dispatch benchmark (issue 10 / issue 11 item 4): the same shipments sent one call per
shipment (``ReferenceHost.ship`` -> ``oms_dispatch``) and in waves (``ReferenceHost.ship_many``
-> ``oms_dispatch_many``), each against its floor, on fresh, identically seeded simulators over
loopback. Both runs are :func:`benchmarks.bench_dispatch.measure_dispatch` (``make bench``
measures the same two, as ``dispatch_ratio_to_floor`` and ``dispatch_batched_ratio_to_floor``).

Untimed set-up in each child: one sync (import + acknowledge every line). Timed: the tracking
only. Printed: wall seconds, shipments per second, CI tracking calls, the ratios to the floors
and the speed-up. Run::

    make bench-dispatch-many                   # 3,000 lines (about 1,600 shipments)
    .venv/bin/python -m benchmarks.bench_dispatch_many --lines 6000 --wave 500
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from benchmarks.bench_dispatch import measure_dispatch

__all__ = ["main", "measure"]


def measure(lines: int, wave: int) -> dict[str, Any]:
    """Both runs (each with its floor) and the speed-up of the batched one."""
    one = measure_dispatch(lines)
    many = measure_dispatch(lines, wave=wave)
    return {
        "lines": lines,
        "shipments": one.shipments,
        "wave": wave,
        "one_by_one_s": round(one.connector_seconds, 3),
        "one_by_one_floor_s": round(one.floor_seconds, 3),
        "one_by_one_ratio_to_floor": round(one.ratio, 2),
        "batched_s": round(many.connector_seconds, 3),
        "batched_floor_s": round(many.floor_seconds, 3),
        "batched_ratio_to_floor": round(many.ratio, 2),
        "one_by_one_shipments_per_s": round(one.shipments / one.connector_seconds, 1),
        "batched_shipments_per_s": round(many.shipments / many.connector_seconds, 1),
        "one_by_one_tracking_calls": one.connector_tracking_calls,
        "batched_tracking_calls": many.connector_tracking_calls,
        "batched_floor_tracking_calls": many.tracking_calls,
        "speedup": round(one.connector_seconds / many.connector_seconds, 2),
        "one_by_one_outcomes": one.outcomes,
        "batched_outcomes": many.outcomes,
        "complete": one.complete and many.complete,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--wave", type=int, default=500, help="shipments per ship_many call")
    args = parser.parse_args(argv)
    figures = measure(args.lines, args.wave)
    complete = bool(figures["complete"]) and (
        figures["one_by_one_outcomes"]
        == figures["batched_outcomes"]
        == {"accepted": figures["one_by_one_outcomes"].get("accepted", 0)}
    )
    figures["every_line_accepted_both_ways"] = complete
    print(json.dumps(figures))
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
