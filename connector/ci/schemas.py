"""Tolerant marshmallow 4 schemas for CI ``get_orders`` records.

CI's payload drifts (ci-api.md §2 and §5): money arrives as int, float or numeric string,
weights as strings or floats, ``state``/``country``/``po_number``/``parent_orderid``/``bom_sku``/
``carrier`` may be null, ``billing_address`` is missing on v2, ``shipping`` has keys starting
with a digit, and dates come in two formats. The schemas accept all of that, ignore unknown
keys, and refuse only what the connector cannot work with.

:func:`parse_record` never raises: a record it cannot read becomes a :class:`RecordProblem`
naming the field and the (truncated) value, plus the line ids it could still read so the
engine can hold those lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from connector.ci import fast
from connector.ci.records import (
    MAX_TEXT,
    ParsedRecord,
    RecordProblem,
    as_line_id,
    parse_ci_datetime,
)
from connector.models import Address, OrderLine

__all__ = [
    "MAX_TEXT",
    "ParsedRecord",
    "RecordProblem",
    "parse_ci_datetime",
    "parse_record",
    "parse_record_tolerant",
]

_VALUE_REPR_MAX = 80
_REASON_MAX = 1000


# --- fields ----------------------------------------------------------------------------------


def _check_text(value: str) -> str:
    if len(value) > MAX_TEXT:
        raise ValidationError(f"longer than {MAX_TEXT} characters ({len(value)})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("contains invalid unicode (lone surrogate)") from None
    return value


class Text(fields.Field[str]):
    """A string; numbers are accepted and rendered as text (zip codes, phones, SKUs arrive as
    ints in some payloads). Length-capped and checked for invalid unicode."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        if isinstance(value, bool):
            raise ValidationError("expected a string, got a boolean")
        if isinstance(value, int | float) and (
            not isinstance(value, float) or math.isfinite(value)
        ):
            return _number_text(value)
        if not isinstance(value, str):
            raise ValidationError(f"expected a string, got {type(value).__name__}")
        return _check_text(value)


class Money(fields.Field[Decimal]):
    """int, float or numeric string -> ``Decimal(str(x))``; booleans, NaN and infinities refused."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValidationError(f"expected a number, got {type(value).__name__}")
        if isinstance(value, str):
            _check_text(value)
        try:
            amount = Decimal(value.strip() if isinstance(value, str) else _number_text(value))
        except InvalidOperation:
            raise ValidationError("not a number") from None
        if not amount.is_finite():
            raise ValidationError("not a finite number")
        return amount


class LineId(fields.Field[int]):
    """``ci_lineitemid``: an int, or a string of digits. A boolean is not an int here."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int:
        number = as_line_id(value)
        if number is None:
            raise ValidationError("expected a positive integer line id")
        return number


class IdText(fields.Field[str]):
    """``fulfillment_lineitem_id``: sent as a string of digits; an int is accepted too."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValidationError(f"expected a string id, got {type(value).__name__}")
        return _check_text(value.strip() if isinstance(value, str) else _number_text(value))


class Quantity(fields.Field[int]):
    """A positive int (a string of digits is tolerated)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().isdigit() and len(value) < 10:
            number = int(value.strip())
        if number is None or number < 1:
            raise ValidationError("must be a positive integer")
        return number


class CIDateTime(fields.Field[datetime]):
    """A CI timestamp string -> aware UTC datetime (see :func:`parse_ci_datetime`)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> datetime:
        if not isinstance(value, str):
            raise ValidationError(f"expected a date string, got {type(value).__name__}")
        _check_text(value)
        try:
            return parse_ci_datetime(value)
        except ValueError:
            raise ValidationError(
                "not a CI date (MM/DD/YYYY hh:mmAM UTC or MM/DD/YYYY HH:MM)"
            ) from None


class Loose(fields.Field[str]):
    """A value we only tolerate (weights, dimensions): string, number or null, kept as text."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValidationError(f"expected a string or number, got {type(value).__name__}")
        return _check_text(value if isinstance(value, str) else _number_text(value))


def _number_text(value: int | float) -> str:
    try:
        return str(value)
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        raise ValidationError("number too large") from None


# --- schemas ---------------------------------------------------------------------------------


def _opt_text(**kwargs: Any) -> Text:
    return Text(load_default="", allow_none=True, **kwargs)


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE


class AddressSchema(_Base):
    """``customer`` (ship-to): ``name`` and ``address1`` are required.

    Only the fields the connector uses are declared (unknown keys are dropped), so a load
    costs what the connector needs and nothing more."""

    name = Text(required=True, validate=validate.Length(min=1))
    address1 = Text(required=True, validate=validate.Length(min=1))
    address2 = _opt_text()
    city = _opt_text()
    state = Text(load_default=None, allow_none=True)
    zip = _opt_text()
    country = Text(load_default=None, allow_none=True)
    phone = _opt_text()


