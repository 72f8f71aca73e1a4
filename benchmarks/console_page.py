"""``make bench-ui``: how long the simulator console takes to render pages at 100,000 lines.

``python -m benchmarks.console_page [--lines 100000] [--repeats 5]`` seeds one account with
``--lines`` lines (plus a small second account), serves the app on 127.0.0.1:0 with waitress and
times full HTTP GETs of the console's pages (server render + transfer, as a browser waits for
them). Prints a table to stdout and, as the LAST line, one JSON object with every figure and
``target_met`` (every page's slowest run under 1 s). A missed target is printed as missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import requests

from mock_ci_server.app import create_app
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.state import SimState

TARGET_MS = 1000.0
BIG = "90001"
SMALL = "90002"


def _progress(message: str) -> None:
    print(f"[bench-ui {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build_state(lines: int) -> tuple[SimState, float]:
    """A state with ``lines`` one-line orders on BIG and 200 on SMALL; returns seed seconds."""
    state = SimState()
    state.clock.set(datetime(2024, 3, 4, 12, 0, tzinfo=UTC))
    state.add_account(BIG, "bench-token-big-0123456789", region="US", name="Big")
    state.add_account(SMALL, "bench-token-small-0123456789", region="US", name="Small")
    started = time.perf_counter()
    state.seed(BIG, orders=lines, seed=1, spread_hours=24 * 20)
    state.seed(SMALL, orders=200, seed=2)
    return state, time.perf_counter() - started


def pages(state: SimState, lines: int) -> dict[str, str]:
    """Console URLs worth timing: cheap index walks and the scans behind the search box."""
    _total, [sample] = state.find_lines(BIG, offset=lines // 2, limit=1)
    last_page = max((lines + 49) // 50, 1)
    surname = str(sample["customer"]).split()[-1]
    return {
        "accounts overview": "/_sim/ui/",
        "lines page 1": f"/_sim/ui/lines?account={BIG}",
        "lines last page": f"/_sim/ui/lines?account={BIG}&page={last_page}",
        "all accounts page 1": "/_sim/ui/lines",
        "all accounts page 500": "/_sim/ui/lines?page=500",
        "status=open": f"/_sim/ui/lines?account={BIG}&status=open",
        "customer search": f"/_sim/ui/lines?account={BIG}&customer={surname}",
        "sku search": f"/_sim/ui/lines?sku={sample['sku']}&page=3",
        "order id": f"/_sim/ui/lines?q={sample['orderid']}",
        "line id": f"/_sim/ui/lines?q={sample['ci_lineitemid']}",
        "line detail": f"/_sim/ui/lines/{sample['ci_lineitemid']}",
    }


def run(lines: int, repeats: int) -> dict[str, Any]:
    _progress(f"seeding {lines:,} lines")
    state, seed_s = build_state(lines)
    server = serve_in_thread(create_app(state))
    timings: dict[str, list[float]] = {}
    try:
        with requests.Session() as session:
            # The first search after a seed builds the per-supplier search lists: timed once,
            # cold, before any warm-up (the runs below reuse the lists).
            cold = pages(state, lines)["customer search"]
            started = time.perf_counter()
            session.get(server.url + cold, timeout=60).raise_for_status()
            timings["first search after seeding (cold)"] = [(time.perf_counter() - started) * 1000]
            _progress(f"first search after seeding: {timings[next(iter(timings))][0]:.1f} ms")
            for name, path in pages(state, lines).items():  # 1 warm-up + repeats each
                session.get(server.url + path, timeout=60).raise_for_status()  # warm-up
                runs = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    response = session.get(server.url + path, timeout=60)
                    response.raise_for_status()
                    runs.append((time.perf_counter() - started) * 1000)
                timings[name] = runs
                _progress(f"{name}: median {statistics.median(runs):.1f} ms")
    finally:
        server.stop()
    worst = max(max(r) for r in timings.values())
    return {
        "lines": lines,
        "repeats": repeats,
        "seed_s": round(seed_s, 2),
        "pages_ms": {
            name: {"median": round(statistics.median(r), 1), "max": round(max(r), 1)}
            for name, r in timings.items()
        },
        "worst_ms": round(worst, 1),
        "target_ms": TARGET_MS,
        "target_met": worst < TARGET_MS,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = run(args.lines, args.repeats)
    print(f"console pages at {result['lines']:,} lines ({result['repeats']} runs each)")
    print(f"{'page':<36} {'median ms':>10} {'max ms':>10}")
    for name, figures in result["pages_ms"].items():
        print(f"{name:<36} {figures['median']:>10.1f} {figures['max']:>10.1f}")
    verdict = "met" if result["target_met"] else "MISSED"
    print(f"target: every page < {TARGET_MS:.0f} ms -> {verdict} (worst {result['worst_ms']} ms)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
