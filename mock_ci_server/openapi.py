"""OpenAPI 3.0 document of the simulator's real-API part (CI endpoints + the GPN paths).

Written from ``ci-api.md`` (sections 1-4) and the shapes in ``ci-examples/``. Where the real
service's behaviour is not evidenced, the ``description`` says "ASSUMED". The control plane
under ``/_sim/`` is deliberately not described: it is not part of the real API.

The GPN engineer's ``mock_ci_server.gpn.openapi.PATHS`` are merged in; JSON-Schema-style
``"type": [X, "null"]`` found there is rewritten to OpenAPI 3.0's ``nullable: true``.
"""

from __future__ import annotations

import copy
from typing import Any

from mock_ci_server.gpn.openapi import PATHS as GPN_PATHS

CONTENT_TYPE = "text/json"  # what CI answers with (ShipWorks HAR), not application/json
_REF = "#/components/schemas/"

_DATE_12H = r"^[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}(AM|PM) UTC$"
_DATE_WINDOW = r"^[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _s(description: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", **extra}
    if description:
        out["description"] = description
    return out


def _ns(description: str | None = None) -> dict[str, Any]:
    return _s(description, nullable=True)


_NUMBER = {"type": "number"}
_MONEY = {"type": "number", "description": "JSON int when whole (75), else float (49.99)."}
_NUMERIC_STRING = _s('A number as a string ("1.0") or "".')


def _obj(
    properties: dict[str, Any], required: list[str], description: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        # The simulator emits only keys seen in public captures; anything else is a bug.
        "additionalProperties": False,
        "required": required,
        "properties": properties,
    }
    if description:
        out["description"] = description
    return out


_ADDRESS_FIELDS: dict[str, Any] = {
    "city": _s(),
    "state": _ns("Free text; '' for FR, null in the v2 doc sample."),
    "name": _s("Full name in one string."),
    "zip": _s("A string: keeps leading zeros."),
    "country": _ns("ISO-2 in v4 captures; null in the v2 doc sample."),
    "address1": _s(),
    "address2": _s(),
    "phone": _s(),
}

_SCHEMAS: dict[str, Any] = {
    "BillingAddress": _obj(dict(_ADDRESS_FIELDS), list(_ADDRESS_FIELDS), "v4 (2021+) only."),
    "Customer": _obj(
        {
            **_ADDRESS_FIELDS,
            "billing_address": _ref("BillingAddress"),
            "invoice_url": _s("v4 (2021+) only; always '' in captures."),
        },
        list(_ADDRESS_FIELDS),
        "The ship-to address and contact. No e-mail is ever provided.",
    ),
    "Shipping": _obj(
        {
            "product_dimension_unit": _s(),
            "product_weight_unit": _s("Free text: kg, kilograms, pounds, ''."),
            "product_weight": _NUMERIC_STRING,
            "incoterms": _s(),
            "3PL_warehouse": _s(),
            "3PL_name": _s(),
            "product_width": _NUMERIC_STRING,
            "product_length": _NUMERIC_STRING,
            "carrier": _ns("Suggested carrier; usually ''."),
            "product_height": _NUMERIC_STRING,
            "hts_code": _s("Only in the 2017 /api/v2 shape (moved to the line item later)."),
            "method": _s("Service level: BEST (v2) or standard (v4)."),
        },
        ["method"],
    ),
    "LineItem": _obj(
        {
            "weight": {
                "description": "A string in real data; a float in the v2/v3 doc samples.",
                "anyOf": [{"type": "string"}, {"type": "number"}],
            },
            "bom_sku": _ns(),
            "opp_name": _s(),
            "ci_lineitemid": {
                "type": "integer",
                "description": "CI's line id: mark_exported / tracking_notification.",
            },
            "sku": _s(),
            "custom_field_value": _s(),
            "channel_sku_provided": _s(),
            "unit_price": _MONEY,
            "ship_by_date": _s(pattern=_DATE_12H),
            "kitting_details": _s(),
            "status": _s(
                "'open' and 'ship' are evidenced; any other value the simulator emits "
                "(e.g. cancelled) is ASSUMED."
            ),
            "intrinsic_value": _NUMBER,
            "gg_account_number": _s(),
            "groupon_cost": _NUMBER,
            "discount": _NUMBER,
            "voucher_code": _s(),
            "permalink": _s(),
            "name": _s(),
            "po_number": _ns(),
            "fulfillment_lineitem_id": _s(
                "Groupon's line id (digits, as a string): lineitem_tracking_notification."
            ),
            "hts_code": _s(),
            "gift_message": _s(),
            "order_line_item_uuid": _s(),
            "coo": _s(),
            "quantity": {"type": "integer", "minimum": 1},
        },
        ["ci_lineitemid", "sku", "name", "quantity", "unit_price"],
    ),
    "Amount": _obj(
        {
            "total": _MONEY,
            "shipping": {"type": "number", "description": "Always 0 in captures."},
        },
        ["total"],
    ),
    "OrderRecord": _obj(
        {
            "orderid": _s("Not unique within data: one order may span several records/pages."),
            "parent_orderid": _ns(),
            "amount": _ref("Amount"),
            "date": _s("MM/DD/YYYY hh:mmAM UTC", pattern=_DATE_12H),
            "fulfillment_method": _s(),
            "opp_id": _s(),
            "supplier": _s(),
            "line_items": {"type": "array", "minItems": 1, "items": _ref("LineItem")},
            "customer": _ref("Customer"),
            "shipping": _ref("Shipping"),
        },
        ["orderid", "amount", "date", "line_items", "customer", "shipping"],
        "One record of get_orders. Key order follows the real captures (v4 2023; v2 2017).",
    ),
    "PageMeta": _obj(
        {
            "no_of_pages": {"type": "integer", "minimum": 0},
            "current_page": {"type": "integer", "minimum": 0, "description": "0 when empty."},
            "max_items_per_page": {"type": "integer", "enum": [250]},
            "no_of_items": {"type": "integer", "minimum": 0},
        },
        ["no_of_pages", "current_page", "max_items_per_page", "no_of_items"],
    ),
    "OrdersEnvelope": _obj(
        {
            "meta": _ref("PageMeta"),
            "data": {"type": "array", "items": _ref("OrderRecord")},
            "success": {"type": "boolean", "enum": [True]},
        },
        ["meta", "data", "success"],
    ),
    "Success": _obj(
        {"success": {"type": "boolean", "enum": [True]}},
        ["success"],
        "ASSUMED from client test stubs [1]: the exact success body was never captured.",
    ),
    "Failure": _obj(
        {"success": {"type": "boolean", "enum": [False]}, "reason": _s()},
        ["success", "reason"],
        "Failure envelope (Omniorder test [1]); reason texts are the simulator's own.",
    ),
}

