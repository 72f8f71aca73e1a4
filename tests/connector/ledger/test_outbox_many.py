"""``insert_outbox_many`` (issue 11, batched dispatch): the same rows as one
``insert_outbox`` per row, in the order given, old rows kept; on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.ledger import open_ledger
from connector.models import Account, HoldKind
from connector.secrets import Secret
from tests.connector.ledger.test_dispatch_lines import full_read

NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


def _account(tmp_path: Path, name: str) -> Account:
    return Account(
        name=name, channel="groupon", supplier_id="90001", token=Secret("t" * 31), data_dir=tmp_path
    )


def _rows() -> list[dict[str, Any]]:
    return [
        {
            "shipment_id": f"S-{n % 3}",
            "ci_lineitemid": n,
            "tracking": f"1Z{n}",
            "quantity": n,
            "orderid": f"O{n % 3}",
            "fulfillment_lineitem_id": f"F{n}",
            "courier": "UPS",
            "carrier_code": "ups",
            "endpoint": "tracking_notification",
            "state": "sending" if n % 2 else "held",
            "hold_kind": None if n % 2 else HoldKind.PREFLIGHT,
            "reason": "" if n % 2 else "bad number",
            "attempts": 1 if n % 2 else 0,
        }
        for n in (5, 1, 4, 2, 3)
    ]


def _key(r: Any) -> tuple[Any, ...]:
    return (
        r.shipment_id, r.ci_lineitemid, r.tracking, r.quantity, r.orderid,
        r.fulfillment_lineitem_id, r.courier, r.service, r.carrier_code, r.endpoint,
        r.state, r.hold_kind, r.reason, r.attempts, r.created_at,
    )  # fmt: skip


def test_many_matches_one_by_one(tmp_path: Path) -> None:
    one = open_ledger(_account(tmp_path / "one", "one"))
    many = open_ledger(_account(tmp_path / "many", "many"))
    try:
        singles = [one.insert_outbox(now=NOW, **r) for r in _rows()]
        with many.transaction():
            batch = many.insert_outbox_many(_rows(), NOW)
        assert [_key(r) for r in batch] == [_key(r) for r in singles]
        assert [r.ci_lineitemid for r in batch] == [5, 1, 4, 2, 3]
        assert [_key(r) for r in many.outbox_of_shipments(["S-0", "S-1", "S-2"])] == [
            _key(r) for r in one.outbox_of_shipments(["S-0", "S-1", "S-2"])
        ]
    finally:
        one.close()
        many.close()


def test_existing_rows_are_kept_and_returned(tmp_path: Path) -> None:
    ledger = open_ledger(_account(tmp_path, "us"))
    try:
        first = ledger.insert_outbox_many(_rows()[:2], NOW)
        later = NOW + timedelta(hours=1)
        changed = [{**r, "quantity": 99, "reason": "again"} for r in _rows()]
        again = ledger.insert_outbox_many(changed, later)
        assert [r.id for r in again[:2]] == [r.id for r in first]
        assert [r.quantity for r in again] == [5, 1, 99, 99, 99]
        assert again[0].created_at == NOW
        assert ledger.insert_outbox_many([], NOW) == []
    finally:
        ledger.close()


def test_claimed_insert_returns_the_rows_as_stored_and_claims_the_new_sending_ones(
    tmp_path: Path,
) -> None:
    """``insert_outbox_claimed``: the rows ``insert_outbox_many`` returns (built without a
    read-back when every row is new, on SQLite), the new ``sending`` ones leased as
    ``claim_outbox`` leases them; a row whose key existed is not claimed (the caller claims)."""
    plain = open_ledger(_account(tmp_path / "plain", "plain"))
    claimed = open_ledger(_account(tmp_path / "claimed", "claimed"))
    try:
        expected = plain.insert_outbox_many(_rows(), NOW)
        rows, ids = claimed.insert_outbox_claimed(_rows(), NOW, 600, owner="me:1:x")
        assert [_key(r) for r in rows] == [_key(r) for r in expected]
        assert [r.id for r in rows] == [r.id for r in expected]
        assert sorted(rows, key=lambda r: r.id) == claimed.outbox_rows(ids=[r.id for r in rows])
        assert ids == {r.id for r in rows if r.state == "sending"}
        until = NOW + timedelta(seconds=600)
        assert claimed.outbox_leases() == {i: ("me:1:x", until) for i in ids}
        # The same claim through claim_outbox: the same leases.
        sending = [r for r in expected if r.state == "sending"]
        plain.claim_outbox(sending, NOW, 600, owner="me:1:x")
        assert plain.outbox_leases() == claimed.outbox_leases()
        # One key existed: every row as stored, only the new sending one claimed.
        later = NOW + timedelta(hours=1)
        more = [{**r, "shipment_id": "S-9"} for r in _rows()[:2]]
        again, new = claimed.insert_outbox_claimed([*more, _rows()[0]], later, 600)
        assert new == {again[0].id, again[1].id}  # both 'sending'
        assert again[2].id == rows[0].id
        assert again[2].created_at == NOW
        assert [r.shipment_id for r in again[:2]] == ["S-9", "S-9"]
        assert claimed.insert_outbox_claimed([], NOW, 600) == ([], set())
    finally:
        plain.close()
        claimed.close()


def test_acceptance_adds_each_new_row_once_per_line(tmp_path: Path) -> None:
    """``record_tracking_accepted``: rows of one line in one call add up; a row accepted
    before or given twice adds nothing more; a row id the outbox does not hold counts, as
    it always did (only 'accepted' stops a row)."""
    ledger = open_ledger(_account(tmp_path, "us"))
    try:
        ledger.stage_line(ci_lineitemid=1, orderid="A", now=NOW, quantity=5)
        ledger.stage_line(ci_lineitemid=2, orderid="A", now=NOW, quantity=5)
        a, b, c = (
            ledger.insert_outbox(
                shipment_id="S", ci_lineitemid=lid, tracking=t, quantity=q, now=NOW
            ).id
            for lid, t, q in ((1, "1Z1", 2), (1, "1Z2", 1), (2, "1Z3", 1))
        )
        assert ledger.record_tracking_accepted([(a, 1, 2)], NOW) == [a]
        got = ledger.record_tracking_accepted([(b, 1, 1), (a, 1, 2), (c, 2, 1), (b, 1, 1)], NOW)
        assert got == [b, c]
        assert ledger.record_tracking_accepted([(999, 2, 1)], NOW) == [999]
        assert [ledger.get_line(i).qty_shipped for i in (1, 2)] == [3, 2]  # type: ignore[union-attr]
        assert {r.state for r in ledger.outbox_rows(ids=[a, b, c])} == {"accepted"}
    finally:
        ledger.close()


def test_active_rows_by_line_tracking_or_order_in_one_statement_or_in_chunks(
    tmp_path: Path,
) -> None:
    """``active_outbox_of``: the rows pending, sending, retrying or accepted that touch any
    given line, tracking number or order, each once, oldest first; the same whether the
    values fit one statement or need chunks of 500."""
    ledger = open_ledger(_account(tmp_path, "us"))
    try:
        rows = ledger.insert_outbox_many(_rows(), NOW)
        ledger.record_tracking_accepted([(rows[0].id, 5, 5)], NOW)
        every = ledger.outbox_rows()
        active = {"pending", "sending", "retry", "accepted"}

        def expected(lines: set[int], trackings: set[str], orders: set[str]) -> list[int]:
            return [
                r.id
                for r in every
                if r.state in active
                and (r.ci_lineitemid in lines or r.tracking in trackings or r.orderid in orders)
            ]

        cases = [({5, 1}, {"1Z3"}, {"O1"}), ({4}, set(), set()), (set(), set(), {"O2"})]
        cases.append(({2, 3}, {"1Z1", "1Z5"}, {"O0", "O2"}))
        padding = set(range(1000, 1600))  # more than one chunk of line ids
        for lines, trackings, orders in cases:
            for extra in (set(), padding):
                got = ledger.active_outbox_of(
                    lines=lines | extra, trackings=trackings, orderids=orders
                )
                assert [r.id for r in got] == expected(lines, trackings, orders)
        assert ledger.active_outbox_of(lines=[], trackings=[], orderids=[]) == []
    finally:
        ledger.close()


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("lines", "trackings", "orderids"),
    [
        pytest.param([1, 2], ["1Z1"], ["O1"], id="one-shipment"),
        # With a wave's worth of values (hundreds per list) the planner preferred the state
        # index (every active row, accepted ones included, per call: a cost growing with the
        # ledger); each part must still search the index of its own column.
        pytest.param(
            list(range(300)),
            [f"1Z{n}" for n in range(300)],
            [f"O{n}" for n in range(300)],
            id="wave",
        ),
    ],
)
def test_active_rows_statement_uses_the_line_tracking_and_order_indexes(
    tmp_path: Path, lines: list[int], trackings: list[str], orderids: list[str]
) -> None:
    ledger = open_ledger(_account(tmp_path, "us"))
    try:
        statements: list[str] = []
        ledger._conn.set_trace_callback(statements.append)
        ledger.active_outbox_of(lines=lines, trackings=trackings, orderids=orderids)
        ledger._conn.set_trace_callback(None)
        (sql,) = statements
        plan = [r[3] for r in ledger._conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        # A short list is one part per value (no temporary table for an IN list), a long
        # one a part per column: either way in the order given.
        parts = [
            (index, len(values) if len(values) <= 4 else 1)
            for index, values in (
                ("outbox_line", lines),
                ("outbox_tracking", trackings),
                ("outbox_order", orderids),
            )
        ]
        assert [d.split(" USING INDEX ")[1].split(" ")[0] for d in plan if "SEARCH" in d] == [
            index for index, count in parts for _ in range(count)
        ]
        if all(
            count == len(values)
            for (_, count), values in zip(parts, (lines, trackings, orderids), strict=True)
        ):
            opcodes = [r[1] for r in ledger._conn.execute(f"EXPLAIN {sql}")]
            assert "OpenEphemeral" not in opcodes  # no temporary table for a short list
    finally:
        ledger.close()


def test_line_customers_is_the_customer_of_each_known_lines_record(tmp_path: Path) -> None:
    """``line_customers`` (dispatch pre-flight's ship-to read): for every known line, what
    ``get_lines(parsed=False)`` gives as ``record.get("customer")`` (``None`` without a
    record or a customer); unknown lines have no entry."""
    ledger = open_ledger(_account(tmp_path, "us"))
    try:
        address = {"name": "Ann", "address1": "1 Main St", "zip": "10001", "country": "US"}
        records: list[dict[str, Any] | None] = [
            {"orderid": "A", "customer": address, "line_items": [{"x": 1}] * 20},
            {"orderid": "B", "customer": {**address, "name": "ann"}},
            {"orderid": "C", "customer": "not an object"},
            {"orderid": "D"},
            {},
            None,
        ]
        for n, record in enumerate(records, start=1):
            ledger.stage_line(ci_lineitemid=n, orderid=f"O{n}", now=NOW, record=record)
        ids = [*range(1, len(records) + 1), 99]
        full = ledger.get_lines(ids, parsed=False)
        expected = {i: (line.record or {}).get("customer") for i, line in full.items()}
        assert ledger.line_customers(ids) == expected
        assert set(expected) == set(range(1, len(records) + 1))
        assert expected[1] == address
    finally:
        ledger.close()


def test_dispatch_lines_and_customers_is_both_reads_in_one(tmp_path: Path) -> None:
    """``dispatch_lines_and_customers`` (pre-flight's one read of its lines): exactly what
    a full read and ``line_customers`` give for the same ids, across more than one chunk of
    ids; unknown lines have no entry in either."""
    ledger = open_ledger(_account(tmp_path, "us"))
    try:
        address = {"name": "Ann", "address1": "1 Main St", "zip": "10001", "country": "US"}
        records: list[dict[str, Any] | None] = [
            {"orderid": "A", "customer": address},
            {"orderid": "A", "customer": address},  # the same text as line 1
            {"orderid": "C", "customer": "not an object"},
            {"orderid": "D"},
            None,
        ]
        for n, record in enumerate(records, start=1):
            ledger.stage_line(
                ci_lineitemid=n, orderid=f"O{n}", now=NOW, record=record, quantity=n,
                fulfillment_lineitem_id=f"F{n}" if n % 2 else None,
            )  # fmt: skip
        ledger.update_line(2, NOW, state="acked")
        ids = [3, 1, 99, 2, 1, 5, 4, *range(1000, 1600)]
        lines, customers = ledger.dispatch_lines_and_customers(ids)
        assert lines == full_read(ledger, ids)
        assert customers == ledger.line_customers(ids)
        assert sorted(lines) == sorted(customers) == [1, 2, 3, 4, 5]
        assert customers[1] == customers[2] == address
        assert customers[5] is None
        assert ledger.dispatch_lines_and_customers([]) == ({}, {})
        for few in ([3, 1, 99, 2], [4], [5, 4], [2, 2, 1]):  # one-shipment lists: = parts
            lines, customers = ledger.dispatch_lines_and_customers(few)
            assert lines == full_read(ledger, few)
            assert customers == ledger.line_customers(few)
            assert sorted(lines) == sorted(customers) == sorted(set(few) - {99})
    finally:
        ledger.close()


@pytest.mark.parametrize("count", [1, 8, 9, 40])
def test_claimed_insert_of_few_or_many_rows_is_what_the_ledger_stores(
    tmp_path: Path, count: int
) -> None:
    """Up to eight rows go in as one multi-row INSERT (the id from its cursor), more through
    executemany: either way the rows returned are the rows stored, ids included, and a second
    insert of the same keys returns them unchanged and claims nothing."""
    ledger = open_ledger(_account(tmp_path, "us"))
    try:
        ledger.insert_outbox_many([{**_rows()[0], "shipment_id": "EARLIER"}], NOW)
        rows = [
            {**_rows()[n % 5], "shipment_id": f"S-{n}", "ci_lineitemid": n} for n in range(count)
        ]
        got, ids = ledger.insert_outbox_claimed(rows, NOW, 600)
        assert got == ledger.outbox_rows(ids=[r.id for r in got])
        assert [(r.shipment_id, r.ci_lineitemid) for r in got] == [
            (r["shipment_id"], r["ci_lineitemid"]) for r in rows
        ]
        assert ids == {r.id for r in got if r.state == "sending"}
        again, none = ledger.insert_outbox_claimed(rows, NOW + timedelta(hours=1), 600)
        assert again == got
        assert none == set()
    finally:
        ledger.close()


def test_any_outbox_of_shipments_sees_open_and_closed_rows(tmp_path: Path) -> None:
    """``any_outbox_of_shipments``: true when any given shipment has an outbox row or a
    closed one (as ``outbox_of_shipments`` or ``closed_outbox`` would list), across chunks."""
    ledger = open_ledger(_account(tmp_path, "us"))
    try:
        rows = ledger.insert_outbox_many(_rows(), NOW)  # shipments S-0, S-1, S-2
        gone = [r for r in rows if r.shipment_id == "S-2"]
        ledger.close_outbox(gone, "voided", "test", NOW)
        padding = [f"X-{n}" for n in range(600)]  # more than one chunk of ids
        assert not ledger.any_outbox_of_shipments([])
        assert not ledger.any_outbox_of_shipments(["S-9", *padding])
        for sid in ("S-0", "S-1", "S-2"):
            assert ledger.any_outbox_of_shipments([*padding, sid])
        assert ledger.outbox_of_shipments(["S-2"]) == []
        assert ledger.closed_outbox(["S-2"])
    finally:
        ledger.close()
