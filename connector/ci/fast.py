"""The fast, strict path of :func:`connector.ci.schemas.parse_record` (the import hot path).

msgspec converts a record into Structs of the fields the connector uses (unknown keys
ignored, no type coercion), then the same rules as the marshmallow schemas are applied in
plain Python: text length and valid unicode, non-empty required text, CI date formats, money
(int, float or numeric string; finite), quantities and line ids (ints or digit strings),
nullable/optional fields and their defaults, at least one line item.

Every function here returns ``None`` for anything it does not accept *in exactly the way the
marshmallow path would*: ints where text is expected, a bad date, a NaN price, a lone
surrogate, a non-dict... The caller then runs the marshmallow path, which either accepts the
record the same way or words the problem as it always has. So the fast path may defer more
than necessary, never accept more (``tests/connector/ci/test_fast.py`` checks both ways with
hypothesis). Measured in ``docs/ARCHITECTURE.md`` ("Validation on the hot path").
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any

import msgspec

from connector.ci.records import MAX_TEXT, ParsedRecord, as_line_id, parse_ci_datetime
from connector.models import Address, OrderLine

__all__ = [
    "RecordStruct",
    "build_parsed",
    "ledger_fields",
    "parse_fast",
    "raw_ledger_fields",
    "raw_value",
    "record_text",
]

# Text: at most MAX_TEXT characters (msgspec counts characters, like len()). Valid unicode is
# checked once per record by encoding (see _encodable and record_text).
_Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
_Required = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
# Money, quantity and ids keep their raw type here; the rules below apply marshmallow's.
_Money = int | float | str
_ZERO = Decimal("0")


class _Billing(msgspec.Struct):
    # customer.billing_address: informational, nothing required.
    name: _Text | None = ""
    address1: _Text | None = ""
    address2: _Text | None = ""
    city: _Text | None = ""
    state: _Text | None = None
    zip: _Text | None = ""
    country: _Text | None = None
    phone: _Text | None = ""


class _Customer(msgspec.Struct):
    name: _Required
    address1: _Required
    address2: _Text | None = ""
    city: _Text | None = ""
    state: _Text | None = None
    zip: _Text | None = ""
    country: _Text | None = None
    phone: _Text | None = ""
    billing_address: _Billing | None = None


class _Line(msgspec.Struct):
    ci_lineitemid: int | str
    sku: _Required
    name: _Text
    quantity: int | str
    unit_price: _Money
    fulfillment_lineitem_id: int | str | None = None
    bom_sku: _Text | None = None
    groupon_cost: _Money | None = None
    discount: _Money | None = None
    status: _Text | None = ""
    ship_by_date: _Text | None = None
    order_line_item_uuid: _Text | None = None
    voucher_code: _Text | None = ""
    gift_message: _Text | None = ""


class _Amount(msgspec.Struct):
    total: _Money | None = None


class _Shipping(msgspec.Struct):
    method: _Text | None = None


class _Record(msgspec.Struct):
    orderid: _Required
    date: _Text
    line_items: Annotated[list[_Line], msgspec.Meta(min_length=1)]
    customer: _Customer
    parent_orderid: _Text | None = None
    amount: _Amount | None = None
    shipping: _Shipping | None = None
    supplier: _Text | None = ""


class _Defer(Exception):
    """Not accepted here: the marshmallow path decides (and words any problem)."""


RecordStruct = _Record
"""The Struct type a record is converted (or decoded) into, for :func:`build_parsed`."""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_decode_record = msgspec.json.Decoder(_Record).decode


# --- the rules (each mirrors a marshmallow field of connector.ci.schemas) ---------------------


@lru_cache(maxsize=4096)
def _float_money(value: float) -> Decimal:
    if not math.isfinite(value):
        raise _Defer
    return Decimal(repr(value))


@lru_cache(maxsize=4096)
def _int_money(value: int) -> Decimal:
    return Decimal(str(value))  # str() refuses ints beyond the digit limit, like marshmallow


def _money(value: int | float | str) -> Decimal:
    # schemas.Money: Decimal(str(x)); booleans (refused by msgspec), NaN, infinities refused.
    # Numbers are cached (a catalogue repeats its few prices; a Decimal is immutable), one
    # cache per type, as 1 == 1.0 while Decimal("1") and Decimal("1.0") differ; 0.0 == -0.0
    # too, so zeros are never cached.
    kind = type(value)
    if kind is float:
        if value:
            return _float_money(value)
        return Decimal(repr(value))
    if kind is int:
        return _int_money(value)
    text: str = value  # type: ignore[assignment]
    if len(text) > MAX_TEXT:
        raise _Defer
    amount = Decimal(text.strip())  # InvalidOperation -> the caller defers
    if not amount.is_finite():
        raise _Defer
    return amount


def _opt_money(value: int | float | str | None) -> Decimal | None:
    return None if value is None else _money(value)


def _quantity(value: int | str) -> int:
    # schemas.Quantity: a positive int, or a short string of digits.
    if type(value) is int:
        number = value
    else:
        text: str = value  # type: ignore[assignment]
        stripped = text.strip()
        if not (stripped.isdigit() and len(text) < 10):
            raise _Defer
        number = int(stripped)
    if number < 1:
        raise _Defer
    return number


def _line_id(value: int | str) -> int:
    number = as_line_id(value)
    if number is None:
        raise _Defer
    return number


def _id_text(value: int | str | None) -> str | None:
    # schemas.IdText, then the parser's ``or None``.
    if value is None:
        return None
    text = str(value) if type(value) is int else value.strip()  # type: ignore[union-attr]
    if len(text) > MAX_TEXT:
        raise _Defer
    return text or None


@lru_cache(maxsize=4096)
def _when(text: str) -> tuple[Any, str]:
    """A CI date and its ISO form, cached: a page repeats the same few minutes. Raises
    ValueError like :func:`parse_ci_datetime` (errors are not cached)."""
    moment = parse_ci_datetime(text)
    return moment, moment.isoformat()


def _encodable(record: _Record) -> bool:
    """Every string the record's Structs hold is valid unicode (no lone surrogate): they
    encode. (Cheaper than encoding the raw record, which carries many more keys.)"""
    try:
        _encode(record)
    except Exception:
        return False
    return True


def _convert(raw: Any) -> _Record | None:
    if type(raw) is not dict:
        return None
    try:
        return msgspec.convert(raw, _Record)
    except Exception:
        return None


_LineValues = tuple[
    int,  # ci_lineitemid
    str | None,  # fulfillment_lineitem_id
    str,  # sku
    str | None,  # bom_sku
    str,  # name
    int,  # quantity
    Decimal,  # unit_price
    Decimal | None,  # groupon_cost
    Decimal,  # discount
    str,  # status
    Any,  # ship_by (datetime | None)
    str | None,  # ship_by ISO
    str | None,  # order_line_item_uuid
    str,  # voucher_code
    str,  # gift_message
]


def _line_values(line: _Line) -> _LineValues:
    ship_by: Any = None
    ship_by_iso: str | None = None
    if line.ship_by_date:
        ship_by, ship_by_iso = _when(line.ship_by_date)
    discount = line.discount
    # The usual shapes inline (a positive int id and quantity); anything else takes the rule.
    lid = line.ci_lineitemid
    if type(lid) is not int or lid < 1:
        lid = _line_id(lid)
    quantity = line.quantity
    if type(quantity) is not int or quantity < 1:
        quantity = _quantity(quantity)
    return (
        lid,
        _id_text(line.fulfillment_lineitem_id),
        line.sku,
        line.bom_sku or None,  # "" and null both mean "no BOM SKU"
        line.name,
        quantity,
        _money(line.unit_price),
        _opt_money(line.groupon_cost),
        _ZERO if discount is None else _money(discount),
        (line.status or "open").strip().lower(),
        ship_by,
        ship_by_iso,
        line.order_line_item_uuid or None,
        line.voucher_code or "",
        line.gift_message or "",
    )


def _total(record: _Record, lines: list[_LineValues]) -> Decimal:
    amount = record.amount
    if amount is not None and amount.total is not None:
        return _money(amount.total)
    # As the marshmallow path: without amount.total, the sum of price * quantity.
    return sum((v[6] * v[5] for v in lines), _ZERO)


def _address_list(a: _Customer | _Billing) -> list[Any]:
    return [
        a.name or "",
        a.address1 or "",
        a.address2 or "",
        a.city or "",
        a.state,
        a.zip or "",
        a.country,
        a.phone or "",
    ]


# --- entry points ------------------------------------------------------------------------------


def parse_fast(raw: Any) -> ParsedRecord | None:
    """``raw`` as the marshmallow path would parse it, or ``None`` to let that path decide."""
    record = _convert(raw)
    if record is None or not _encodable(record):
        return None
    return build_parsed(record)


def _checked(record: RecordStruct) -> tuple[Any, str, list[_LineValues], Decimal] | None:
    """The rules both entry points apply beyond the Structs' types: the order date (and its
    ISO form), each line's values, the record total; ``None`` when a rule refuses it."""
    try:
        moment, date_iso = _when(record.date)
        values = [_line_values(line) for line in record.line_items]
        return moment, date_iso, values, _total(record, values)
    except Exception:
        return None