_VERSION_DOC = (
    "API version. v3 is known only from its doc page; the simulator serves it like v4 (ASSUMED)."
)


def _version(versions: list[str]) -> dict[str, Any]:
    return {
        "name": "version",
        "in": "path",
        "required": True,
        "description": _VERSION_DOC,
        "schema": {"type": "string", "enum": versions},
    }


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> Any:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


_CREDENTIALS = {
    "supplier_id": _s("Numeric supplier id (5 digits in every public client).", minLength=1),
    "token": _s("Access token (31 alphanumeric chars in public examples).", minLength=1),
}


def _json_ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {CONTENT_TYPE: {"schema": schema}}}


def _failures() -> dict[str, Any]:
    assumed = (
        "Only with error_status_codes on (ASSUMED: the real service's status codes for "
        "failures are unknown; by default failures are HTTP 200 + the failure envelope). "
    )
    return {
        "400": _json_ok(_ref("Failure"), assumed + "Missing or malformed parameter."),
        "401": _json_ok(
            _ref("Failure"),
            "Unknown supplier_id or wrong token: HTTP 401 BY DEFAULT (a decision, see "
            "docs/simulator.md; auth_error_status=200 answers HTTP 200 + the envelope).",
        ),
        "403": _json_ok(_ref("Failure"), assumed + "Refused by a Groupon rule."),
        "404": _json_ok(_ref("Failure"), assumed + "Unknown line ids or endpoint."),
    }


def _form_body(field: str, description: str, example: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["supplier_id", "token", field],
        "properties": {**_CREDENTIALS, field: _s(description, example=example)},
    }
    return {
        "required": True,
        "description": "Form fields; PHP clients send multipart, others urlencoded. "
        "The JSON array travels as text inside one field, never as a JSON body.",
        "content": {
            "application/x-www-form-urlencoded": {"schema": schema},
            "multipart/form-data": {"schema": copy.deepcopy(schema)},
        },
    }


def _write_op(summary: str, description: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "description": description,
        "requestBody": body,
        "responses": {
            "200": _json_ok(
                {"oneOf": [_ref("Success"), _ref("Failure")]},
                "success true, or (by default, ASSUMED) success false with a reason.",
            ),
            **_failures(),
        },
    }


_TRACKING_NOTE = (
    "All-or-nothing in the simulator (ASSUMED): one bad element refuses the whole call."
)


