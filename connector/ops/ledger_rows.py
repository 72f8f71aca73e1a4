"""Ledger lines as the plain rows the SLA clock and the threshold guard read.

One adapter for the CLI commands and the plugin's ``oms_sla_at_risk`` hook.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connector.ledger import Ledger
from connector.models import Account

__all__ = ["rows_from_ledger"]


def rows_from_ledger(ledger: Ledger, account: Account) -> list[dict[str, Any]]:
    """Every ledger line of ``account`` as a plain row for
    :func:`connector.ops.sla.sla_lines_from_rows` and
    :func:`connector.ops.threshold.sales_from_rows`.

    ``tracking_uploaded_at`` is the first time CI accepted tracking for the line (its outbox
    row's last update). ``first_scan_at`` / ``delivered_at`` come from the carrier events the
    host reported (``oms_report_carrier_events``), read in one query: the first scan and the
    first delivery, ``None`` without one. A delivery with no scan reported before it counts as
    the first movement too (a delivered parcel has moved). Lines without an order date (broken
    payloads) fall back to the raw record's ``date`` and are skipped when it has none either.
    ``ledger_state`` is the line's ledger state (not read by the SLA clock or the guard).
    """
    carrier = ledger.carrier_summary()
    accepted: dict[int, datetime] = {}
    for out in ledger.outbox_rows(states=("accepted",)):
        first = accepted.get(out.ci_lineitemid)
        if first is None or out.updated_at < first:
            accepted[out.ci_lineitemid] = out.updated_at
    rows: list[dict[str, Any]] = []
    for line in ledger.lines():
        order_time: Any = line.order_date
        if order_time is None and isinstance(line.record, dict):
            order_time = line.record.get("date")
        if order_time is None:
            continue
        status = "cancelled" if line.state == "cancelled" else line.ci_status
        first_scan, delivered = carrier.get(line.ci_lineitemid, (None, None))
        rows.append(
            {
                "account": account.name,
                "orderid": line.orderid,
                "ci_lineitemid": line.ci_lineitemid,
                "ledger_state": line.state,
                "order_time": order_time,
                "ship_by": line.ship_by,
                "quantity": line.quantity,
                "qty_shipped": line.qty_shipped,
                "tracking_uploaded_at": accepted.get(line.ci_lineitemid),
                "status": _known_status(status),
                "first_scan_at": _first_movement(first_scan, delivered),
                "delivered_at": delivered,
                "unit_price": _unit_price(line.record, line.ci_lineitemid),
            }
        )
    return rows


def _first_movement(scan: datetime | None, delivered: datetime | None) -> datetime | None:
    if scan is None or delivered is None:
        return scan or delivered
    return min(scan, delivered)


def _unit_price(record: Any, ci_lineitemid: int) -> Any:
    """The line's ``unit_price`` from the raw CI record kept in the ledger, if any."""
    if not isinstance(record, dict):
        return None
    for item in record.get("line_items") or ():
        if isinstance(item, dict) and item.get("ci_lineitemid") == ci_lineitemid:
            return item.get("unit_price")
    return None


def _known_status(status: str | None) -> str | None:
    # CI's line status vocabulary is not fully documented: an unknown value must not stop
    # the report, so it is left to the quantities to decide.
    text = (status or "").strip().lower()
    known = {"open", "partially_shipped", "shipped", "ship", "cancelled", "canceled", "refunded"}
    return text if text in known else None
