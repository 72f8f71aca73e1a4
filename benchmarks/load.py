"""Load run: N connector workers on N accounts against one simulator, for a fixed duration.

``python -m benchmarks.load --workers 8 --seconds 60``

* one simulator (waitress, ``threads >= workers``) on 127.0.0.1, port 0;
* N accounts (own supplier id and token); a feeder thread seeds new orders for every account
  continuously;
* N workers (threads), each with its own reference-host database, its own plugin (own ledger,
  own CI client), looping sync -> ship every open line -> sync ... until the time is up;
* then a bounded drain (feeder stopped) and the audit: every seeded line stored exactly once in
  its own account's host, exported in CI and tracked once; no line of another supplier.

The last line printed is a JSON object: workers, seconds (fed phase), wall_seconds (with the
drain), requests, requests_per_s, lines_imported, lines_per_s (both rates over wall_seconds),
errors, lost, duplicates, crossed.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector.models import Account, AccountOptions, Parcel, Shipment, ShipmentLine
from connector.plugin import GrouponPlugin
from connector.reference_host.facade import ChannelFacade
from connector.reference_host.host import ReferenceHost
from connector.reference_host.plugins import get_plugin_manager
from connector.secrets import Secret, redact
from mock_ci_server.app import create_app
from mock_ci_server.serve import serve_in_thread
from mock_ci_server.state import SimState

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["main", "run"]

DRAIN_ROUNDS = 10
FEED_INTERVAL = 0.25  # seconds between two feeder rounds
ORDERS_PER_FEED = 10  # per account and round (default)


class _CountingApp:
    """Counts the API requests the simulator served."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if str(environ.get("PATH_INFO", "")).startswith("/api/"):
            with self._lock:
                self.count += 1
        return self.app(environ, start_response)


@dataclass
class _Worker:
    account: Account
    host: ReferenceHost
    plugin: GrouponPlugin
    errors: list[str] = field(default_factory=list)
    syncs: int = 0
    shipments: int = 0

    def cycle(self) -> None:
        """One sync, then ship every open line (one parcel per order, 100 orders a shipment)."""
        try:
            report = self.host.sync(self.account)
            self.errors.extend(report.errors)
            self.syncs += 1
            self._ship()
        except Exception as exc:  # counted and reported: the run must show no errors at all
            self.errors.append(redact(f"{type(exc).__name__}: {exc}"))

    def _ship(self) -> None:
        grouped: dict[str, list[tuple[int, int]]] = {}
        for row in self.host.store.open_lines(self.account.name):
            left = int(str(row["quantity"])) - int(str(row["shipped_quantity"]))
            if left > 0:
                grouped.setdefault(str(row["orderid"]), []).append(
                    (int(str(row["ci_lineitemid"])), left)
                )
        orders = sorted(grouped.items())
        for start in range(0, len(orders), 100):
            chunk = orders[start : start + 100]
            parcels = tuple(
                Parcel(f"LT{oid}", tuple(ShipmentLine(lid, qty) for lid, qty in lines))
                for oid, lines in chunk
            )
            shipment = Shipment(f"LS-{self.account.name}-{chunk[0][0]}", "UPS", parcels)
            for result in self.host.ship(self.account, shipment):
                if result.outcome.value in ("held", "rejected"):
                    self.errors.append(f"line {result.ci_lineitemid}: {result.reason}")
            self.shipments += 1

    def close(self) -> None:
        self.plugin.close()
        self.host.close()


def _make_worker(index: int, base_url: str, supplier_id: str, token: str, root: Path) -> _Worker:
    account = Account(
        name=f"acct{index}",
        channel="groupon",
        supplier_id=supplier_id,
        token=Secret(token),
        region="US",
        api_version="v4",
        base_url=base_url,
        data_dir=root / f"worker{index}" / "data",
        options=AccountOptions(
            watch_cancellations=False, tracking_format_policy="off", timeout_seconds=30
        ),
    )
    plugin = GrouponPlugin()
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(plugin, name="groupon")
    (root / f"worker{index}").mkdir(parents=True, exist_ok=True)
    host = ReferenceHost(root / f"worker{index}" / "host.sqlite3", ChannelFacade(pm))
    return _Worker(account, host, plugin)


