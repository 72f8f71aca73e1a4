"""Fault injection: 5,000 lines through the reference host over a real socket, with the simulator
spoiling 20% of the API answers, converge to "everything stored once, exported, tracked once".

The fault mix (seeded, first-match-wins rules over ``/api/*``): HTTP 500/502/503, 429 with
``Retry-After`` 0 and 1 s, a dropped connection *after* the simulator applied the request, a
stall of 1 s against a 0.5 s client timeout (the simulator applies the request late), JSON cut
in half, an HTML error page with HTTP 200, and ``success: false`` on ``get_orders``.

``success: false`` is injected on reads only: on a write it is CI refusing that line, which the
connector holds for the operator by design (docs/engine.md, "Acknowledgements"), so a spurious
refusal there would test the operator path, not convergence.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from connector.errors import ChannelError
from connector.models import HoldKind
from mock_ci_server.app import create_app
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.state import SimState
from tests.e2e._support import (
    StepClock,
    conditional_probabilities,
    lines_in_sim,
    make_account,
    make_rig,
    ship_open_orders,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

pytestmark = [pytest.mark.socket, pytest.mark.slow, pytest.mark.timeout(240)]

SUPPLIER, TOKEN = "77001", "tok-FAULTS-0123456789abcdef"
LINES = 5_000
MAX_CYCLES = 30
FAULT_SHARE = 0.20

# (weight, rule) - weights are shares of the 20%.
FAULT_MIX: list[tuple[float, dict[str, Any]]] = [
    (2, {"status": 500}),
    (2, {"status": 502}),
    (2, {"status": 503}),
    (1, {"status": 429, "retry_after": 0, "content_type": "text/plain", "body": "slow down"}),
    (1, {"status": 429, "retry_after": 1, "content_type": "text/plain", "body": "slow down"}),
    (2, {"drop": True}),
    (1, {"latency_ms": 1000}),
    (2, {"truncate": True}),
    (2, {"status": 200, "body": "<html><body><h1>Service Unavailable</h1></body></html>"}),
    (
        2,
        {
            "path": "/api/*/get_orders",
            "status": 200,
            "content_type": "text/json",
            "body": json.dumps({"success": False, "reason": "Temporary error, try again"}),
        },
    ),
]


class CountingApp:
    """Counts requests per API path in front of the fault middleware (what the server saw)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith("/api/"):
            with self._lock:
                self.counts[path] += 1
        return self.app(environ, start_response)


def fault_rules() -> list[dict[str, Any]]:
    probabilities = conditional_probabilities((w for w, _ in FAULT_MIX), FAULT_SHARE)
    rules = []
    for (_, rule), p in zip(FAULT_MIX, probabilities, strict=True):
        rules.append({"method": "*", "path": "/api/*", **rule, "probability": round(p, 6)})
    return rules


