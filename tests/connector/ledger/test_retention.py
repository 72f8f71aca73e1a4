"""Retention: customer details of lines finished long ago are removed; ids, states, audit stay."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connector.ledger import Ledger, ledger_path, open_ledger_file

T0 = datetime(2024, 1, 1, tzinfo=UTC)
RECORD = {
    "orderid": "A",
    "date": "01/01/2024 09:15AM UTC",
    "customer": {"name": "Giulia Esempio", "address1": "Via 14", "phone": "3330001111"},
    "line_items": [{"ci_lineitemid": 1, "unit_price": 9.5, "gift_message": "for Anna"}],
}


def _line(ledger: Ledger, lid: int, **fields: object) -> None:
    ledger.stage_line(ci_lineitemid=lid, orderid=f"O{lid}", now=T0, quantity=2, record=RECORD)
    ledger.update_line(lid, T0, parsed='["x"]', **fields)


def test_prune_blanks_customer_details_of_finished_lines_only(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    _line(ledger, 1, state="acked", qty_shipped=2)  # shipped
    _line(ledger, 2, state="acked", ci_status="cancelled")  # cancelled by Groupon
    _line(ledger, 3, state="acked", qty_shipped=1)  # half shipped: still open
    _line(ledger, 4, state="staged")  # never handed over
    ledger.log_ack(1, "accepted", T0)
    later = T0 + timedelta(days=100)
    assert ledger.prune(later - timedelta(days=90), later) == 2
    lines = ledger.get_lines([1, 2, 3, 4])
    for lid in (1, 2):
        text = json.dumps(lines[lid].record)
        assert "Giulia" not in text
        assert "3330001111" not in text
        assert "for Anna" not in text
        assert lines[lid].parsed is None
        assert lines[lid].record is not None
        assert lines[lid].record["line_items"][0]["unit_price"] == 9.5  # threshold guard
        assert lines[lid].state == "acked"
    assert lines[1].qty_shipped == 2
    for lid in (3, 4):
        assert lines[lid].record is not None
        assert lines[lid].record["customer"]["name"] == "Giulia Esempio"
    assert ledger.ack_log(1) == [(1, "accepted", "")]
    assert ledger.prune(later - timedelta(days=90), later) == 0  # once only


def test_recent_finished_lines_are_kept(tmp_path: Path) -> None:
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    _line(ledger, 1, state="acked", qty_shipped=2)
    assert ledger.prune(T0 - timedelta(days=1), T0 + timedelta(days=89)) == 0


def test_earliest_waiting_order_date_is_the_oldest_unheld_staged_line(tmp_path: Path) -> None:
    """What `ci-connector run` reads to import again when delayed orders become old enough."""
    ledger = open_ledger_file(ledger_path(tmp_path, "us"), "us")
    assert ledger.earliest_waiting_order_date() is None
    ledger.stage_line(ci_lineitemid=1, orderid="A", now=T0, order_date=T0 + timedelta(hours=2))
    ledger.stage_line(ci_lineitemid=2, orderid="B", now=T0, order_date=T0 + timedelta(hours=1))
    ledger.stage_line(ci_lineitemid=3, orderid="C", now=T0, order_date=T0)
    ledger.update_line(3, T0, state="acked")
    assert ledger.earliest_waiting_order_date() == T0 + timedelta(hours=1)