def build_parsed(record: RecordStruct) -> ParsedRecord | None:
    """The :class:`ParsedRecord` of a record already in Structs whose strings are valid
    unicode (converted from a dict and checked, or decoded from JSON bytes); ``None`` when a
    rule refuses it."""
    checked = _checked(record)
    if checked is None:
        return None
    moment, _, values, total = checked
    customer = record.customer
    billing = customer.billing_address
    return ParsedRecord(
        orderid=record.orderid,
        parent_orderid=record.parent_orderid or None,
        order_date=moment,
        ship_to=Address(*_address_list(customer)),
        billing=Address(*_address_list(billing)) if billing is not None else None,
        lines=tuple(
            OrderLine(
                ci_lineitemid=v[0],
                fulfillment_lineitem_id=v[1],
                sku=v[2],
                bom_sku=v[3],
                name=v[4],
                quantity=v[5],
                unit_price=v[6],
                groupon_cost=v[7],
                discount=v[8],
                status=v[9],
                ship_by=v[10],
                order_line_item_uuid=v[12],
                voucher_code=v[13],
                gift_message=v[14],
            )
            for v in values
        ),
        total=total,
        shipping_method=(record.shipping.method if record.shipping else None) or "",
        supplier_name=record.supplier or "",
    )


def record_text(raw: Any, plain: bool = False) -> str | None:
    """``raw`` as compact JSON (keys in CI's order), or ``None`` unless that text reads back
    equal to ``raw``: JSON values only, finite floats (msgspec writes NaN as ``null``), valid
    unicode. Also tells :func:`ledger_fields` the record's strings are all valid.

    ``plain``: ``raw`` is known to hold JSON values only, as msgspec decoded them
    (:attr:`connector.ci.client.OrdersPage.plain_json`): the text then reads back equal by
    construction and is not decoded again to check (~5 us per record)."""
    try:
        data = _encode(raw)
        if not plain and _decode(data) != raw:
            return None
    except Exception:
        return None
    return data.decode("utf-8")