def _ci_paths() -> dict[str, Any]:
    get_orders = {
        "get": {
            "summary": "One page (250 records) of orders",
            "description": "Without dates: only records not yet exported. With a window "
            "(< 24 h, UTC): every record dated inside it, exported or not. The official "
            "sample sends the parameters as a form body on a GET; the simulator reads "
            "query and form alike. Behaviour for a window of 24 h or more is ASSUMED "
            "(refused with a reason).",
            "parameters": [
                _version(["v2", "v3", "v4"]),
                _query("supplier_id", _CREDENTIALS["supplier_id"], "Supplier id.", True),
                _query("token", _CREDENTIALS["token"], "Access token.", True),
                _query(
                    "page",
                    {"type": "integer", "minimum": 1, "default": 1},
                    "1-based page; a page past the end gives empty data (ASSUMED).",
                ),
                _query(
                    "start_datetime",
                    _s(pattern=_DATE_WINDOW),
                    "UTC, MM/DD/YYYY HH:MM; give both or neither.",
                ),
                _query(
                    "end_datetime",
                    _s(pattern=_DATE_WINDOW),
                    "UTC, MM/DD/YYYY HH:MM; less than 24 h after start_datetime.",
                ),
            ],
            "responses": {
                "200": _json_ok(
                    {"oneOf": [_ref("OrdersEnvelope"), _ref("Failure")]},
                    "The orders envelope, or (by default, ASSUMED) the failure envelope.",
                ),
                **_failures(),
            },
        }
    }
    mark_exported = {
        "post": {
            **_write_op(
                "Mark line items exported",
                "Exported lines leave the default get_orders view. Re-sending ids is harmless [1].",
                _form_body(
                    "ci_lineitem_ids",
                    "A JSON array of ci_lineitemid values, as text.",
                    "[612004511,612004530]",
                ),
            ),
            "parameters": [_version(["v2", "v4"])],
        }
    }
    tracking = {
        "post": {
            **_write_op(
                "Tracking keyed by ci_lineitem_id",
                "tracking_info elements: carrier, ci_lineitem_id (int or digit string), "
                "tracking, optional quantity. " + _TRACKING_NOTE,
                _form_body(
                    "tracking_info",
                    "A JSON array of tracking elements, as text.",
                    '[{"carrier":"ups","ci_lineitem_id":612004511,"tracking":"1Z999AA10123456784"}]',
                ),
            ),
            "parameters": [_version(["v2", "v4"])],
        }
    }
    lineitem_tracking = {
        "post": _write_op(
            "Tracking keyed by fulfillment_lineitem_id (v4 only)",
            "tracking_info elements: carrier, fulfillment_lineitem_id (string), tracking, "
            "optional quantity for partial shipments. " + _TRACKING_NOTE,
            _form_body(
                "tracking_info",
                "A JSON array of tracking elements, as text.",
                '[{"quantity":1,"carrier":"glsit","fulfillment_lineitem_id":"1302200451",'
                '"tracking":"AB123456789"}]',
            ),
        )
    }
    return {
        "/api/{version}/get_orders": get_orders,
        "/api/{version}/mark_exported": mark_exported,
        "/api/{version}/tracking_notification": tracking,
        "/api/v4/lineitem_tracking_notification": lineitem_tracking,
    }


def to_openapi30(node: Any) -> Any:
    """Rewrite JSON-Schema ``"type": [X, "null"]`` into OpenAPI 3.0 ``type: X, nullable``."""
    if isinstance(node, list):
        return [to_openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_openapi30(value) for key, value in node.items()}
    kind = out.get("type")
    if isinstance(kind, list):
        others = [k for k in kind if k != "null"]
        if len(others) == 1:
            out["type"] = others[0]
        else:
            del out["type"]
            out["anyOf"] = [{"type": k} for k in others]
        if "null" in kind:
            out["nullable"] = True
    return out


def _gpn_paths() -> dict[str, Any]:
    # to_openapi30 rebuilds every dict and list, so the result shares nothing with PATHS.
    paths: dict[str, Any] = to_openapi30(GPN_PATHS)
    return paths


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.0 document (a fresh dict on every call: callers may modify it)."""
    paths = _ci_paths()
    for path, item in _gpn_paths().items():
        if path in paths:
            raise ValueError(f"GPN OpenAPI path {path!r} collides with a CI path")
        paths[path] = item
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Groupon CommerceInterface (CI) + GPN simulator",
            "version": "1",
            "description": "The real-API part of mock-ci-server, reconstructed from public "
            "evidence (no official spec exists). Real hosts: https://scm.commerceinterface.com "
            "(CI) and https://partner-api.groupon.com (GPN). Authentication is the supplier_id "
            "and token parameters on every CI call. Items marked ASSUMED are not evidenced.",
        },
        "paths": paths,
        "components": {"schemas": copy.deepcopy(_SCHEMAS)},
    }


__all__ = ["CONTENT_TYPE", "build_openapi", "to_openapi30"]