class BillingSchema(AddressSchema):
    """``customer.billing_address``: informational only, so nothing in it is required."""

    name = _opt_text()
    address1 = _opt_text()


class CustomerSchema(AddressSchema):
    billing_address = fields.Nested(BillingSchema, load_default=None, allow_none=True)


class MemberOf(fields.Field[Any]):
    """One member of a small object (``amount.total``, ``shipping.method``) read with a plain
    field instead of a nested schema: a nested load costs a schema pass for one value.
    Errors keep the nested path (``amount.total``)."""

    def __init__(self, key: str, inner: fields.Field[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.inner = inner

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        if not isinstance(value, Mapping):
            raise ValidationError(f"expected an object, got {type(value).__name__}")
        member = value.get(self.key)
        if member is None:
            return None
        try:
            return self.inner.deserialize(member)
        except ValidationError as err:
            raise ValidationError({self.key: err.messages}) from None


class LineItemSchema(_Base):
    ci_lineitemid = LineId(required=True)
    sku = Text(required=True, validate=validate.Length(min=1))
    name = Text(required=True)
    quantity = Quantity(required=True)
    unit_price = Money(required=True)
    fulfillment_lineitem_id = IdText(load_default=None, allow_none=True)
    bom_sku = Text(load_default=None, allow_none=True)
    groupon_cost = Money(load_default=None, allow_none=True)
    discount = Money(load_default=None, allow_none=True)
    status = _opt_text()
    ship_by_date = Text(load_default=None, allow_none=True)
    order_line_item_uuid = Text(load_default=None, allow_none=True)
    voucher_code = _opt_text()
    gift_message = _opt_text()


class RecordSchema(_Base):
    orderid = Text(required=True, validate=validate.Length(min=1))
    parent_orderid = Text(load_default=None, allow_none=True)
    date = CIDateTime(required=True)
    line_items = fields.List(
        fields.Nested(LineItemSchema), required=True, validate=validate.Length(min=1)
    )
    customer = fields.Nested(CustomerSchema, required=True)
    # amount.total and shipping.method are the only members used: plain fields, no schema.
    amount = MemberOf("total", Money(), load_default=None, allow_none=True)
    shipping = MemberOf("method", Text(), load_default=None, allow_none=True)
    supplier = _opt_text()


_RECORD_SCHEMA = RecordSchema()


# --- parse -----------------------------------------------------------------------------------


def parse_record(raw: Mapping[str, Any]) -> ParsedRecord | RecordProblem:
    """Turn one raw CI record into a :class:`ParsedRecord`, or a :class:`RecordProblem` that
    names every bad field with its value. Never raises (anything unexpected becomes a problem
    too). A non-mapping input is reported as a problem.

    A well-formed record takes the fast strict path (:mod:`connector.ci.fast`, ~10x cheaper);
    anything that path does not accept goes through the marshmallow schemas, which give the
    same result for what both accept and word every problem."""
    parsed = fast.parse_fast(raw)
    if parsed is not None:
        return parsed
    return parse_record_tolerant(raw)


def parse_record_tolerant(raw: Mapping[str, Any]) -> ParsedRecord | RecordProblem:
    """:func:`parse_record` through the marshmallow schemas only (the reference behaviour;
    the fast path defers to it)."""
    try:
        return _parse(raw)
    except Exception as exc:  # the contract is "never raises": report, don't crash the import
        return RecordProblem(
            _safe_orderid(raw),
            _readable_line_ids(raw),
            _cap(f"record could not be read: {type(exc).__name__}: {_short(str(exc))}"),
        )


def _parse(raw: Any) -> ParsedRecord | RecordProblem:
    if not isinstance(raw, Mapping):
        return RecordProblem(None, (), f"record is not a JSON object: {_short_repr(raw)}")
    try:
        data: dict[str, Any] = _RECORD_SCHEMA.load(dict(raw))
    except ValidationError as err:
        problems = [
            f"{path}: {message} (value: {_value_at(raw, path)})"
            for path, message in _flatten(err.messages)
        ]
        return RecordProblem(_safe_orderid(raw), _readable_line_ids(raw), _cap("; ".join(problems)))

    lines: list[OrderLine] = []
    problems = []
    for index, item in enumerate(data["line_items"]):
        ship_by: datetime | None = None
        if item["ship_by_date"]:
            try:
                ship_by = parse_ci_datetime(item["ship_by_date"])
            except ValueError:
                problems.append(
                    f"line_items[{index}].ship_by_date: not a CI date "
                    f"(value: {_short_repr(item['ship_by_date'])})"
                )
                continue
        lines.append(
            OrderLine(
                ci_lineitemid=item["ci_lineitemid"],
                fulfillment_lineitem_id=item["fulfillment_lineitem_id"] or None,
                sku=item["sku"],
                # "" and null both mean "no BOM SKU"; mappings try bom_sku first when set.
                bom_sku=item["bom_sku"] or None,
                name=item["name"],
                quantity=item["quantity"],
                unit_price=item["unit_price"],
                groupon_cost=item["groupon_cost"],
                discount=item["discount"] if item["discount"] is not None else Decimal("0"),
                status=(item["status"] or "open").strip().lower(),
                ship_by=ship_by,
                order_line_item_uuid=item["order_line_item_uuid"] or None,
                voucher_code=item["voucher_code"] or "",
                gift_message=item["gift_message"] or "",
            )
        )
    if problems:
        return RecordProblem(_safe_orderid(raw), _readable_line_ids(raw), _cap("; ".join(problems)))

    total = data["amount"]
    if total is None:
        # Assumed: without amount.total, the gross value CI would report (sum of price * qty).
        total = sum((line.unit_price * line.quantity for line in lines), Decimal("0"))
    customer = data["customer"]
    billing_raw = customer["billing_address"]
    return ParsedRecord(
        orderid=data["orderid"],
        parent_orderid=data["parent_orderid"] or None,
        order_date=data["date"],
        ship_to=_address(customer),
        billing=_address(billing_raw) if billing_raw is not None else None,
        lines=tuple(lines),
        total=total,
        shipping_method=data["shipping"] or "",
        supplier_name=data["supplier"] or "",
    )


def _address(data: Mapping[str, Any]) -> Address:
    return Address(
        name=data["name"] or "",
        address1=data["address1"] or "",
        address2=data["address2"] or "",
        city=data["city"] or "",
        state=data["state"],
        zip=data["zip"] or "",
        country=data["country"],
        phone=data["phone"] or "",
    )


# --- problem reporting helpers --------------------------------------------------------------


def _flatten(messages: Any, prefix: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested error dict -> ``[("line_items[0].quantity", "..."), ...]``."""
    out: list[tuple[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            elif key == "_schema":
                path = prefix or "record"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            out.extend(_flatten(value, path))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out.append((prefix or "record", " ".join(messages)))
    elif isinstance(messages, list):
        for item in messages:
            out.extend(_flatten(item, prefix))
    else:
        out.append((prefix or "record", str(messages)))
    return out


_PATH_TOKEN = re.compile(r"\[(\d+)\]|\.?([^.\[]+)")


def _value_at(raw: Any, path: str) -> str:
    node: Any = raw
    for index, key in _PATH_TOKEN.findall(path):
        if index:
            if not isinstance(node, list) or int(index) >= len(node):
                return "missing"
            node = node[int(index)]
        else:
            # data_key names ("3PL_name") are what appears in the raw record.
            if not isinstance(node, Mapping) or key not in node:
                return "missing"
            node = node[key]
    return _short_repr(node)


def _short(text: str) -> str:
    return text if len(text) <= _VALUE_REPR_MAX else text[: _VALUE_REPR_MAX - 3] + "..."


def _short_repr(value: Any) -> str:
    if isinstance(value, str) and len(value) > _VALUE_REPR_MAX:
        value = value[:_VALUE_REPR_MAX]  # slice before repr: repr of a huge string is costly
    elif isinstance(value, list | dict) and len(value) > 10:
        return f"<{type(value).__name__} of {len(value)} items>"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not break problem reporting
        text = f"<{type(value).__name__}>"
    return _short(text)


def _cap(reason: str) -> str:
    return reason if len(reason) <= _REASON_MAX else reason[: _REASON_MAX - 3] + "..."


def _safe_orderid(raw: Any) -> str | None:
    try:
        value = raw.get("orderid") if isinstance(raw, Mapping) else None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # ValueError beyond sys.get_int_max_str_digits()
    except Exception:
        return None
    if isinstance(value, str) and value and len(value) <= MAX_TEXT:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return value
    return None


def _readable_line_ids(raw: Any) -> tuple[int, ...]:
    try:
        items = raw.get("line_items") if isinstance(raw, Mapping) else None
        if not isinstance(items, list):
            return ()
        ids: list[int] = []
        for item in items:
            if isinstance(item, Mapping):
                number = as_line_id(item.get("ci_lineitemid"))
                if number is not None and number not in ids:
                    ids.append(number)
        return tuple(ids)
    except Exception:
        return ()
