"""Strict request schemas (written from ci-api.md, never shared with the connector) and the
renderers that put records in the exact key order and JSON types of the real captures."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from mock_ci_server.errors import InvalidDateWindow, InvalidParameter, MissingParameter
from mock_ci_server.generator import PAGE_SIZE
from mock_ci_server.state import TrackingRequest

REQUEST_DATE_FORMAT = "%m/%d/%Y %H:%M"
MAX_WINDOW = timedelta(hours=24)
_MISSING = "Missing data for required field."


def flatten_errors(messages: Any, prefix: str = "") -> list[str]:
    """marshmallow's nested messages -> ["field[0].sub: message", ...]."""
    out: list[str] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if isinstance(key, int):
                name = f"{prefix}[{key}]"
            elif key == "_schema":
                name = prefix
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten_errors(value, name))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out.append(f"{prefix}: {' '.join(messages)}" if prefix else " ".join(messages))
    elif isinstance(messages, list):
        for i, value in enumerate(messages):
            out.extend(flatten_errors(value, f"{prefix}[{i}]"))
    else:
        out.append(f"{prefix}: {messages}" if prefix else str(messages))
    return out


def _raise_api_error(err: ValidationError, params: Mapping[str, Any]) -> None:
    problems = flatten_errors(err.messages)
    missing = [p.split(":")[0] for p in problems if p.endswith(_MISSING)]
    if missing and len(missing) == len(problems):
        raise MissingParameter(f"Missing required parameter(s): {', '.join(missing)}")
    shown = []
    for problem in problems:
        name = problem.split(":")[0]
        # Name the value given, except the token's, which is never echoed.
        if name in params and name != "token" and not problem.endswith(_MISSING):
            value = str(params[name])
            problem += f" (got {value if len(value) <= 80 else value[:77] + '...'!r})"
        shown.append(problem)
    raise InvalidParameter("; ".join(shown))


class _Credentials(Schema):
    class Meta:
        unknown = RAISE

    supplier_id = fields.String(required=True, validate=validate.Length(min=1))
    # The token is never echoed: a bad value only ever yields a generic message.
    token = fields.String(required=True, validate=validate.Length(min=1))


