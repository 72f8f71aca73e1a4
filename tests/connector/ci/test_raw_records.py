"""Pages read with their records left ``msgspec.Raw`` (``CIClient.iter_raw_pages``) and the
fast path that stages such a record from its bytes (``connector.ci.fast.raw_ledger_fields``).

The contract: a raw page is only given where ``json`` would read the same body to the same
values (else the page is read as before, records as dicts); a record the raw fast path
accepts is staged exactly as the dict fast path / marshmallow would, its text the record's
bytes (reading back as the record); any other record decodes to the value ``json`` gives."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
import responses
from hypothesis import HealthCheck, given, settings

from connector.ci.client import _json_object, _long_digit_run, _orders_object
from connector.ci.fast import raw_ledger_fields, raw_value
from connector.ci.records import ParsedRecord
from connector.ci.schemas import parse_record_tolerant
from connector.importer import _line_fields, _record_head
from tests.connector.ci._support import ORDERS_URL
from tests.connector.ci._support import make_client as _client
from tests.connector.ci.test_fast import BASES, V4, _json, _mutated

META = {"no_of_pages": 1, "current_page": 1, "max_items_per_page": 250, "no_of_items": 1}


def _body(records_json: str) -> bytes:
    return (
        '{"success": true, "meta": ' + json.dumps(META) + ', "data": [' + records_json + "]}"
    ).encode("utf-8")


def _check_raw(raw: Any) -> None:
    """Assert the contract for ``raw`` as CI-style JSON (ASCII escapes, spaces)."""
    try:
        text = json.dumps(raw)
    except ValueError:
        return
    body = _body(text)
    got, plain = _orders_object(body)
    expected, _ = _json_object(body)
    if got is None or not plain:
        assert (got, plain) == _json_object(body)  # not a raw page: read as before
        return
    assert expected is not None
    [record] = got["data"]
    assert type(record) is msgspec.Raw
    assert bytes(record) == text.encode()
    fast = raw_ledger_fields(record)
    if fast is None:
        value, _ = raw_value(record)
        assert value == expected["data"][0]  # the dict the other paths would have had
        return
    stored, orderid, rows = fast
    assert stored == text
    assert json.loads(stored) == raw
    slow = parse_record_tolerant(raw)
    assert isinstance(slow, ParsedRecord)
    assert (orderid, rows) == (
        slow.orderid,
        [_record_head(slow) + _line_fields(line) for line in slow.lines],
    )


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_mutated())
def test_mutated_records_raw_fast_path_agrees_or_defers(raw: dict[str, Any]) -> None:
    _check_raw(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_json)
def test_any_json_value_raw_fast_path_agrees_or_defers(value: Any) -> None:
    _check_raw(value)


def test_every_example_record_takes_the_raw_fast_path() -> None:
    for raw in BASES:
        _check_raw(raw)
        [record] = _orders_object(_body(json.dumps(raw)))[0]["data"]  # type: ignore[index]
        assert raw_ledger_fields(record) is not None


def test_a_raw_page_has_the_members_read_and_the_records_bytes() -> None:
    texts = [json.dumps(r, ensure_ascii=False) for r in BASES]
    body = _body(", ".join(texts)).replace(b'"success": true', b'"success": true, "reason": "ok"')
    got, plain = _orders_object(body)
    assert plain
    assert got is not None
    assert [bytes(r).decode() for r in got["data"]] == texts
    expected, _ = _json_object(body)
    assert expected is not None
    assert {k: v for k, v in got.items() if k != "data"} == {
        k: v for k, v in expected.items() if k != "data"
    }
    assert [raw_value(r) for r in got["data"]] == [(r, True) for r in expected["data"]]


@pytest.mark.parametrize(
    "record",
    [
        b'{"orderid": "\xff"}',  # invalid UTF-8: json refuses the body
        b'{"orderid": "A", "x": ' + b"9" * 5000 + b"}",  # beyond int()'s digit limit
        b'{"orderid": "A", "x": NaN}',
        b'{"orderid": "A", "x": "\\ud800"}',
        b"\xef\xbb\xbf",  # a BOM where a record should be
    ],
    ids=["bad-utf8", "huge-int", "nan", "lone-surrogate", "bom"],
)
def test_a_body_msgspec_cannot_scan_exactly_is_read_as_before(record: bytes) -> None:
    body = _body("").replace(b"[]", b"[" + record + b"]")
    assert _orders_object(body) == _json_object(body)


def test_a_number_only_json_reads_falls_back_per_record() -> None:
    body = _body('{"orderid": "A", "x": 1e400}, {"orderid": "B"}')
    got, plain = _orders_object(body)
    assert plain
    assert got is not None
    first, second = got["data"]
    assert raw_value(first) == ({"orderid": "A", "x": float("inf")}, False)
    assert raw_value(second) == ({"orderid": "B"}, True)


@pytest.mark.parametrize("offset", [0, 1, 777, 2150, 2151, 4000])
def test_long_digit_runs_are_found_wherever_they_sit(offset: int) -> None:
    content = b"x" * offset + b"7" * 4301 + b"x" * 50
    assert _long_digit_run(content)
    assert _long_digit_run(b"x" * offset + b"7" * 4301)


def test_short_digit_runs_are_not_flagged() -> None:
    assert not _long_digit_run((b"1234567890" * 200 + b",") * 50)
    assert not _long_digit_run(b"")


@responses.activate
def test_iter_raw_pages_leaves_records_raw_and_iter_pages_does_not() -> None:
    body = _body(json.dumps(V4))
    responses.add(responses.GET, ORDERS_URL, body=body, content_type="text/json")
    responses.add(responses.GET, ORDERS_URL, body=body, content_type="text/json")
    [raw_page] = list(_client().iter_raw_pages())
    [page] = list(_client().iter_pages())
    assert raw_page.plain_json
    assert page.plain_json
    assert [bytes(r) for r in raw_page.records] == [json.dumps(V4).encode()]
    assert page.records == [V4]
    assert raw_page.meta == page.meta


def test_a_pretty_printed_record_is_stored_compact() -> None:
    pretty = json.dumps(V4, indent=4)
    got, _ = _orders_object(_body(pretty))
    assert got is not None
    [record] = got["data"]
    fast = raw_ledger_fields(record)
    assert fast is not None
    text = fast[0]
    assert "\n" not in text
    assert len(text) < len(json.dumps(V4, separators=(",", ":"), ensure_ascii=False)) + 1
    assert json.loads(text) == V4
    same = raw_ledger_fields(_orders_object(_body(json.dumps(V4)))[0]["data"][0])  # type: ignore[index]
    assert same is not None
    assert fast[1:] == same[1:]


@pytest.mark.parametrize(
    "body",
    [
        b'{"success": false, "reason": "no", "data": []}',
        b'{"success": "yes", "meta": {}, "data": [], "other": 1}',
        b'{"success": true, "meta": {}}',
        b'{"success": true, "meta": {}, "data": {"a": 1}}',
        b'[{"success": true}]',
    ],
    ids=["failure", "success-not-bool", "no-data", "data-not-array", "not-an-object"],
)
def test_anything_but_a_plain_success_is_read_as_before(body: bytes) -> None:
    assert _orders_object(body) == _json_object(body)
