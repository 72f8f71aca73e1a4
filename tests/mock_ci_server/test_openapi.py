"""The OpenAPI document: valid OpenAPI 3.0, and the shared CI examples validate against it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis

from mock_ci_server.openapi import CONTENT_TYPE, build_openapi, to_openapi30

EXAMPLES = Path(__file__).parents[1] / "fixtures" / "ci-examples"
CI_PATHS = (
    "/api/{version}/get_orders",
    "/api/{version}/mark_exported",
    "/api/{version}/tracking_notification",
    "/api/v4/lineitem_tracking_notification",
)


def to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema object -> JSON Schema (``nullable`` -> a ``null`` alternative)."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k not in ("nullable", "example")}
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    root = {
        "allOf": [to_json_schema(schema)],
        "components": to_json_schema(doc["components"]),
    }
    return jsonschema_rs.Draft202012Validator(root)


def response_schema(doc: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    content = doc["paths"][path][method]["responses"][status]["content"]
    assert list(content) == [CONTENT_TYPE]
    schema: dict[str, Any] = content[CONTENT_TYPE]["schema"]
    return schema


def load_example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build_openapi()


def test_document_is_valid_openapi_30(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.0.")
    schemathesis.openapi.from_dict(copy.deepcopy(doc)).validate()


def test_the_validator_used_above_does_reject_a_broken_document(doc: dict[str, Any]) -> None:
    broken = copy.deepcopy(doc)
    broken["paths"]["/api/{version}/get_orders"]["get"]["responses"] = "nope"
    with pytest.raises(jsonschema_rs.ValidationError):
        schemathesis.openapi.from_dict(broken).validate()


def test_no_json_schema_type_lists_remain(doc: dict[str, Any]) -> None:
    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), list):
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert found == []


def test_ci_paths_versions_and_parameters(doc: dict[str, Any]) -> None:
    assert set(CI_PATHS) <= set(doc["paths"])
    get = doc["paths"]["/api/{version}/get_orders"]["get"]
    params = {p["name"]: p for p in get["parameters"]}
    assert params["version"]["schema"]["enum"] == ["v2", "v3", "v4"]
    assert {n for n, p in params.items() if p["in"] == "query"} == {
        "supplier_id",
        "token",
        "page",
        "start_datetime",
        "end_datetime",
    }
    assert params["supplier_id"]["required"]
    assert params["token"]["required"]
    mark = doc["paths"]["/api/{version}/mark_exported"]["post"]
    assert mark["parameters"][0]["schema"]["enum"] == ["v2", "v4"]
    assert set(mark["requestBody"]["content"]) == {
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    }
    assert "lineitem_tracking_notification" not in json.dumps(
        doc["paths"]["/api/{version}/tracking_notification"]["post"]["parameters"]
    )
    for path in CI_PATHS:
        (op,) = doc["paths"][path].values()
        assert set(op["responses"]) == {"200", "400", "401", "403", "404"}
        for status in op["responses"]:
            assert list(op["responses"][status]["content"]) == [CONTENT_TYPE]


def test_gpn_paths_are_merged(doc: dict[str, Any]) -> None:
    from mock_ci_server.gpn.openapi import PATHS

    for path in PATHS:
        assert path in doc["paths"]


def test_assumptions_are_marked(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)
    assert text.count("ASSUMED") >= 5


@pytest.mark.parametrize(
    "name",
    ["get_orders_empty.json", "get_orders_v4_page2_of_2.json", "get_orders_v2_2017_shape.json"],
)
def test_get_orders_examples_validate(doc: dict[str, Any], name: str) -> None:
    schema = response_schema(doc, "/api/{version}/get_orders", "get", "200")
    example = load_example(name)
    errors = [str(e) for e in validator(doc, schema).iter_errors(example)]
    assert errors == []
    # And specifically against the orders branch, not the failure branch.
    assert validator(doc, {"$ref": "#/components/schemas/OrdersEnvelope"}).is_valid(example)


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("mark_exported_success.json", "/api/{version}/mark_exported"),
        ("mark_exported_failure.json", "/api/{version}/mark_exported"),
        ("tracking_notification_success.json", "/api/{version}/tracking_notification"),
        ("tracking_notification_failure.json", "/api/{version}/tracking_notification"),
        ("tracking_notification_success.json", "/api/v4/lineitem_tracking_notification"),
    ],
)
def test_write_examples_validate(doc: dict[str, Any], name: str, path: str) -> None:
    schema = response_schema(doc, path, "post", "200")
    example = load_example(name)
    assert [str(e) for e in validator(doc, schema).iter_errors(example)] == []
    if not example["success"]:
        four_xx = response_schema(doc, path, "post", "400")
        assert validator(doc, four_xx).is_valid(example)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r["data"][0]["line_items"][0].update(ci_lineitemid="612004511"),
        lambda r: r["data"][0]["line_items"][0].update(fulfillment_lineitem_id=1302200451),
        lambda r: r["data"][0].update(date="2024-03-04T09:15:00Z"),
        lambda r: r["data"][0]["line_items"][0].update(qty=1),
        lambda r: r["meta"].update(max_items_per_page=100),
        lambda r: r["data"][0].pop("orderid"),
        lambda r: r.update(success=False),
    ],
)
def test_schema_rejects_wrong_shapes(doc: dict[str, Any], mutate: Any) -> None:
    schema = response_schema(doc, "/api/{version}/get_orders", "get", "200")
    example = load_example("get_orders_v4_page2_of_2.json")
    assert validator(doc, schema).is_valid(example)
    mutate(example)
    assert not validator(doc, schema).is_valid(example)


def test_failure_envelope_requires_reason(doc: dict[str, Any]) -> None:
    schema = response_schema(doc, "/api/{version}/mark_exported", "post", "200")
    assert not validator(doc, schema).is_valid({"success": False})
    assert not validator(doc, schema).is_valid({"success": True, "extra": 1})


def test_build_returns_a_fresh_document() -> None:
    one = build_openapi()
    one["components"]["schemas"]["Failure"]["required"].append("x")
    assert "x" not in build_openapi()["components"]["schemas"]["Failure"]["required"]


def test_to_openapi30_rewrites_type_lists() -> None:
    assert to_openapi30({"type": ["string", "null"], "pattern": "x"}) == {
        "type": "string",
        "pattern": "x",
        "nullable": True,
    }
    assert to_openapi30({"properties": {"a": {"type": ["boolean", "null"]}}}) == {
        "properties": {"a": {"type": "boolean", "nullable": True}}
    }
    assert to_openapi30({"type": ["string", "integer"]}) == {
        "anyOf": [{"type": "string"}, {"type": "integer"}]
    }


def test_app_serves_the_document() -> None:
    from mock_ci_server.app import create_app

    resp = create_app().test_client().get("/_sim/openapi.json")
    assert resp.status_code == 200
    assert resp.get_json() == build_openapi()
