"""OpenAPI 3 path item for the simulated GPN ``/v3/transactions`` (merged by the app's openapi).

Parameters and the 401 HTML page come from Groupon's help page (the seed); the 200 body is
ASSUMED (not public) and says so in its description.
"""

from __future__ import annotations

from typing import Any

from mock_ci_server.gpn.store import STATUSES, TYPES

__all__ = ["PATHS"]

_DATE = {
    "type": "string",
    "pattern": "^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$",
}
_NULLABLE_STRING = {"type": ["string", "null"]}

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["httpCode", "message"],
            "properties": {"httpCode": {"type": "integer"}, "message": {"type": "string"}},
        }
    },
}

_TRANSACTION = {
    "type": "object",
    "description": "ASSUMED shape: the field list is the seed's; names 'transactionId' and "
    "'invoiceId' (seed: 'Transaction', 'invoidId'), ISO dates with offset, grossAmount as a "
    "decimal string and payableAmount as integer minor units are assumptions.",
    "additionalProperties": False,
    "required": [
        "transactionId",
        "transactionDate",
        "lastModifiedDate",
        "orderId",
        "shortId",
        "cartId",
        "cartItemId",
        "supportId",
        "linkId",
        "permalink",
        "grossAmount",
        "payableAmount",
        "sid",
        "wid",
        "transactionStatus",
        "invoiceId",
        "transactionType",
        "transactionDetails",
        "currency",
        "commissionCategory",
        "commissionDetails",
        "country",
        "isNewUser",
    ],
    "properties": {
        "transactionId": {"type": "string"},
        "transactionDate": {"type": ["string", "null"], "format": "date-time"},
        "lastModifiedDate": {"type": "string", "format": "date-time"},
        "orderId": _NULLABLE_STRING,
        "shortId": _NULLABLE_STRING,
        "cartId": _NULLABLE_STRING,
        "cartItemId": _NULLABLE_STRING,
        "supportId": _NULLABLE_STRING,
        "linkId": _NULLABLE_STRING,
        "permalink": _NULLABLE_STRING,
        "grossAmount": {"type": ["string", "null"], "pattern": "^-?[0-9]+\\.[0-9]{2}$"},
        "payableAmount": {"type": "integer"},
        "sid": _NULLABLE_STRING,
        "wid": _NULLABLE_STRING,
        "transactionStatus": {"type": "string", "enum": list(STATUSES)},
        "invoiceId": _NULLABLE_STRING,
        "transactionType": {"type": "string", "enum": list(TYPES)},
        "transactionDetails": _NULLABLE_STRING,
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "commissionCategory": _NULLABLE_STRING,
        "commissionDetails": _NULLABLE_STRING,
        "country": {"type": "string"},
        "isNewUser": {"type": ["boolean", "null"]},
    },
}

_BUCKETS = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "required": ["count", "payableAmount"],
        "properties": {"count": {"type": "integer"}, "payableAmount": {"type": "integer"}},
    },
}

_SUMMARY = {
    "type": "object",
    "description": "ASSUMED shape (not public): totals of the returned transactions.",
    "required": ["count", "grossAmount", "payableAmount", "currencies", "byType", "byStatus"],
    "properties": {
        "count": {"type": "integer"},
        "grossAmount": {"type": "string"},
        "payableAmount": {"type": "integer"},
        "currencies": {"type": "array", "items": {"type": "string"}},
        "byType": _BUCKETS,
        "byStatus": _BUCKETS,
    },
}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> Any:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def _header(name: str, schema: dict[str, Any], description: str) -> Any:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema,
    }


PATHS: dict[str, Any] = {
    "/v3/transactions": {
        "get": {
            "operationId": "gpnTransactions",
            "tags": ["GPN"],
            "summary": "GPN Transaction API: list transactions of an affiliate (clientId).",
            "description": "Selects transactions created/modified (lastModifiedDate) within "
            "[startDate, endDate]; at most 30 days. Auth: x-auth-version SEC1 (token as is) or "
            "SEC2 (x-auth-timestamp + sha256_hex(token + timestamp)). Any auth failure is HTTP "
            "401 with an HTML page. The 200 body shape is ASSUMED (not public).",
            "parameters": [
                _query("clientId", {"type": "string", "minLength": 1}, "Reporting API key.", True),
                _query("startDate", _DATE, "YYYY-MM-DDTHH:mm:SS in timeZone.", True),
                _query("endDate", _DATE, "YYYY-MM-DDTHH:mm:SS in timeZone.", True),
                _query("timeZone", {"type": "string", "default": "UTC"}, "IANA time zone name."),
                _query(
                    "transactionType",
                    {"type": "string", "enum": ["ALL", *TYPES], "default": "ALL"},
                    "Type filter.",
                ),
                _query(
                    "transactionStatus",
                    {
                        "type": "string",
                        "enum": ["NON-INVOICED", *STATUSES],
                        "default": "NON-INVOICED",
                    },
                    "Status filter; NON-INVOICED = every status but INVOICED.",
                ),
                _query("invoiceId", {"type": "string", "minLength": 1}, "Invoice identifier."),
                _query(
                    "summary",
                    {"type": "string", "enum": ["true", "false"], "default": "false"},
                    "Include a summary of the transactions.",
                ),
                _header("x-auth-version", {"type": "string", "enum": ["SEC1", "SEC2"]}, "Scheme."),
                _header("x-auth-token", {"type": "string"}, "SEC1: token; SEC2: sha256 hex."),
                _header("x-auth-timestamp", _DATE, "SEC2 only: UTC now, YYYY-MM-DDTHH:mm:SS."),
            ],
            "responses": {
                "200": {
                    "description": "Transactions (ASSUMED envelope).",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["transactions", "total"],
                                "properties": {
                                    "transactions": {"type": "array", "items": _TRANSACTION},
                                    "total": {"type": "integer", "minimum": 0},
                                    "summary": _SUMMARY,
                                },
                            }
                        }
                    },
                },
                "400": {
                    "description": "Bad parameter (missing, malformed, range over 30 days, "
                    "end before start, unknown time zone).",
                    "content": {"application/json": {"schema": _ERROR}},
                },
                "401": {
                    "description": "Unknown clientId, wrong token, forged SEC2 hash or stale "
                    "timestamp: the HTML error page of the seed.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
            },
        }
    }
}