def test_sync_and_dispatch_converge_under_faults(tmp_path: Path) -> None:
    state = SimState()
    state.clock.freeze()
    state.add_account(SUPPLIER, TOKEN, region="US", merchant_level=5)
    seeded = state.seed(SUPPLIER, orders=LINES, seed=5, spread_hours=40.0)
    seeded_ids = set(seeded["ci_lineitemids"])
    assert len(seeded_ids) == LINES

    app = create_app(state)
    faults = app.extensions["sim_faults"]
    faults.set_seed(2024)
    faults.set_rules(fault_rules())
    counter = CountingApp(app.wsgi_app)
    app.wsgi_app = counter  # type: ignore[method-assign]

    server = serve_in_thread(app, threads=8)
    # The plugin's clock starts at the simulator's: orders must not look younger than "now".
    rig = make_rig(tmp_path / "host.sqlite3", StepClock(state.clock.now()))
    account = make_account(
        name="us",
        supplier_id=SUPPLIER,
        token=TOKEN,
        base_url=server.url,
        data_dir=tmp_path / "data",
        timeout_seconds=0.5,
        max_retries=5,
        backoff_seconds=0.01,
        # Smaller batches: more write calls, so more of them meet a fault.
        ack_batch_size=25,
        tracking_batch_size=25,
    )
    sync_errors: list[str] = []
    reports = []
    try:
        for _cycle in range(MAX_CYCLES):
            try:
                report = rig.host.sync(account)
            except ChannelError as exc:
                sync_errors.append(str(exc))
            else:
                reports.append(report)
                sync_errors.extend(report.errors)
            ship_open_orders(rig, account)
            # The dispatcher backs off in its own clock (60 s doubling, 1 h cap): move past it.
            rig.clock.advance(timedelta(hours=2))
            ledger = rig.plugin.ledger_for(account)
            pending = ledger.pending_outbox()
            unacked = list(ledger.lines(("staged", "held", "delivered", "stored")))
            host_lines = rig.host.store.count_lines(account.name)
            still_open = len(rig.host.store.open_lines(account.name))
            print(
                f"cycle {_cycle}: host lines {host_lines}, unacked {len(unacked)}, "
                f"outbox {len(pending)}, open {still_open}, errors {len(sync_errors)}"
            )
            if host_lines == LINES and not unacked and not pending and not still_open:
                break
        else:
            pytest.fail(f"no convergence after {MAX_CYCLES} cycles; errors: {sync_errors[-5:]}")
        cycles = _cycle + 1

        # Every seeded line in the host exactly once, under its own order.
        store = rig.host.store
        assert store.duplicates() == []
        assert store.count_lines(account.name) == LINES
        missing = [lid for lid in seeded_ids if store.line(account.name, lid) is None]
        assert missing == []
        assert store.count_orders(account.name) == LINES

        # Every line exported in CI and its tracking accepted exactly once.
        sim_lines = lines_in_sim(state, SUPPLIER)
        assert len(sim_lines) == LINES
        not_exported = [ln["ci_lineitemid"] for ln in sim_lines if not ln["exported"]]
        assert not_exported == []
        bad_tracking = [
            (ln["ci_lineitemid"], ln["tracking"])
            for ln in sim_lines
            if len(ln["tracking"]) != 1 or ln["status"] != "shipped"
        ]
        assert bad_tracking == []
        assert all(ln["tracking"][0]["tracking"] == f"TRK{ln['orderid']}" for ln in sim_lines)

        ledger = rig.plugin.ledger_for(account)
        assert ledger.held_lines() == []
        rows = ledger.outbox_rows(states=("accepted",))
        assert Counter(r.ci_lineitemid for r in rows) == Counter(dict.fromkeys(seeded_ids, 1))
        assert all(
            h.kind is not HoldKind.REJECTED_BY_CI
            for h in rig.host.facade.held_lines(account=account)
        )

        # Retries: every retry answers a faulted response, so they cannot outnumber the faults.
        fired = {i: r["fired"] for i, r in enumerate(faults.describe())}
        total_faults = sum(fired.values())
        requests = sum(counter.counts.values())
        stats = rig.clients.stats()
        summary = {
            "cycles": cycles,
            "requests": requests,
            "faults": total_faults,
            "retries": stats.retries,
            "failures": stats.failures,
            "protocol_errors": stats.protocol_errors,
            "sync_errors": len(sync_errors),
        }
        print(json.dumps(summary))
        assert 0.12 * requests <= total_faults <= 0.28 * requests, summary
        assert 0 < stats.total_retries <= total_faults, summary
        # The summary says what was retried and why: each kind of fault shows up as a reason.
        for reason in ("500", "502", "503", "429", "ReadTimeout", "protocol"):
            assert stats.retries.get(reason, 0) > 0, (reason, summary)
        assert set(stats.retries) <= {
            "500",
            "502",
            "503",
            "429",
            "ReadTimeout",
            "ConnectionError",
            "protocol",
        }, summary
        # What still failed after the client's retries was handled by the engine's own queue
        # (import repeated, acks re-sent, tracking rows retried), never as a lost update.
        assert set(stats.failures) <= {"CIBusinessError", "CITransportError", "CIProtocolError"}
        assert stats.failures.get("CIBusinessError", 0) == sum(
            1 for e in sync_errors if "CI refused get_orders" in e
        ), summary
        assert sum(r.lines_imported for r in reports) >= LINES
    finally:
        rig.close()
        server.stop()
