"""``make hostile``: the connector's import against a hostile CI server (issue 9).

Each case runs the real plugin's ``oms_import_orders`` in a FRESH child process against
:class:`connector.testing.hostile.HostileServer` (served from this parent process, so the
child's peak RSS is the connector alone). Per case it prints what was measured: the error the
sync ended with, the wall time against the case's deadline, the child's peak RSS, the
requests the server saw (and whether the token reached another host), and the ledger lines
staged. Targets (issue 9): peak RSS < 200 MB and a clear error within the deadline in every
case. A missed target is printed as missed; exit status 1 when any is missed.

``python -m benchmarks.hostile [--cases huge,gzip_bomb,...]``; the last stdout line is one JSON
object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A canary: must never reach another host or the output.
TOKEN = "hOsT1le9TokEn4Bench7x2Q"  # noqa: S105
RSS_TARGET_MB = 200.0


@dataclass(frozen=True)
class Case:
    name: str
    mode: str
    deadline: float  # seconds the case must end within (the configured deadline + margin)
    expect: str  # exception class name expected
    options: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    expect_requests: int | None = None


CASES: tuple[Case, ...] = (
    Case("huge body (endless, chunked)", "huge", 30.0, "CILimitError"),
    Case("huge body (Content-Length 1 GB)", "huge_declared", 10.0, "CILimitError"),
    Case(
        "gzip bomb (1 GB inflated)",
        "gzip_bomb",
        30.0,
        "CILimitError",
        server={"bomb_bytes": 1024**3},
    ),
    Case("lying counters (1,118 pages)", "lying_counters", 10.0, "CILimitError"),
    Case(
        "lying counters, caps raised: sync deadline 10 s",
        "lying_counters",
        10.0 + 5.0,
        "CILimitError",
        options={
            "max_pages_per_listing": 5000,
            "max_items_per_listing": 2_000_000,
            "sync_deadline_seconds": 10.0,
        },
    ),
    Case(
        "slow drip in the body (timeout 10 s, deadline 15 s)",
        "drip_body",
        15.0 + 5.0,
        "CITransportError",
        options={"timeout_seconds": 10.0, "call_deadline_seconds": 15.0},
        server={"interval": 1.0},
    ),
    Case(
        "slow drip in the headers (timeout 10 s, deadline 15 s)",
        "drip_headers",
        15.0 + 5.0,
        "CITransportError",
        options={"timeout_seconds": 10.0, "call_deadline_seconds": 15.0},
        server={"interval": 1.0},
    ),
    Case("307 to another host", "redirect", 10.0, "CIProtocolError", expect_requests=1),
    Case(
        "max_retries = 0 on an HTML answer",
        "html",
        10.0,
        "CIProtocolError",
        options={"max_retries": 0},
        expect_requests=1,
    ),
    Case(
        "503 with an endless body, 2 retries",
        "status_503_endless",
        30.0,
        "CITransportError",
        options={"max_retries": 2, "call_deadline_seconds": 20.0},
    ),
)


# --- child: one import against the server ----------------------------------------------------


def _child(url: str, options: dict[str, Any], data_dir: str) -> dict[str, Any]:
    from connector.ledger import open_ledger
    from connector.models import Account, AccountOptions
    from connector.plugin import GrouponPlugin
    from connector.secrets import Secret

    opts = {"backoff_seconds": 0.0, "sku_fallback": "sku", **options}
    account = Account(
        name="hostile",
        channel="groupon",
        supplier_id="4242",
        token=Secret(TOKEN),
        base_url=url,
        data_dir=Path(data_dir),
        options=AccountOptions(**opts),
    )
    plugin = GrouponPlugin()
    started = time.monotonic()
    error, message = "", ""
    try:
        plugin.oms_import_orders(account=account)
    except Exception as exc:  # the figure is which error ended the sync
        error, message = type(exc).__name__, str(exc)
    elapsed = time.monotonic() - started
    plugin.close()
    ledger = open_ledger(account)
    try:
        staged = sum(ledger.summary().get("lines", {}).values())
    finally:
        ledger.close()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "error": error,
        "message": message,
        "seconds": round(elapsed, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "ledger_lines": staged,
    }


# --- parent ----------------------------------------------------------------------------------


def _run_case(case: Case) -> dict[str, Any]:
    from connector.testing.hostile import HostileServer

    with (
        HostileServer("ok") as other,
        HostileServer(case.mode, **case.server) as server,
        tempfile.TemporaryDirectory() as data_dir,
    ):
        server.redirect_to = f"{other.url}/steal"
        started = time.monotonic()
        proc = subprocess.run(  # noqa: S603 - our own module, fixed arguments
            [
                sys.executable,
                "-m",
                "benchmarks.hostile",
                "--child",
                server.url,
                json.dumps(case.options),
                data_dir,
            ],
            capture_output=True,
            text=True,
            timeout=case.deadline + 120,
            check=False,
        )
        wall = time.monotonic() - started
        seen = server.requests()
        leaked = any(TOKEN in (r.target + r.body.decode("latin-1")) for r in other.requests())
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"case": case.name, "ran": False, "stderr": proc.stderr[-2000:], "ok": False}
    within = result["seconds"] <= case.deadline
    rss_ok = result["peak_rss_mb"] < RSS_TARGET_MB
    error_ok = result["error"] == case.expect
    requests_ok = case.expect_requests is None or len(seen) == case.expect_requests
    token_in_output = TOKEN in proc.stdout or TOKEN in proc.stderr
    return {
        "case": case.name,
        "ran": True,
        **result,
        "deadline_s": case.deadline,
        "process_wall_s": round(wall, 2),
        "requests": len(seen),
        "other_host_requests": len(other.requests()) if case.mode == "redirect" else None,
        "token_leaked": leaked or token_in_output,
        "expected_error": case.expect,
        "ok": within and rss_ok and error_ok and requests_ok and not leaked and not token_in_output,
        "targets": {
            "within_deadline": within,
            "peak_rss_under_200mb": rss_ok,
            "clear_error": error_ok,
            "requests": requests_ok,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("URL", "OPTIONS", "DATA_DIR"))
    parser.add_argument("--cases", default="", help="comma-separated modes to run (default all)")
    args = parser.parse_args(argv)
    if args.child:
        url, options, data_dir = args.child
        print(json.dumps(_child(url, json.loads(options), data_dir)))
        return 0
    wanted = {m for m in args.cases.split(",") if m}
    results = []
    for case in CASES:
        if wanted and case.mode not in wanted:
            continue
        print(f"[hostile] {case.name} ...", file=sys.stderr, flush=True)
        results.append(_run_case(case))
    _table(results)
    summary = {
        "cases": results,
        "all_met": all(r["ok"] for r in results),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    print(json.dumps(summary))
    return 0 if summary["all_met"] else 1


def _table(results: list[dict[str, Any]]) -> None:
    header = f"{'case':<52} {'error':<17} {'s':>6} {'limit':>6} {'RSS MB':>7} {'req':>5}  met"
    print(header)
    print("-" * len(header))
    for r in results:
        if not r.get("ran"):
            print(f"{r['case']:<52} DID NOT RUN: {r.get('stderr', '')[:200]}")
            continue
        print(
            f"{r['case']:<52} {r['error'] or '(none)':<17} {r['seconds']:>6.1f} "
            f"{r['deadline_s']:>6.0f} {r['peak_rss_mb']:>7.1f} {r['requests']:>5}  "
            f"{'yes' if r['ok'] else 'MISSED ' + str(r['targets'])}"
        )
        print(f"    -> {r['message'][:180]}")


if __name__ == "__main__":
    raise SystemExit(main())
