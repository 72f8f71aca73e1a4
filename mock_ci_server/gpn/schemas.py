"""Request parsing and response rendering for ``GET /v3/transactions``.

The query parameters come from the seed (``gpn-transaction-api.txt``) and are checked STRICTLY.
The success body is NOT public: everything about its shape is ASSUMED here and marked so:

* envelope ``{"transactions": [...], "total": N}`` plus ``"summary": {...}`` when
  ``summary=true``; no pagination;
* the id field is called ``transactionId`` (the seed only says "Transaction");
* ``invoiceId`` (the seed's "invoidId" is a typo);
* dates are ISO 8601 with offset, rendered in the requested ``timeZone``;
* ``grossAmount`` is a decimal string (``"12.99"``), ``payableAmount`` an integer in minor
  units (the seed: "Commission minor units. (+)ve/(-)ve.");
* "empty" fields are JSON ``null``.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from mock_ci_server.gpn.store import STATUSES, TYPES, GPNRecord

__all__ = [
    "DATE_FORMAT",
    "MAX_RANGE",
    "ClientSchema",
    "ConfigSchema",
    "QueryError",
    "RectifySchema",
    "SeedSchema",
    "TransactionsQuery",
    "load_control",
    "parse_query",
    "render_body",
    "render_record",
]

DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
MAX_RANGE = timedelta(days=30)  # the seed: "Maximum Time Frame: 30 days"
_ZONES = frozenset(zoneinfo.available_timezones())
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")


class QueryError(ValueError):
    """A query parameter is missing or wrong; the message names it and its value."""


class _QuerySchema(Schema):
    class Meta:
        unknown = RAISE

    clientId = fields.String(required=True, validate=validate.Length(min=1))
    startDate = fields.String(required=True)
    endDate = fields.String(required=True)
    timeZone = fields.String(load_default="UTC")
    transactionType = fields.String(load_default="ALL", validate=validate.OneOf(("ALL", *TYPES)))
    transactionStatus = fields.String(
        load_default="NON-INVOICED", validate=validate.OneOf(("NON-INVOICED", *STATUSES))
    )
    invoiceId = fields.String(validate=validate.Length(min=1))
    summary = fields.String(load_default="false", validate=validate.OneOf(("true", "false")))

    @validates("timeZone")
    def _zone(self, value: str, **_: Any) -> None:
        if value not in _ZONES:
            raise ValidationError("unknown time zone (use an IANA name such as Europe/Berlin)")

    @validates("startDate", "endDate")
    def _date(self, value: str, **_: Any) -> None:
        if not _DATE_RE.fullmatch(value):
            raise ValidationError("must be YYYY-MM-DDTHH:mm:SS")
        try:
            parsed = datetime.strptime(value, DATE_FORMAT)
        except ValueError:
            raise ValidationError("not a valid date and time") from None
        # Keeps time-zone arithmetic away from datetime's year 1 / 9999 edges.
        if not 1970 <= parsed.year <= 2999:
            raise ValidationError("year must be between 1970 and 2999")


@dataclass(frozen=True)
class TransactionsQuery:
    """A validated ``/v3/transactions`` query; start/end are aware (in ``zone``)."""

    client_id: str
    start: datetime
    end: datetime
    zone: tzinfo
    zone_name: str
    types: frozenset[str] | None
    statuses: frozenset[str]
    invoice_id: str | None
    summary: bool


def _first_message(messages: Any) -> str:
    if isinstance(messages, list) and messages:
        return str(messages[0])
    if isinstance(messages, dict) and messages:
        return _first_message(next(iter(messages.values())))
    return str(messages)


def parse_query(args: Mapping[str, list[str]]) -> TransactionsQuery:
    """Validate the query string (each key -> all its values). Raises :class:`QueryError`."""
    flat: dict[str, str] = {}
    for key, values in args.items():
        if len(values) != 1:
            raise QueryError(f"query parameter {key!r} given {len(values)} times; give it once")
        flat[key] = values[0]
    try:
        data = _QuerySchema().load(flat)
    except ValidationError as exc:
        problems = exc.messages_dict
        assert isinstance(problems, dict)
        name = sorted(problems)[0]
        message = _first_message(problems[name])
        if name in flat:
            raise QueryError(f"{name}={flat[name]!r}: {message}") from None
        raise QueryError(f"{name}: {message}") from None
    zone = zoneinfo.ZoneInfo(data["timeZone"])
    start = datetime.strptime(data["startDate"], DATE_FORMAT).replace(tzinfo=zone)
    end = datetime.strptime(data["endDate"], DATE_FORMAT).replace(tzinfo=zone)
    if end < start:
        raise QueryError(f"endDate={data['endDate']!r} is before startDate={data['startDate']!r}")
    if end - start > MAX_RANGE:
        raise QueryError(
            f"startDate={data['startDate']!r} to endDate={data['endDate']!r} is longer than "
            "the maximum time frame of 30 days"
        )
    kind = data["transactionType"]
    status = data["transactionStatus"]
    return TransactionsQuery(
        client_id=data["clientId"],
        start=start,
        end=end,
        zone=zone,
        zone_name=data["timeZone"],
        types=None if kind == "ALL" else frozenset({kind}),
        statuses=(
            frozenset(STATUSES) - {"INVOICED"} if status == "NON-INVOICED" else frozenset({status})
        ),
        invoice_id=data.get("invoiceId"),
        summary=data["summary"] == "true",
    )


def _date(value: datetime | None, zone: tzinfo) -> str | None:
    return None if value is None else value.astimezone(zone).isoformat(timespec="seconds")


def render_record(record: GPNRecord, zone: tzinfo) -> dict[str, Any]:
    """One transaction in the (ASSUMED) JSON shape, with exactly the seed's fields."""
    return {
        "transactionId": record.transaction_id,
        "transactionDate": _date(record.transaction_date, zone),
        "lastModifiedDate": _date(record.last_modified, zone),
        "orderId": record.order_id,
        "shortId": record.short_id,
        "cartId": record.cart_id,
        "cartItemId": record.cart_item_id,
        "supportId": record.support_id,
        "linkId": record.link_id,
        "permalink": record.permalink,
        "grossAmount": None if record.gross_amount is None else f"{record.gross_amount:.2f}",
        "payableAmount": record.payable_minor,
        "sid": record.sid,
        "wid": record.wid,
        "transactionStatus": record.transaction_status,
        "invoiceId": record.invoice_id,
        "transactionType": record.transaction_type,
        "transactionDetails": record.transaction_details,
        "currency": record.currency,
        "commissionCategory": record.commission_category,
        "commissionDetails": record.commission_details,
        "country": record.country,
        "isNewUser": record.is_new_user,
    }