def ledger_fields(raw: Any) -> tuple[str, list[list[Any]]] | None:
    """The record's order id and, per line, the ledger's positional parsed form
    (``connector.importer._F_*``: record head, then line fields; Decimals as strings,
    datetimes ISO), exactly what ``_record_head(p) + _line_fields(line)`` makes from
    :func:`parse_fast`'s result; ``None`` to defer.

    Call it only for a record :func:`record_text` accepted (valid unicode is not re-checked).
    """
    record = _convert(raw)
    return None if record is None else _fields_of(record)


def raw_ledger_fields(raw: msgspec.Raw) -> tuple[str, str, list[list[Any]]] | None:
    """:func:`record_text` and :func:`ledger_fields` of a record left ``msgspec.Raw`` by
    ``connector.ci.client.CIClient.iter_raw_pages``, straight from its bytes: the text is
    the bytes as CI sent them (valid UTF-8, checked with the page; a JSON text that reads
    back as the record, spaces and escapes as CI wrote them; compacted only when it spans
    several lines), the Structs are decoded
    from them (no dict built). ``(text, order id, rows)``, or ``None`` to defer: then
    :func:`raw_value` gives the record for the other paths."""
    try:
        record = _decode_record(raw)
    except Exception:  # msgspec.ValidationError / DecodeError: the tolerant path words it
        return None
    # The decode checked the escapes (no lone surrogate), the page check the UTF-8.
    fields = _fields_of(record)
    if fields is None:
        return None
    text = str(memoryview(raw), "utf-8")
    if "\n" in text:
        # Pretty-printed (JSON strings hold no raw newline): its indentation would be most
        # of what is stored, so the text is compacted (~5 us; single-line JSON is kept as
        # sent: the few spaces after separators cost less to store than to strip).
        text = msgspec.json.format(text, indent=-1)
    return text, *fields


def raw_value(raw: msgspec.Raw) -> tuple[Any, bool]:
    """The JSON value of a record left ``msgspec.Raw``, and whether msgspec decoded it (as
    :attr:`connector.ci.client.OrdersPage.plain_json` for a page): what the standard decoder
    reads where msgspec refuses (a number beyond its range), as ``json`` would have read the
    whole page."""
    try:
        return _decode(raw), True
    except Exception:  # msgspec.DecodeError, RecursionError
        return json.loads(bytes(raw)), False


def _fields_of(record: _Record) -> tuple[str, list[list[Any]]] | None:
    checked = _checked(record)
    if checked is None:
        return None
    _, date_iso, values, total = checked
    customer = record.customer
    billing = customer.billing_address
    head = [
        record.orderid,
        record.parent_orderid or None,
        date_iso,
        _address_list(customer),
        _address_list(billing) if billing is not None else None,
        str(total),
        (record.shipping.method if record.shipping else None) or "",
        record.supplier or "",
        values[0][0],  # identifies the record: its total is counted once
    ]
    return record.orderid, [
        [
            *head,
            v[0],
            v[1],
            v[2],
            v[3],
            v[4],
            v[5],
            str(v[6]),
            None if v[7] is None else str(v[7]),
            str(v[8]),
            v[9] or "open",
            v[11],
            v[12],
            v[13],
            v[14],
        ]
        for v in values
    ]
