"""Import with latency injected on every CI call: connector against the serial floor (issue 11
point 3, overlap with the network).

Each side runs in a child process against its own identically seeded simulator whose fault
rule sleeps ``latency_ms`` before every ``/api/*`` call (the real CI is remote). Prints one JSON
line: wall seconds and process CPU seconds of both sides, the ratio, and whether the connector
stored and acknowledged every line once.

    .venv/bin/python -m benchmarks.overlap_latency --lines 20000 --latency-ms 80
    .venv/bin/python -m benchmarks.overlap_latency --lines 20000 --ack-concurrency 1

``--ack-concurrency`` overrides the account option (left out: the default).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from benchmarks.bench_import import measure_import

__all__ = ["main", "measure"]


def measure(lines: int, latency_ms: int, options: dict[str, Any]) -> dict[str, Any]:
    """Both sides through :func:`benchmarks.bench_import.measure_import` (the same children and
    simulators as ``make bench``'s ``import_ratio_to_floor_latency80``)."""
    run = measure_import(lines, latency_ms=latency_ms, options=options)
    return {
        "lines": lines,
        "latency_ms": latency_ms,
        "options": options,
        "floor_seconds": round(run.floor_seconds, 2),
        "floor_cpu_seconds": round(run.floor_cpu_seconds, 2),
        "floor_calls": run.floor_calls,
        "connector_seconds": round(run.connector_seconds, 2),
        "connector_cpu_seconds": round(run.connector_cpu_seconds, 2),
        "ratio_to_floor": round(run.ratio, 3),
        "complete": run.complete and run.floor_unexported_after == 0,
        "errors": run.errors[:3],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=int, default=80)
    parser.add_argument("--ack-concurrency", type=int, default=None)
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.ack_concurrency is not None:
        options["ack_concurrency"] = args.ack_concurrency
    print(json.dumps(measure(args.lines, args.latency_ms, options)))


if __name__ == "__main__":
    main()