def _summary(records: list[GPNRecord]) -> dict[str, Any]:
    """ASSUMED summary shape: totals, then per type and per status."""

    def bucket(key: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in records:
            name = getattr(r, key)
            entry = out.setdefault(name, {"count": 0, "payableAmount": 0})
            entry["count"] += 1
            entry["payableAmount"] += r.payable_minor
        return dict(sorted(out.items()))

    gross = sum((r.gross_amount for r in records if r.gross_amount is not None), Decimal(0))
    return {
        "count": len(records),
        "grossAmount": f"{gross:.2f}",
        "payableAmount": sum(r.payable_minor for r in records),
        "currencies": sorted({r.currency for r in records}),
        "byType": bucket("transaction_type"),
        "byStatus": bucket("transaction_status"),
    }


def render_body(records: list[GPNRecord], query: TransactionsQuery) -> dict[str, Any]:
    """The (ASSUMED) success envelope."""
    body: dict[str, Any] = {
        "transactions": [render_record(r, query.zone) for r in records],
        "total": len(records),
    }
    if query.summary:
        body["summary"] = _summary(records)
    return body


# -- control plane (/_sim/gpn/...) ------------------------------------------------------------


class _AwareDateTime(fields.DateTime):
    """ISO 8601; a value without offset is taken as UTC."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        if not 1970 <= parsed.year <= 2999:
            raise ValidationError("year must be between 1970 and 2999")
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class ClientSchema(Schema):
    """``POST /_sim/gpn/clients``."""

    class Meta:
        unknown = RAISE

    client_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    token = fields.String(required=True, validate=validate.Length(min=1, max=500))


class SeedSchema(Schema):
    """``POST /_sim/gpn/seed``; start/end default to the 30 days before simulated now."""

    class Meta:
        unknown = RAISE

    client_id = fields.String(required=True)
    n = fields.Integer(load_default=50, validate=validate.Range(min=0, max=100_000))
    seed = fields.Integer(load_default=1)
    start = _AwareDateTime()
    end = _AwareDateTime()
    currency = fields.String(load_default="USD", validate=validate.Regexp(r"^[A-Z]{3}$"))
    country = fields.String(load_default="US", validate=validate.Regexp(r"^[A-Z]{2}$"))


class RectifySchema(Schema):
    """``POST /_sim/gpn/rectify``."""

    class Meta:
        unknown = RAISE

    client_id = fields.String()
    older_than_hours = fields.Float(
        allow_nan=False, load_default=48.0, validate=validate.Range(min=0, max=24 * 3650)
    )
    modified_at = _AwareDateTime()


class ConfigSchema(Schema):
    """``POST /_sim/gpn/config``: the SEC2 timestamp tolerance."""

    class Meta:
        unknown = RAISE

    auth_skew_seconds = fields.Integer(
        required=True, validate=validate.Range(min=0, max=7 * 24 * 3600)
    )


def load_control(schema: Schema, payload: Any) -> dict[str, Any]:
    """Load a control-plane JSON body; raises :class:`QueryError` naming the field."""
    if not isinstance(payload, dict):
        raise QueryError("the request body must be a JSON object")
    try:
        data = schema.load(payload)
    except ValidationError as exc:
        problems = exc.messages_dict
        assert isinstance(problems, dict)
        name = sorted(problems)[0]
        value = payload.get(name, None)
        shown = f"{name}={value!r}" if name in payload else name
        raise QueryError(f"{shown}: {_first_message(problems[name])}") from None
    assert isinstance(data, dict)
    return data
