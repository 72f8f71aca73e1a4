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
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.bench_import import (
    SEED,
    SUPPLIER_ID,
    SeededSim,
    _seed_exact,
    run_child,
    unexported_count,
)

__all__ = ["latency_simulator", "main", "measure"]


@contextmanager
def latency_simulator(lines: int, latency_ms: int) -> Iterator[SeededSim]:
    """A seeded simulator on loopback with ``latency_ms`` before every real-API call."""
    from mock_ci_server.app import create_app
    from mock_ci_server.serve import serve_in_thread
    from mock_ci_server.state import SimState

    state = SimState()
    state.clock.freeze()
    token = secrets.token_urlsafe(24)
    state.add_account(SUPPLIER_ID, token, region="US", merchant_level=5, name="Bench Housewares")
    started = time.perf_counter()
    orders = _seed_exact(state, SUPPLIER_ID, lines, SEED)
    seeded = time.perf_counter() - started
    app = create_app(state)
    if latency_ms:
        app.extensions["sim_faults"].set_rules([{"path": "/api/*", "latency_ms": latency_ms}])
    server = serve_in_thread(app)
    try:
        yield SeededSim(server.url, SUPPLIER_ID, token, lines, orders, seeded, state)
    finally:
        server.stop()


def _cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def connector_child(
    url: str, supplier_id: str, token: str, workdir: Path, options: dict[str, Any]
) -> dict[str, Any]:
    """Child side: one reference-host sync with ``options`` set on the account."""
    from dataclasses import replace

    from benchmarks.bench_import import make_host

    host, account = make_host(url, supplier_id, token, workdir)
    if options:
        account = replace(account, options=replace(account.options, **options))
    try:
        cpu, started = _cpu(), time.perf_counter()
        report = host.sync(account)
        seconds, cpu = time.perf_counter() - started, _cpu() - cpu
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "lines_stored": host.store.count_lines(account.name),
            "lines_marked_exported": report.lines_marked_exported,
            "duplicates": len(host.store.duplicates()),
            "errors": list(report.errors),
        }
    finally:
        host.close()


def floor_child(url: str, supplier_id: str, token: str) -> dict[str, Any]:
    """Child side of the serial floor (:func:`benchmarks.floor.import_floor`)."""
    import requests

    from benchmarks.floor import import_floor

    cpu = _cpu()
    with requests.Session() as session:
        result = import_floor(session, url, supplier_id, token)
    result["cpu_seconds"] = _cpu() - cpu
    return result


def measure(lines: int, latency_ms: int, options: dict[str, Any]) -> dict[str, Any]:
    with latency_simulator(lines, latency_ms) as sim:
        floor = run_child(floor_child, url=sim.url, supplier_id=sim.supplier_id, token=sim.token)
        floor_left = unexported_count(sim.state, sim.supplier_id, sim.token)
    with (
        tempfile.TemporaryDirectory(prefix="bench-overlap-") as tmp,
        latency_simulator(lines, latency_ms) as sim,
    ):
        child = run_child(
            connector_child,
            url=sim.url,
            supplier_id=sim.supplier_id,
            token=sim.token,
            workdir=Path(tmp),
            options=options,
        )
        left = unexported_count(sim.state, sim.supplier_id, sim.token)
    complete = (
        child["lines_stored"] == lines
        and child["lines_marked_exported"] == lines
        and child["duplicates"] == 0
        and not child["errors"]
        and left == 0
        and floor_left == 0
    )
    return {
        "lines": lines,
        "latency_ms": latency_ms,
        "options": options,
        "floor_seconds": round(floor["seconds"], 2),
        "floor_cpu_seconds": round(floor["cpu_seconds"], 2),
        "floor_calls": floor["calls"],
        "connector_seconds": round(child["seconds"], 2),
        "connector_cpu_seconds": round(child["cpu_seconds"], 2),
        "ratio_to_floor": round(child["seconds"] / floor["seconds"], 3),
        "complete": complete,
        "errors": child["errors"][:3],
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
