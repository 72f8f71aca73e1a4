"""``make bench``: import and dispatch against their floors, connector memory, simulator timings.

``python -m benchmarks.run [--lines 100000] [--small 10000] [--sim-repeats 30]`` prints
progress to stderr, a table to stdout and, as the LAST stdout line, one JSON object with
every figure, the machine, and ``targets_met`` per target. A missed target is printed as
missed; nothing is tuned to pass. Exit status is 0 when the run completed (targets met or not),
1 when a benchmark failed to run or a run lost data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["TARGETS", "evaluate_targets", "main", "run"]

TARGETS: dict[str, str] = {
    "import_ratio_to_floor": "import wall time <= 1.5 x floor",
    "peak_rss_mb_10k": "connector peak RSS at the small run <= 200 MB",
    "peak_rss_mb_100k": "connector peak RSS at the large run <= 200 MB",
    "peak_rss_growth": "peak RSS large run <= 1.2 x small run",
    "dispatch_ratio_to_floor": "dispatch wall time <= 1.5 x floor",
    "sim_seed_100k_s": "simulator seeds 100,000 lines in < 10 s",
    "sim_page_ratio": "simulator page time at 100k lines <= 1.5 x at 1k (worst page kind)",
}


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _num(value: float, digits: int = 3) -> float | None:
    """JSON-safe rounding (NaN/inf become null)."""
    return round(value, digits) if math.isfinite(value) else None


def evaluate_targets(figures: dict[str, Any]) -> dict[str, bool | None]:
    """Each target of :data:`TARGETS` -> met (``True``/``False``), ``None`` if not measured."""

    def le(key: str, limit: float) -> bool | None:
        value = figures.get(key)
        return None if value is None else bool(value <= limit)

    rss_10k, rss_100k = figures.get("peak_rss_mb_10k"), figures.get("peak_rss_mb_100k")
    seed = figures.get("sim_seed_100k_s")
    return {
        "import_ratio_to_floor": le("import_ratio_to_floor", 1.5),
        "peak_rss_mb_10k": le("peak_rss_mb_10k", 200.0),
        "peak_rss_mb_100k": le("peak_rss_mb_100k", 200.0),
        "peak_rss_growth": (
            None if rss_10k is None or rss_100k is None else bool(rss_100k <= 1.2 * rss_10k)
        ),
        "dispatch_ratio_to_floor": le("dispatch_ratio_to_floor", 1.5),
        "sim_seed_100k_s": None if seed is None else bool(seed < 10.0),
        "sim_page_ratio": le("sim_page_ratio_100k_vs_1k", 1.5),
    }


def run(lines: int, small: int, sim_repeats: int) -> dict[str, Any]:
    """Run every benchmark once and return the figures (see the module docstring)."""
    from benchmarks import bench_simulator
    from benchmarks.bench_dispatch import measure_dispatch
    from benchmarks.bench_import import measure_import

    started = time.perf_counter()
    _progress(f"simulator: seeding 100,000 lines, page times ({sim_repeats} repeats)")
    sim = bench_simulator.run(repeats=sim_repeats)
    pages_1k, pages_100k = sim["page_ms_1000_lines"], sim["page_ms_100000_lines"]

    small_run = measure_import(small, progress=_progress)
    large_run = measure_import(lines, progress=_progress)
    dispatch = measure_dispatch(small, progress=_progress)

    figures: dict[str, Any] = {
        "lines": lines,
        "small_lines": small,
        "import_lines_per_s": _num(large_run.lines_per_s, 1),
        "import_seconds": _num(large_run.connector_seconds),
        "import_floor_seconds": _num(large_run.floor_seconds),
        "import_ratio_to_floor": _num(large_run.ratio, 2),
        "import_small_seconds": _num(small_run.connector_seconds),
        "import_small_floor_seconds": _num(small_run.floor_seconds),
        "import_small_ratio_to_floor": _num(small_run.ratio, 2),
        "import_orders": large_run.orders,
        "import_split_order_share": _num(large_run.split_share, 3),
        "import_multi_line_order_share": _num(large_run.multi_line_share, 3),
        "import_floor_calls": large_run.floor_calls,
        "import_complete": large_run.complete and small_run.complete,
        "import_errors": large_run.errors + small_run.errors,
        "peak_rss_mb_10k": _num(small_run.peak_rss_mb, 1),
        "peak_rss_mb_100k": _num(large_run.peak_rss_mb, 1),
        "floor_peak_rss_mb_100k": _num(large_run.floor_peak_rss_mb, 1),
        "dispatch_lines": dispatch.lines,
        "dispatch_shipments": dispatch.shipments,
        "dispatch_tracking_calls": dispatch.tracking_calls,
        "dispatch_seconds": _num(dispatch.connector_seconds),
        "dispatch_plugin_seconds": _num(dispatch.plugin_seconds),
        "dispatch_floor_seconds": _num(dispatch.floor_seconds),
        "dispatch_ratio_to_floor": _num(dispatch.ratio, 2),
        "dispatch_outcomes": dispatch.outcomes,
        "dispatch_complete": dispatch.complete,
        "sim_seed_100k_s": sim["seed_100000_lines_s"],
        "sim_seed_1k_s": sim["seed_1000_lines_s"],
        "sim_page_ms_1k": pages_1k["first_page"],
        "sim_page_ms_100k": pages_100k["first_page"],
        "sim_page_ms_by_kind_1k": pages_1k,
        "sim_page_ms_by_kind_100k": pages_100k,
        "sim_page_ratio_100k_vs_1k": max(sim["page_ratio_100k_vs_1k"].values(), default=None),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "total_seconds": None,
    }
    figures["targets_met"] = evaluate_targets(figures)
    figures["total_seconds"] = _num(time.perf_counter() - started, 1)
    return figures


def _table(f: dict[str, Any]) -> str:
    met = f["targets_met"]

    def mark(key: str) -> str:
        value = met.get(key)
        return "n/a" if value is None else ("met" if value else "MISSED")

    small, large = f"{f['small_lines']:,}", f"{f['lines']:,}"
    rows = [
        ("measure", "value", "target", "result"),
        (
            f"import {large} lines: connector / floor",
            f"{f['import_seconds']} s / {f['import_floor_seconds']} s"
            f" = {f['import_ratio_to_floor']}x",
            "<= 1.5x",
            mark("import_ratio_to_floor"),
        ),
        ("import throughput", f"{f['import_lines_per_s']} lines/s", "", ""),
        (
            f"import {small} lines: connector / floor",
            f"{f['import_small_seconds']} s / {f['import_small_floor_seconds']} s"
            f" = {f['import_small_ratio_to_floor']}x",
            "(info)",
            "",
        ),
        (
            "orders split across pages / multi-line",
            f"{f['import_split_order_share']:.1%} / {f['import_multi_line_order_share']:.1%}",
            ">= 10% split",
            "met" if f["import_split_order_share"] >= 0.10 else "MISSED",
        ),
        (
            f"peak RSS, {small} lines",
            f"{f['peak_rss_mb_10k']} MB",
            "<= 200 MB",
            mark("peak_rss_mb_10k"),
        ),
        (
            f"peak RSS, {large} lines",
            f"{f['peak_rss_mb_100k']} MB",
            "<= 200 MB",
            mark("peak_rss_mb_100k"),
        ),
        ("peak RSS growth", "", "<= 1.2x", mark("peak_rss_growth")),
        (
            f"dispatch {f['dispatch_lines']:,} lines: connector / floor",
            f"{f['dispatch_seconds']} s / {f['dispatch_floor_seconds']} s"
            f" = {f['dispatch_ratio_to_floor']}x",
            "<= 1.5x",
            mark("dispatch_ratio_to_floor"),
        ),
        ("  of which inside the plugin", f"{f['dispatch_plugin_seconds']} s", "", ""),
        (
            "simulator: seed 100,000 lines",
            f"{f['sim_seed_100k_s']} s",
            "< 10 s",
            mark("sim_seed_100k_s"),
        ),
        (
            "simulator: page at 1k / 100k lines",
            f"{f['sim_page_ms_1k']} ms / {f['sim_page_ms_100k']} ms",
            "<= 1.5x",
            mark("sim_page_ratio"),
        ),
        (
            "runs complete (stored once, acked, shipped)",
            f"import {f['import_complete']}, dispatch {f['dispatch_complete']}",
            "True",
            "met" if f["import_complete"] and f["dispatch_complete"] else "FAILED",
        ),
    ]
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    out = [
        "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.append(f"machine: {f['cores']} cores, Python {f['python']}, {f['platform']}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.run``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000, help="large import (default 100000)")
    parser.add_argument(
        "--small", type=int, default=10_000, help="small import and dispatch (default 10000)"
    )
    parser.add_argument("--sim-repeats", type=int, default=30, help="page-time samples")
    args = parser.parse_args(argv)
    if args.lines < 1 or args.small < 1 or args.sim_repeats < 1:
        parser.error("--lines, --small and --sim-repeats must be >= 1")
    try:
        figures = run(args.lines, args.small, args.sim_repeats)
    except Exception as exc:  # a failed benchmark is reported, not a bare traceback
        print(f"benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(_table(figures))
    print(json.dumps(figures, sort_keys=True))
    return 0 if figures["import_complete"] and figures["dispatch_complete"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