def run(
    workers: int = 8,
    seconds: float = 60.0,
    workdir: Path | None = None,
    orders_per_feed: int = ORDERS_PER_FEED,
) -> dict[str, Any]:
    """Run the load scenario and return the figures (see the module docstring)."""
    if workers < 1 or seconds <= 0:
        raise ValueError(f"need workers >= 1 and seconds > 0, got {workers}, {seconds}")
    root = workdir or Path(tempfile.mkdtemp(prefix="ci-load-"))
    state = SimState()
    state.clock.freeze()  # orders are dated at or before the connector's (real) now
    suppliers = [(f"8{index:04d}", secrets.token_hex(16)) for index in range(workers)]
    for supplier_id, token in suppliers:
        state.add_account(supplier_id, token, region="US", merchant_level=5)
    seeded: dict[str, set[int]] = {sid: set() for sid, _ in suppliers}
    app = create_app(state)
    counter = _CountingApp(app.wsgi_app)
    app.wsgi_app = counter  # type: ignore[method-assign]
    server = serve_in_thread(app, threads=max(8, workers))
    stop_feed = threading.Event()
    feed_done = threading.Event()
    feed_errors: list[str] = []
    crew: list[_Worker | None] = [None] * workers
    audits: list[dict[str, int] | None] = [None] * workers

    def feed() -> None:
        round_no = 0
        while not stop_feed.is_set():
            round_no += 1
            try:
                for supplier_id, _ in suppliers:
                    out = state.seed(
                        supplier_id, orders=orders_per_feed, seed=round_no, spread_hours=1.0
                    )
                    seeded[supplier_id].update(out["ci_lineitemids"])
            except Exception as exc:  # the audit reports it
                feed_errors.append(f"feeder: {type(exc).__name__}: {exc}")
                return
            stop_feed.wait(FEED_INTERVAL)

    deadline = time.monotonic() + seconds

    def work(index: int) -> None:
        # Everything of one worker stays in its thread: SQLite connections are per thread.
        supplier_id, token = suppliers[index]
        worker = _make_worker(index, server.url, supplier_id, token, root)
        crew[index] = worker
        try:
            while time.monotonic() < deadline:
                worker.cycle()
            feed_done.wait()
            # Drain: the feeder has stopped; bounded rounds until this host caught up.
            for _ in range(DRAIN_ROUNDS):
                store, name = worker.host.store, worker.account.name
                if store.count_lines(name) >= len(seeded[supplier_id]) and not store.open_lines(
                    name
                ):
                    break
                worker.cycle()
            audits[index] = _audit(state, worker, supplier_id, seeded)
        except Exception as exc:  # counted: the run must show no errors at all
            worker.errors.append(redact(f"{type(exc).__name__}: {exc}"))
        finally:
            worker.close()

    started = time.monotonic()
    feeder = threading.Thread(target=feed, name="load-feeder", daemon=True)
    feeder.start()
    threads = [threading.Thread(target=work, args=(i,), name=f"acct{i}") for i in range(workers)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, deadline - time.monotonic()))
    stop_feed.set()
    feeder.join()
    main_phase = time.monotonic() - started
    feed_done.set()
    for t in threads:
        t.join()
    # Rates over the whole wall time, drain included: every line counted was imported in it.
    elapsed = time.monotonic() - started
    requests_main = counter.count
    server.stop()

    errors = [e for w in crew if w is not None for e in w.errors] + feed_errors
    totals: Counter[str] = Counter()
    for index, audit in enumerate(audits):
        if audit is None:
            errors.append(f"worker {index} did not finish its audit")
            totals["lost"] += len(seeded[suppliers[index][0]])
        else:
            totals.update(audit)
    lines_imported = totals["lines_imported"]
    return {
        "workers": workers,
        "seconds": round(main_phase, 2),
        "wall_seconds": round(elapsed, 2),
        "requests": requests_main,
        "requests_per_s": round(requests_main / elapsed, 1),
        "lines_imported": lines_imported,
        "lines_per_s": round(lines_imported / elapsed, 1),
        "syncs": sum(w.syncs for w in crew if w is not None),
        "errors": len(errors),
        "error_samples": errors[:5],
        "lost": totals["lost"] + totals["not_exported"],
        "duplicates": totals["duplicates"] + totals["tracking_not_once"],
        "crossed": totals["crossed"],
        "not_exported": totals["not_exported"],
        "tracking_not_once": totals["tracking_not_once"],
    }


def _audit(
    state: SimState, worker: _Worker, supplier_id: str, seeded: dict[str, set[int]]
) -> dict[str, int]:
    """One account: its host against what was seeded for it, and the simulator's view."""
    store, name = worker.host.store, worker.account.name
    mine = seeded[supplier_id]
    count = store.count_lines(name)
    present = sum(1 for lid in mine if store.line(name, lid) is not None)
    out = {
        "lines_imported": count,
        "lost": len(mine) - present,
        "duplicates": sum(copies - 1 for _, _, copies in store.duplicates()),
        # Lines beyond this supplier's own would be another supplier's lines crossing over.
        "crossed": max(count - present, 0),
        "not_exported": 0,
        "tracking_not_once": 0,
    }
    for line in state.get_state(supplier_id=supplier_id)["lines"]:
        if line["ci_lineitemid"] not in mine:
            out["crossed"] += 1
        if not line["exported"]:
            out["not_exported"] += 1
        numbers = Counter(t["tracking"] for t in line["tracking"])
        if numbers != Counter({f"LT{line['orderid']}": 1}):
            out["tracking_not_once"] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit status 1 when the audit found errors, lost or duplicated lines."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--orders-per-feed",
        type=int,
        default=ORDERS_PER_FEED,
        help=f"orders seeded per account every {FEED_INTERVAL} s",
    )
    args = parser.parse_args(argv)
    figures = run(args.workers, args.seconds, orders_per_feed=args.orders_per_feed)
    for key in ("syncs", "not_exported", "tracking_not_once", "crossed", "lines_per_s"):
        print(f"{key}: {figures[key]}")
    for sample in figures.pop("error_samples"):
        print(f"error: {sample}")
    print(json.dumps(figures))
    bad = figures["errors"] or figures["lost"] or figures["duplicates"] or figures["crossed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
