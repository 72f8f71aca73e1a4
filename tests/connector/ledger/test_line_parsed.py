"""Schema v9: a line's parsed form kept in ``line_parsed`` (``lines`` rows stay slim through
their rewrites), the migration of v8 ledgers with data, and non-durable staging commits (runs
on both backends)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.errors import LedgerError
from connector.ledger import Ledger, ledger_path, open_ledger_file, record_key
from connector.ledger.migrations import MIGRATIONS
from connector.models import HoldKind

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _raw(ledger: Ledger, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in ledger._query(sql, params)]


def _record(orderid: str, *lids: int) -> dict[str, Any]:
    return {
        "orderid": orderid,
        "customer": {"name": "Giulia Esempio"},
        "line_items": [{"ci_lineitemid": lid} for lid in lids],
    }


def _insert(lid: int, orderid: str, key: str, parsed: str | None) -> tuple[Any, ...]:
    """A row of ``stage_rows(inserts=...)`` (the ``_STAGE_INSERT`` order)."""
    stamp = T0.isoformat()
    head = (lid, "us", orderid, None, key, parsed, None, None, 1, "SKU", None, "staged")
    return (*head, None, "", None, "open", stamp, stamp, 1)


def _staged(ledger: Ledger) -> str:
    text = json.dumps(_record("A", 1, 2), sort_keys=True)
    key = record_key(text, 1)
    ledger.stage_rows(
        records=[(key, text)],
        inserts=[_insert(1, "A", key, '["a1"]'), _insert(2, "A", key, '["a2"]')],
    )
    return key


def test_staged_parsed_form_lives_beside_the_line(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    key = _staged(ledger)
    assert _raw(ledger, "SELECT COUNT(*) FROM lines WHERE parsed IS NOT NULL") == [(0,)]
    assert _raw(ledger, "SELECT line_id, parsed FROM line_parsed ORDER BY line_id") == [
        (1, '["a1"]'),
        (2, '["a2"]'),
    ]
    rows = ledger.eval_lines_of_orders(["A"])["A"]
    assert [(r.ci_lineitemid, r.parsed, r.record) for r in rows] == [
        (1, ["a1"], None),
        (2, ["a2"], None),
    ]
    assert ledger.get_lines([1])[1].parsed == ["a1"]
    assert [ln.parsed for ln in ledger.lines()] == [["a1"], ["a2"]]
    # A refresh replaces the parsed form; a broken refresh stores the problem instead.
    ledger.stage_rows(
        refreshes=[
            (
                key,
                '["a1b"]',
                "A",
                None,
                None,
                None,
                1,
                "SKU",
                None,
                "open",
                None,
                2,
                T0.isoformat(),
                1,
            )
        ],
        bad_refreshes=[(key, '{"problem":"x"}', 2, T0.isoformat(), 2)],
    )
    parsed = {r.ci_lineitemid: r.parsed for r in ledger.eval_lines_of_orders(["A"])["A"]}
    assert parsed == {1: ["a1b"], 2: {"problem": "x"}}
    # State changes leave it alone; update_line writes or drops it.
    ledger.set_line_states(
        [(1, "delivered", None, ""), (2, "held", HoldKind.INVALID_PAYLOAD, "x")], T0
    )
    assert ledger.get_lines([1])[1].parsed == ["a1b"]
    ledger.update_line(1, T0, parsed='["c"]')
    assert ledger.get_lines([1])[1].parsed == ["c"]
    ledger.update_line(1, T0, parsed=None)
    assert ledger.get_lines([1])[1].parsed is None
    assert _raw(ledger, "SELECT line_id FROM line_parsed") == [(2,)]


def test_product_rows_and_prune_see_the_side_table(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    _staged(ledger)
    assert [r[2] for r in ledger.product_rows()] == ['["a2"]']  # the latest line of the SKU
    ledger.set_line_states([(1, "acked", None, ""), (2, "acked", None, "")], T0)
    ledger.update_line(1, T0, qty_shipped=1)
    ledger.update_line(2, T0, qty_shipped=1)
    later = T0 + timedelta(days=100)
    assert ledger.prune(later - timedelta(days=90), later) == 2
    assert _raw(ledger, "SELECT COUNT(*) FROM line_parsed") == [(0,)]
    assert all(ln.parsed is None for ln in ledger.lines())


_STAGED_COLUMNS = (
    "SELECT ci_lineitemid, account, orderid, fulfillment_lineitem_id, record_key, order_date,"
    " ship_by, quantity, sku, bom_sku, state, hold_kind, hold_reason, held_since, ci_status,"
    " first_seen, updated_at, seen_round, pending_eval FROM lines ORDER BY ci_lineitemid"
)


def test_staged_lines_keep_every_value_with_and_without_holds(tmp_path: Path) -> None:
    # A page of plain new lines takes the statement with hold_kind and held_since as NULL
    # literals; a page with a held line writes every row's values as given. Both store
    # exactly the row the importer built (its parsed form aside).
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    stamp = T0.isoformat()
    head1 = (1, "us", "A", "F11", "k1", '["a1"]', "2024-01-01", "2024-01-03", 2, "S1", None)
    head2 = (2, "us", "A", None, "k1", '["a2"]', "2024-01-01", None, 1, "S2", "B2")
    # state, hold_kind, hold_reason, held_since (no hold), ci_status, stamps, round
    plain = [
        (*head1, "staged", None, "", None, "open", stamp, stamp, 1),
        (*head2, "staged", None, "", None, "cancelled", stamp, stamp, 1),
    ]
    held = (3, "us", "C", None, "k3", '{"problem": "bad"}', None, None, 0, "", None, "held")
    held += (HoldKind.INVALID_PAYLOAD.value, "bad", stamp, "open", stamp, stamp, 2)
    ledger.stage_rows(inserts=plain)
    ledger.stage_rows(inserts=[held, (4, *plain[0][1:])])
    want = [(*r[:5], *r[6:], 1) for r in (*plain, held, (4, *plain[0][1:]))]
    assert _raw(ledger, _STAGED_COLUMNS) == want
    assert _raw(ledger, "SELECT line_id, parsed FROM line_parsed ORDER BY line_id") == [
        (1, '["a1"]'),
        (2, '["a2"]'),
        (3, '{"problem": "bad"}'),
        (4, '["a1"]'),
    ]
    # A row without a parsed form (not one the importer writes) gets no line_parsed row.
    ledger.stage_rows(inserts=[(5, *plain[0][1:5], None, *plain[0][6:])])
    assert _raw(ledger, "SELECT COUNT(*) FROM line_parsed WHERE line_id = 5") == [(0,)]
    assert _raw(ledger, _STAGED_COLUMNS)[-1] == (5, *want[0][1:])


def test_v9_migration_moves_parsed_forms_without_loss(tmp_path: Path) -> None:
    path = ledger_path(tmp_path, "us")
    old = open_ledger_file(path, "us", MIGRATIONS[:8])
    assert old.schema_version() == 8
    _staged(old)  # two parsed lines (inline at v8)
    old.stage_line(ci_lineitemid=3, orderid="B", now=T0, record=_record("B", 3))  # none
    old.set_line_states([(1, "delivered", None, "")], T0)
    assert _raw(old, "SELECT COUNT(*) FROM lines WHERE parsed IS NOT NULL") == [(2,)]
    expected = old.get_lines([1, 2, 3])
    expected_eval = old.eval_lines_of_orders(["A", "B"])
    old.close()

    ledger = open_ledger_file(path, "us", MIGRATIONS[:9])
    assert ledger.schema_version() == 9
    assert ledger.get_lines([1, 2, 3]) == expected  # every column, parsed and record included
    assert ledger.eval_lines_of_orders(["A", "B"]) == expected_eval
    assert expected_eval["B"][0].record == _record("B", 3)  # no parsed form: the raw record
    assert _raw(ledger, "SELECT COUNT(*) FROM lines WHERE parsed IS NOT NULL") == [(0,)]
    assert _raw(ledger, "SELECT line_id, parsed FROM line_parsed ORDER BY line_id") == [
        (1, '["a1"]'),
        (2, '["a2"]'),
    ]


@pytest.mark.sqlite_only
def test_staging_commits_without_fsync_and_restores_full(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    seen: list[str] = []
    ledger._conn.set_trace_callback(seen.append)
    _staged(ledger)
    assert seen[0] == "PRAGMA synchronous=NORMAL"
    assert seen[1] == "BEGIN IMMEDIATE"
    assert seen[-2:] == ["COMMIT", "PRAGMA synchronous=FULL"]
    assert _raw(ledger, "PRAGMA synchronous") == [(2,)]  # FULL for every later commit
    # Inside another batch it joins that batch's (durable) commit.
    seen.clear()
    with ledger.transaction():
        ledger.stage_rows(inserts=[_insert(9, "Z", "k", '["z"]')])
    assert not [s for s in seen if s.startswith("PRAGMA")]
    assert _raw(ledger, "PRAGMA synchronous") == [(2,)]


@pytest.mark.sqlite_only
def test_failed_staging_restores_full(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    with pytest.raises(LedgerError, match="bindings"):
        ledger.stage_rows(inserts=[(1, "us")])  # too few values: the batch fails
    assert _raw(ledger, "PRAGMA synchronous") == [(2,)]
    assert _raw(ledger, "SELECT COUNT(*) FROM lines") == [(0,)]


@pytest.mark.postgres_only
def test_staging_commits_asynchronously_on_postgres(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    statements: list[str] = []
    original = ledger._conn.execute

    def spy(sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return original(sql, params)

    ledger._conn.execute = spy  # type: ignore[method-assign]
    _staged(ledger)
    assert statements[:2] == ["BEGIN IMMEDIATE", "SET LOCAL synchronous_commit TO off"]
    # Only for that transaction: the session keeps the server's setting.
    source = _raw(ledger, "SELECT source FROM pg_settings WHERE name = 'synchronous_commit'")
    assert source != [("session",)]
    assert len(ledger.get_lines([1, 2])) == 2
