"""What parsing a CI ``get_orders`` record yields, shared by the two parsers: the tolerant
marshmallow path (:mod:`connector.ci.schemas`) and the fast strict path
(:mod:`connector.ci.fast`). Also the CI date format and the line-id rule both apply."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from connector.models import Address, OrderLine

__all__ = [
    "MAX_TEXT",
    "ParsedRecord",
    "RecordProblem",
    "as_line_id",
    "parse_ci_datetime",
]

MAX_TEXT = 2000
"""Longest string accepted in any field; longer values make the record a problem."""


@dataclass(frozen=True, slots=True)
class ParsedRecord:
    """One CI record (one element of ``data``), typed. Records sharing ``orderid`` are merged
    into an :class:`~connector.models.Order` later, after every page was read."""

    orderid: str
    parent_orderid: str | None
    order_date: datetime
    ship_to: Address
    billing: Address | None
    lines: tuple[OrderLine, ...]
    total: Decimal
    shipping_method: str
    supplier_name: str


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """A record the connector cannot use as is.

    :ivar orderid: the record's ``orderid`` when it could be read.
    :ivar ci_lineitemids: line ids that could still be read, so the engine can hold them.
    :ivar reason: what is wrong, naming the field path and the value.
    """

    orderid: str | None
    ci_lineitemids: tuple[int, ...]
    reason: str


# --- dates -----------------------------------------------------------------------------------

_DATE_RE = re.compile(
    r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"\s*([AaPp][Mm])?\s*(?:UTC)?\s*$"
)


def parse_ci_datetime(text: str) -> datetime:
    """Parse a CI timestamp into an aware UTC datetime.

    Accepts ``"03/04/2024 09:15AM UTC"`` (``%m/%d/%Y %I:%M%p UTC``, the record format) and
    ``"03/04/2024 09:15"`` (``%m/%d/%Y %H:%M``, the window format), each with or without the
    trailing ``UTC``. CI documents every timestamp as UTC.

    :raises ValueError: the text is not one of those formats or not a real date.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a date string, got {type(text).__name__}")
    match = _DATE_RE.match(text)
    if match is None:
        raise ValueError(f"not a CI date (MM/DD/YYYY hh:mmAM UTC or MM/DD/YYYY HH:MM): {text!r}")
    month, day, year, hour, minute = (int(match.group(i)) for i in range(1, 6))
    second = int(match.group(6) or 0)
    meridiem = match.group(7)
    if meridiem is not None:
        if not 1 <= hour <= 12:
            raise ValueError(f"12-hour time needs an hour 1-12: {text!r}")
        hour = hour % 12 + (12 if meridiem.upper() == "PM" else 0)
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- ids -------------------------------------------------------------------------------------


def as_line_id(value: Any) -> int | None:
    """``ci_lineitemid`` as a positive int: an int, or a string of ASCII digits (booleans are
    not ints here); None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str):
        stripped = value.strip()
        # 19 digits fits a signed 64-bit id; longer "ids" are garbage, not big numbers.
        if stripped.isascii() and stripped.isdigit() and len(stripped) <= 19:
            number = int(stripped)
            return number if number > 0 else None
    return None
