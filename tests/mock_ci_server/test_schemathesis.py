"""Property-based run of schemathesis against the simulator's real-API part, in process.

The document's credential and payload fields are narrowed for this run (a mix of the seeded
account's real values and wrong ones), so generated calls reach both the success paths and
the failure envelopes. Checks: no server error, response conforms to the schema (body,
status code, content type).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mock_ci_server.app import create_app
from mock_ci_server.openapi import build_openapi
from mock_ci_server.state import SimState

SUPPLIER_ID = "90001"
TOKEN = "SchemaThesisToken0123456789abcd"  # 31 alphanumeric chars, like real tokens
ORDERS = 300  # two pages


def _seeded_app(error_status_codes: bool) -> tuple[Any, list[int]]:
    state = SimState()
    state.add_account(SUPPLIER_ID, TOKEN, region="US")
    seeded = state.seed(SUPPLIER_ID, orders=ORDERS, seed=1)
    return create_app(state, error_status_codes=error_status_codes), seeded["ci_lineitemids"]


def _one_of(values: list[str]) -> dict[str, Any]:
    # Either a known-good/known-bad value, or anything the generator likes.
    return {"anyOf": [{"type": "string", "enum": values}, {"type": "string"}]}


def _narrowed_document(line_ids: list[int]) -> dict[str, Any]:
    doc = copy.deepcopy(build_openapi())
    doc["paths"] = {k: v for k, v in doc["paths"].items() if k.startswith("/api/")}
    credentials = {
        "supplier_id": {"type": "string", "enum": [SUPPLIER_ID, "90002"]},
        "token": {"type": "string", "enum": [TOKEN, "WrongToken"]},
    }
    ids = [
        json.dumps(line_ids[:2], separators=(",", ":")),
        json.dumps(line_ids[2:3]),
        "[1]",
    ]
    tracking = [
        json.dumps([{"carrier": "ups", "ci_lineitem_id": line_ids[5], "tracking": "1Z9"}]),
        json.dumps([{"carrier": "nope", "ci_lineitem_id": str(line_ids[6]), "tracking": "x"}]),
    ]
    lineitem_tracking = [
        json.dumps([{"carrier": "usps", "fulfillment_lineitem_id": "1", "tracking": "9400"}]),
    ]
    for path, item in doc["paths"].items():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["name"] in credentials:
                    param["schema"] = credentials[param["name"]]
            for media in op.get("requestBody", {}).get("content", {}).values():
                props = media["schema"]["properties"]
                props.update(credentials)
                if "ci_lineitem_ids" in props:
                    props["ci_lineitem_ids"] = _one_of(ids)
                if "tracking_info" in props:
                    is_v4_only = path.endswith("lineitem_tracking_notification")
                    props["tracking_info"] = _one_of(lineitem_tracking if is_v4_only else tracking)
    return doc


CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]

APP_200, LINE_IDS = _seeded_app(error_status_codes=False)
APP_4XX, _ = _seeded_app(error_status_codes=True)
schema = schemathesis.openapi.from_dict(_narrowed_document(LINE_IDS))


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_default_mode(case: Any) -> None:
    case.call_and_validate(app=APP_200, checks=CHECKS)


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_error_status_codes_mode(case: Any) -> None:
    case.call_and_validate(app=APP_4XX, checks=CHECKS)
