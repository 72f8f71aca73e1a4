"""Form and query-string parsing for the console: plain Python, no Flask.

Every parser raises :class:`FormError` naming the field and the value it refused, so a page can
say exactly what to fix; nothing is applied when a field is bad.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from mock_ci_server.state import LINE_STATUSES, LineQuery

PAGE_SIZE = 50
MAX_REASON = 500


class FormError(ValueError):
    """A form field is missing or bad; the message names it."""


def text(form: Mapping[str, str], name: str, *, required: bool = False) -> str:
    value = (form.get(name) or "").strip()
    if required and not value:
        raise FormError(f"{name} is required")
    return value


def integer(
    form: Mapping[str, str], name: str, default: int | None = None, *, low: int | None = None
) -> int:
    raw = text(form, name)
    if not raw:
        if default is None:
            raise FormError(f"{name} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FormError(f"{name} must be a whole number, got {raw!r}") from None
    if low is not None and value < low:
        raise FormError(f"{name} must be >= {low}, got {value}")
    return value


def number(
    form: Mapping[str, str],
    name: str,
    default: float,
    *,
    low: float | None = None,
    high: float | None = None,
) -> float:
    raw = text(form, name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise FormError(f"{name} must be a number, got {raw!r}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise FormError(f"{name} must be within {low}..{high}, got {value}")
    return value


def line_query(args: Mapping[str, str]) -> LineQuery:
    """``q`` (order id, or a line id when no order has that id), ``sku``, ``customer``,
    ``status`` -> LineQuery (the line-id fallback is done by the caller)."""
    status = text(args, "status")
    if status and status not in LINE_STATUSES:
        raise FormError(f"status must be one of {', '.join(LINE_STATUSES)}, got {status!r}")
    return LineQuery(
        orderid=text(args, "q") or None,
        sku=text(args, "sku") or None,
        customer=text(args, "customer") or None,
        status=status or None,
    )


def page_number(args: Mapping[str, str]) -> int:
    return integer(args, "page", 1, low=1)


def line_ids(values: list[str]) -> list[int]:
    """Checked ``ids`` of the lines table -> ints (at least one)."""
    ids: list[int] = []
    for raw in values:
        if not raw.strip().isdigit():
            raise FormError(f"ids: not a line id: {raw!r}")
        ids.append(int(raw))
    if not ids:
        raise FormError("tick at least one line to cancel")
    return ids


def reason(form: Mapping[str, str]) -> str:
    value = text(form, "reason", required=True)
    if len(value) > MAX_REASON:
        raise FormError(f"reason is longer than {MAX_REASON} characters")
    return value


def clock_change(form: Mapping[str, str]) -> tuple[str, Any]:
    """``("set", aware datetime)`` from ``set`` (ISO, naive = UTC) or ``("advance", timedelta)``
    from ``amount`` + ``unit`` (minutes, hours, days)."""
    if text(form, "set"):
        raw = text(form, "set")
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            raise FormError(
                f"set must be an ISO date-time like 2024-03-04T12:00, got {raw!r}"
            ) from None
        return "set", when if when.tzinfo else when.replace(tzinfo=UTC)
    amount = number(form, "amount", 0.0)
    unit = text(form, "unit") or "hours"
    if unit not in ("minutes", "hours", "days"):
        raise FormError(f"unit must be minutes, hours or days, got {unit!r}")
    if amount == 0:
        raise FormError("give a date-time to set, or a non-zero amount to advance")
    return "advance", timedelta(**{unit: amount})


def fault_rules(form: Mapping[str, str]) -> tuple[list[Any], int | None]:
    """The ``rules`` textarea (a JSON list; empty = no rules) and an optional ``seed``."""
    raw = text(form, "rules") or "[]"
    try:
        rules = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FormError(
            f"rules: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(rules, list):
        raise FormError(f"rules must be a JSON list of rules, got {type(rules).__name__}")
    seed = integer(form, "seed", 0) if text(form, "seed") else None
    return rules, seed


def seed_knobs(form: Mapping[str, str]) -> dict[str, Any]:
    """The seed form -> keyword arguments of ``SimState.seed`` (validated here)."""
    lines = (integer(form, "lines_min", 1, low=1), integer(form, "lines_max", 1, low=1))
    quantity = (integer(form, "qty_min", 1, low=1), integer(form, "qty_max", 1, low=1))
    for name, (low, high) in (("lines per order", lines), ("quantity", quantity)):
        if low > high:
            raise FormError(f"{name}: min {low} is larger than max {high}")
    orders = integer(form, "orders", 10, low=0)
    if orders > 1_000_000:
        raise FormError(f"orders must be <= 1000000, got {orders}")
    return {
        "orders": orders,
        "seed": integer(form, "seed", 1),
        "lines_per_order": lines,
        "quantity": quantity,
        "split_share": number(form, "split_share", 0.0, low=0.0, high=1.0),
        "spread_hours": number(form, "spread_hours", 48.0, low=0.0, high=24 * 365),
        "unmapped_share": number(form, "unmapped_share", 0.0, low=0.0, high=1.0),
    }


def account_fields(form: Mapping[str, str]) -> dict[str, Any]:
    """The new-account form -> keyword arguments of ``SimState.add_account``."""
    level = integer(form, "merchant_level", 5, low=1)
    if level > 5:
        raise FormError(f"merchant_level must be 1..5, got {level}")
    return {
        "supplier_id": text(form, "supplier_id", required=True),
        "token": text(form, "token", required=True),
        "region": (text(form, "region") or "US").upper(),
        "merchant_level": level,
        "name": text(form, "name") or None,
    }


__all__ = [
    "PAGE_SIZE",
    "FormError",
    "account_fields",
    "clock_change",
    "fault_rules",
    "integer",
    "line_ids",
    "line_query",
    "number",
    "page_number",
    "reason",
    "seed_knobs",
    "text",
]