class GetOrdersSchema(_Credentials):
    """``GET /api/{v}/get_orders`` parameters."""

    page = fields.Integer(
        load_default=1,
        strict=False,
        validate=validate.Range(min=1, error="must be an integer >= 1"),
        error_messages={"invalid": "must be an integer >= 1"},
    )
    start_datetime = fields.String(load_default=None)
    end_datetime = fields.String(load_default=None)

    @staticmethod
    def _parse(name: str, value: str) -> datetime:
        try:
            return datetime.strptime(value.strip(), REQUEST_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise InvalidDateWindow(
                f"Invalid {name} {value!r}: expected MM/DD/YYYY HH:MM (UTC)"
            ) from None

    @post_load
    def _window(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        start, end = data.pop("start_datetime"), data.pop("end_datetime")
        data["window"] = None
        if start is None and end is None:
            return data
        if start is None or end is None:
            raise InvalidDateWindow(
                "start_datetime and end_datetime must be given together "
                f"(got only {'start_datetime' if end is None else 'end_datetime'})"
            )
        begin, finish = self._parse("start_datetime", start), self._parse("end_datetime", end)
        if finish <= begin:
            raise InvalidDateWindow(f"end_datetime {end!r} must be after start_datetime {start!r}")
        if finish - begin >= MAX_WINDOW:
            raise InvalidDateWindow(
                f"Date window {start!r} to {end!r} is {finish - begin}; "
                "start_datetime and end_datetime must be less than 24 hours apart"
            )
        data["window"] = (begin, finish)
        return data


def _json_field(params: Mapping[str, Any], name: str) -> Any:
    raw = params.get(name)
    if raw is None or raw == "":
        raise MissingParameter(f"Missing required parameter(s): {name}")
    try:
        return json.loads(raw)
    except (TypeError, ValueError) as exc:
        shown = raw if len(raw) <= 80 else raw[:77] + "..."
        raise InvalidParameter(
            f"{name} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}): {shown!r}"
        ) from None


class MarkExportedSchema(_Credentials):
    """``POST /api/{v}/mark_exported``: ``ci_lineitem_ids`` = JSON array text in one field."""

    ci_lineitem_ids = fields.String(required=True)


class TrackingFormSchema(_Credentials):
    """Both tracking endpoints: ``tracking_info`` = JSON array text in one field."""

    tracking_info = fields.String(required=True)


def _line_id(value: Any) -> int:
    # ShipWorks/Omniorder send ints, Plenty/Drupal digit strings.
    if isinstance(value, bool):
        raise ValidationError("must be an integer or a string of digits")
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValidationError(f"must be an integer or a string of digits, got {value!r}")


class CiLineIdField(fields.Field):  # type: ignore[type-arg]
    """An int or a digit string, loaded as int."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        return _line_id(value)


class _TrackingElementBase(Schema):
    class Meta:
        unknown = RAISE

    carrier = fields.String(required=True, validate=validate.Length(min=1))
    tracking = fields.String(required=True, validate=validate.Length(min=1))
    quantity = fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(min=1)
    )


class TrackingElementSchema(_TrackingElementBase):
    """An element of ``tracking_notification``'s ``tracking_info``."""

    ci_lineitem_id = CiLineIdField(required=True)


class LineitemTrackingElementSchema(_TrackingElementBase):
    """An element of ``lineitem_tracking_notification``'s ``tracking_info``."""

    fulfillment_lineitem_id = fields.String(required=True, validate=validate.Length(min=1))


def _form(schema: Schema, params: Mapping[str, Any]) -> dict[str, Any]:
    try:
        data: dict[str, Any] = schema.load(params)
    except ValidationError as err:
        _raise_api_error(err, params)
        raise  # unreachable: _raise_api_error always raises
    return data


def load_get_orders(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validated get_orders params: supplier_id, token, page, window (or None)."""
    return _form(GetOrdersSchema(), params)


def load_mark_exported(params: Mapping[str, Any]) -> tuple[str, str, list[int]]:
    """(supplier_id, token, ids) or an API error naming the field and value."""
    data = _form(MarkExportedSchema(), params)
    value = _json_field(params, "ci_lineitem_ids")
    # An empty array is accepted (a no-op): a real module sends `[]` whenever nothing is new;
    # the real answer is unknown (docs/simulator.md, "Unknown cases").
    if not isinstance(value, list):
        raise InvalidParameter(
            f"ci_lineitem_ids must be a JSON array of ids, got {params['ci_lineitem_ids']!r}"
        )
    ids = []
    for i, item in enumerate(value):
        try:
            ids.append(_line_id(item))
        except ValidationError as err:
            raise InvalidParameter(
                f"ci_lineitem_ids[{i}]: {' '.join(flatten_errors(err.messages))}"
            ) from None
    return data["supplier_id"], data["token"], ids


def load_tracking(
    params: Mapping[str, Any], *, by_fulfillment_id: bool
) -> tuple[str, str, list[TrackingRequest]]:
    """(supplier_id, token, elements); errors name ``tracking_info[i].field``."""
    data = _form(TrackingFormSchema(), params)
    value = _json_field(params, "tracking_info")
    if not isinstance(value, list) or not value:
        raise InvalidParameter(
            "tracking_info must be a non-empty JSON array of objects, "
            f"got {params['tracking_info']!r}"
        )
    schema = LineitemTrackingElementSchema() if by_fulfillment_id else TrackingElementSchema()
    items: list[TrackingRequest] = []
    for i, element in enumerate(value):
        if not isinstance(element, dict):
            raise InvalidParameter(f"tracking_info[{i}]: must be a JSON object, got {element!r}")
        try:
            loaded = schema.load(element)
        except ValidationError as err:
            raise InvalidParameter(
                "; ".join(flatten_errors(err.messages, f"tracking_info[{i}]"))
            ) from None
        items.append(
            TrackingRequest(
                index=i,
                carrier=loaded["carrier"],
                tracking=loaded["tracking"],
                quantity=loaded["quantity"],
                ci_lineitemid=loaded.get("ci_lineitem_id"),
                fulfillment_lineitem_id=loaded.get("fulfillment_lineitem_id"),
            )
        )
    return data["supplier_id"], data["token"], items


# --- control-plane schemas ---------------------------------------------------------------


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class AccountSchema(_Strict):
    """``POST /_sim/accounts``."""

    supplier_id = fields.String(required=True, validate=validate.Length(min=1))
    token = fields.String(required=True, validate=validate.Length(min=1))
    region = fields.String(load_default="US")
    approved_carriers = fields.List(fields.String(), load_default=None, allow_none=True)
    merchant_level = fields.Integer(strict=True, load_default=5, validate=validate.Range(1, 5))
    name = fields.String(load_default=None, allow_none=True)


class _Range(fields.List):  # type: ignore[type-arg]
    """[min, max] of positive ints."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.Integer(strict=True), validate=validate.Length(equal=2), **kwargs)


class SeedSchema(_Strict):
    """``POST /_sim/seed``: generator knobs, or ``records`` in the real shape."""

    supplier_id = fields.String(required=True, validate=validate.Length(min=1))
    orders = fields.Integer(strict=True, validate=validate.Range(0, 1_000_000))
    seed = fields.Integer(strict=True, load_default=1)
    lines_per_order = _Range(load_default=[1, 1])
    quantity = _Range(load_default=[1, 1])
    split_share = fields.Float(load_default=0.0, validate=validate.Range(0.0, 1.0))
    countries = fields.List(fields.String(), load_default=None, allow_none=True)
    spread_hours = fields.Float(load_default=48.0, validate=validate.Range(min=0))
    unmapped_share = fields.Float(load_default=0.0, validate=validate.Range(0.0, 1.0))
    records = fields.List(fields.Raw(), load_default=None, allow_none=True)

    @validates_schema
    def _one_source(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("records") is not None and data.get("orders") is not None:
            raise ValidationError("give either orders (generator) or records, not both")


class ClockSchema(_Strict):
    """``POST /_sim/clock``: exactly one of set / advance_seconds / advance_days."""

    set = fields.AwareDateTime(default_timezone=UTC)
    advance_seconds = fields.Float()
    advance_days = fields.Float()

    @validates_schema
    def _exactly_one(self, data: dict[str, Any], **_: Any) -> None:
        if len(data) != 1:
            raise ValidationError("give exactly one of set, advance_seconds, advance_days")


class CancelSchema(_Strict):
    """``POST /_sim/cancel``."""

    supplier_id = fields.String(required=True, validate=validate.Length(min=1))
    ci_lineitemids = fields.List(
        fields.Integer(strict=True), required=True, validate=validate.Length(min=1)
    )


class ConfigSchema(_Strict):
    """``POST /_sim/config``: any of the switches (at least one)."""

    error_status_codes = fields.Boolean()
    auth_error_status = fields.Integer(strict=True, validate=validate.OneOf((401, 403, 200)))

    @validates_schema
    def _one_switch(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("give error_status_codes and/or auth_error_status")


class SuspendSchema(Schema):
    """Optional body of ``POST /_sim/accounts/<id>/suspend``."""

    class Meta:
        unknown = EXCLUDE

    reason = fields.String(load_default="control plane")


# --- response rendering ------------------------------------------------------------------

_V2_CUSTOMER = ("city", "state", "name", "zip", "country", "address1", "address2", "phone")
_V2_LINE = (
    "sku", "status", "permalink", "voucher_code", "name", "weight", "gg_account_number",
    "po_number", "channel_sku_provided", "fulfillment_lineitem_id", "unit_price", "bom_sku",
    "opp_name", "kitting_details", "ci_lineitemid", "gift_message", "quantity",
)  # fmt: skip
_V2_SHIPPING = (
    "product_dimension_unit", "product_weight_unit", "product_weight", "incoterms",
    "3PL_warehouse", "3PL_name", "product_width", "product_length", "carrier", "product_height",
)  # fmt: skip


_CENT = Decimal("0.01")
#: Money keys of a line item (``amount.total``/``amount.shipping`` are the record's).
LINE_MONEY_KEYS = ("unit_price", "intrinsic_value", "groupon_cost", "discount")


def ci_money(value: Any) -> Any:
    """A money amount as the real 2023 capture writes it: zero as the literal ``0``, anything
    else with two decimals, trailing zeros kept (``22.00``, ``37.50``).

    Returns a :class:`~decimal.Decimal` for the JSON encoder (``simplejson`` with
    ``use_decimal`` writes it as a number literal); non-numbers (``None``, strings a tester
    seeded on purpose, booleans) pass through untouched. Ties round half-even (ASSUMED).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return value
    finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
    if not finite:  # NaN / infinity: left as seeded
        return value
    return _money_literal(value)


@functools.lru_cache(maxsize=4096)
def _money_literal(value: float | Decimal) -> Decimal | int:
    # Cached: a catalog repeats a few prices, and a page renders 1,500 amounts.
    amount = Decimal(str(value))
    return 0 if amount == 0 else amount.quantize(_CENT)


def _money_block(block: Any) -> Any:
    if not isinstance(block, dict):
        return block
    return {k: ci_money(v) if k in ("total", "shipping") else v for k, v in block.items()}


def _line_money(item: dict[str, Any], status: str) -> dict[str, Any]:
    out = {k: ci_money(v) if k in LINE_MONEY_KEYS else v for k, v in item.items()}
    out["status"] = status
    return out


def render_record_v4(record: dict[str, Any], status: str) -> dict[str, Any]:
    """The record as stored (real v4 key order), with the line's current status and money
    written as in the capture (:func:`ci_money`)."""
    out = dict(record)
    if "amount" in out:
        out["amount"] = _money_block(out["amount"])
    out["line_items"] = [_line_money(item, status) for item in record["line_items"]]
    return out


def render_record_v2(record: dict[str, Any], status: str) -> dict[str, Any]:
    """The 2017 ``/api/v2`` shape: no billing address, ``hts_code`` inside ``shipping``."""
    customer = record.get("customer") or {}
    shipping = record.get("shipping") or {}
    items = []
    hts = ""
    for item in record["line_items"]:
        line = {key: item.get(key, "") for key in _V2_LINE}
        line["status"] = status
        line["unit_price"] = ci_money(line["unit_price"])
        if line["po_number"] is None:
            line["po_number"] = ""  # a string in the 2017 recording
        items.append(line)
        hts = item.get("hts_code") or hts
    ship = {key: shipping.get(key, "") for key in _V2_SHIPPING}
    ship["hts_code"] = shipping.get("hts_code", hts)
    ship["method"] = shipping.get("method", "BEST")
    return {
        "orderid": record["orderid"],
        "parent_orderid": record.get("parent_orderid"),
        "customer": {key: customer.get(key) for key in _V2_CUSTOMER},
        "line_items": items,
        "shipping": ship,
        "date": record.get("date"),
        "amount": _money_block(record.get("amount")),
        "supplier": record.get("supplier"),
    }


def render_orders(
    *, no_of_pages: int, current_page: int, no_of_items: int, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """The get_orders envelope in the real key order: meta, data, success."""
    return {
        "meta": {
            "no_of_pages": no_of_pages,
            "current_page": current_page,
            "max_items_per_page": PAGE_SIZE,
            "no_of_items": no_of_items,
        },
        "data": records,
        "success": True,
    }
