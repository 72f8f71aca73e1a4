"""Several threads exporting and reading at once lose no update."""

from __future__ import annotations

import json
import threading

from flask import Flask

from mock_ci_server.state import SimState, TrackingRequest

from .conftest import SUPPLIER, TOKEN


def test_parallel_exports_and_reads_lose_nothing(sim_state: SimState, sim_app: Flask) -> None:
    ids: list[int] = sim_state.seed(SUPPLIER, orders=800, seed=11)["ci_lineitemids"]
    chunks = [ids[i::8] for i in range(8)]
    errors: list[str] = []
    counts: dict[int, list[int]] = {0: [], 1: []}
    start = threading.Barrier(10)

    def exporter(chunk: list[int]) -> None:
        client = sim_app.test_client()
        start.wait()
        for i in range(0, len(chunk), 10):
            form = {
                "supplier_id": SUPPLIER,
                "token": TOKEN,
                "ci_lineitem_ids": json.dumps(chunk[i : i + 10]),
            }
            out = json.loads(client.post("/api/v4/mark_exported", data=form).data)
            if out != {"success": True}:
                errors.append(str(out))

    def reader(n: int) -> None:
        client = sim_app.test_client()
        start.wait()
        for _ in range(30):
            query = {"supplier_id": SUPPLIER, "token": TOKEN}
            out = json.loads(client.get("/api/v4/get_orders", query_string=query).data)
            meta = out["meta"]
            # Counters and data come from one consistent snapshot.
            if len(out["data"]) != min(250, meta["no_of_items"]):
                errors.append(f"inconsistent page {meta}")
            counts[n].append(meta["no_of_items"])

    threads = [threading.Thread(target=exporter, args=(c,)) for c in chunks]
    threads += [threading.Thread(target=reader, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sim_state.get_orders(SUPPLIER, TOKEN).no_of_items == 0
    state = sim_state.get_state(SUPPLIER)
    assert all(line["exported"] for line in state["lines"])
    assert all(len(line["calls"]) == 1 for line in state["lines"])
    for seen in counts.values():  # exports only ever shrink the un-exported view
        assert seen == sorted(seen, reverse=True)


def test_parallel_partial_tracking_never_overships(sim_state: SimState) -> None:
    line_id = sim_state.seed(SUPPLIER, orders=1, seed=1, quantity=(5, 5))["ci_lineitemids"][0]
    results: list[bool] = []

    def ship(n: int) -> None:
        item = TrackingRequest(0, "ups", f"TRK{n}", quantity=1, ci_lineitemid=line_id)
        try:
            sim_state.tracking_notification(SUPPLIER, TOKEN, [item])
            results.append(True)
        except Exception:
            results.append(False)

    threads = [threading.Thread(target=ship, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    line = sim_state.line(line_id)
    assert line is not None
    assert results.count(True) == 5
    assert line.shipped_quantity == 5
    assert line.status == "shipped"
