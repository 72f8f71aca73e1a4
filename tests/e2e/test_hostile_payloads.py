"""Hostile input: a corpus of lying get_orders payloads served by the simulator, through the
Groupon plugin inside the reference host.

Record-level lies are seeded as valid records with ``SimState.seed_records`` and then spoiled
in place (the simulator serves the stored dict as is, and still knows the line, so
acknowledgements work). Envelope-level lies (HTML, non-list ``data``, lying page counters,
invalid UTF-8, ...) are scripted bodies answered for the first ``get_orders`` calls by a thin
WSGI wrapper in front of the simulator; later calls reach the simulator itself.

Every case: no exception but :class:`ChannelError` escapes a sync; the victim order is either
stored whole or not at all, its bad lines held with a reason (``oms_held_lines``) or the sync
raising a clear ChannelError; the good orders are all imported.
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.ci.schemas import ParsedRecord, RecordProblem, parse_record
from connector.errors import ChannelError
from mock_ci_server.app import create_app
from mock_ci_server.state import SimState
from mock_ci_server.transport import InProcessTransport
from tests.connector.fakes import ci_date
from tests.e2e._support import StepClock, make_account, make_rig

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

SUPPLIER, TOKEN = "66001", "tok-HOSTILE-a1b2c3d4e5f6"
BASE_URL = "http://ci.invalid"
GOOD = {"5001": (101,), "5002": (102,), "5003": (103,)}
VICTIM, VA, VB = "5009", 901, 902
ORDER_DATE = datetime(2024, 3, 4, 9, 15, tzinfo=UTC)


def make_record(orderid: str, lid: int, **customer: Any) -> dict[str, Any]:
    """One record in the real v4 shape, for a product the default mappings alias."""
    cust = {
        "city": "Chicago",
        "state": "IL",
        "billing_address": {"name": "Ann Buyer", "address1": "1 Main St", "city": "Chicago"},
        "invoice_url": "",
        "name": "Ann Buyer",
        "zip": "60601",
        "country": "US",
        "address1": "1 Main St",
        "address2": "",
        "phone": "",
    }
    cust.update(customer)
    return {
        "orderid": orderid,
        "parent_orderid": None,
        "amount": {"total": 49.99, "shipping": 0},
        "date": ci_date(ORDER_DATE),
        "fulfillment_method": "Drop Ship (Marketplace)",
        "supplier": "Hostile Test Supplier",
        "line_items": [
            {
                "weight": "0.8",
                "bom_sku": "EXH-2001",
                "ci_lineitemid": lid,
                "sku": "8009990001112",
                "unit_price": 49.99,
                "ship_by_date": ci_date(ORDER_DATE.replace(day=6)),
                "status": "open",
                "groupon_cost": 30.45,
                "discount": 0,
                "voucher_code": "",
                "name": "Glass food containers, 10-piece set",
                "po_number": None,
                "fulfillment_lineitem_id": str(1302200000 + lid),
                "gift_message": "",
                "order_line_item_uuid": f"uuid-{lid}",
                "quantity": 1,
            }
        ],
        "customer": cust,
        "shipping": {"method": "standard", "carrier": "", "product_weight": "0.8"},
    }


def base_records() -> dict[int, dict[str, Any]]:
    records = {lid: make_record(oid, lid) for oid, lids in GOOD.items() for lid in lids}
    records[VA] = make_record(VICTIM, VA)
    records[VB] = make_record(VICTIM, VB)
    return records


def envelope(records: list[Any], pages: int = 1, page: int = 1, items: int | None = None) -> str:
    return json.dumps(
        {
            "meta": {
                "no_of_pages": pages,
                "current_page": page,
                "max_items_per_page": 250,
                "no_of_items": len(records) if items is None else items,
            },
            "data": records,
            "success": True,
        }
    )


class Scripted:
    """Answers the first ``get_orders`` calls with scripted bodies, then lets them through."""

    def __init__(self, app: WSGIApplication, bodies: list[bytes]) -> None:
        self.app = app
        self.bodies = list(bodies)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if str(environ.get("PATH_INFO", "")).endswith("/get_orders") and self.bodies:
            body = self.bodies.pop(0)
            start_response(
                "200 OK", [("Content-Type", "text/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        return self.app(environ, start_response)


Mutator = Callable[[dict[int, dict[str, Any]]], None]
Pages = Callable[[dict[int, dict[str, Any]]], list[bytes]]


@dataclass
class Case:
    """``expect``: ``"held"`` (victim stored nowhere, its lines held), ``"imported"`` (victim
    stored whole), ``"error"`` (a sync raised ChannelError; later syncs import everything),
    ``"problem"`` (a record without a readable line id is listed as held with no line id)."""

    name: str
    expect: str
    mutate: Mutator | None = None
    pages: Pages | None = None
    reason_has: str = ""
    held_ids: tuple[int, ...] = (VA, VB)
    extra: dict[str, Any] = field(default_factory=dict)


def on_a(fn: Callable[[dict[str, Any]], None]) -> Mutator:
    return lambda recs: fn(recs[VA])


def item_a(key: str, value: Any) -> Mutator:
    def mutate(recs: dict[int, dict[str, Any]]) -> None:
        recs[VA]["line_items"][0][key] = value

    return mutate


def rec_a(key: str, value: Any) -> Mutator:
    def mutate(recs: dict[int, dict[str, Any]]) -> None:
        recs[VA][key] = value

    return mutate


def cust_a(key: str, value: Any) -> Mutator:
    def mutate(recs: dict[int, dict[str, Any]]) -> None:
        recs[VA]["customer"][key] = value

    return mutate


def drop_key(path: tuple[str, ...]) -> Mutator:
    def mutate(recs: dict[int, dict[str, Any]]) -> None:
        target: Any = recs[VA]
        for key in path[:-1]:
            target = target[key][0] if key == "line_items" else target[key]
        del target[path[-1]]

    return mutate


def nulls_in_optional(recs: dict[int, dict[str, Any]]) -> None:
    rec = recs[VA]
    rec.update(parent_orderid=None, amount=None, shipping=None, supplier=None)
    rec["customer"].update(state=None, country=None, billing_address=None, phone=None)
    rec["line_items"][0].update(
        po_number=None,
        groupon_cost=None,
        discount=None,
        weight=None,
        ship_by_date=None,
        status=None,
        order_line_item_uuid=None,
        fulfillment_lineitem_id=None,
    )


def extra_keys(recs: dict[int, dict[str, Any]]) -> None:
    rec = recs[VA]
    rec["surprise"] = {"nested": [1, 2, {"x": None}]}
    rec["customer"]["ssn"] = "nope"
    rec["line_items"][0]["future_field"] = [True, 1.5]


def other_address_b(recs: dict[int, dict[str, Any]]) -> None:
    recs[VB]["customer"].update(name="Bob Other", address1="99 Elm Rd", zip="10001")


def window_date_format(recs: dict[int, dict[str, Any]]) -> None:
    for rec in (recs[VA], recs[VB]):
        rec["date"] = ORDER_DATE.strftime("%m/%d/%Y %H:%M")


def protocol_error_bodies(body: bytes) -> Pages:
    # The client tries 3 times (protocol_retries=2) before giving up on a non-envelope answer.
    return lambda recs: [body] * 3


def all_records(recs: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    return [copy.deepcopy(r) for r in recs.values()]


def pages_dup_line_on_two_pages(recs: dict[int, dict[str, Any]]) -> list[bytes]:
    first = [recs[101], recs[VA], recs[VB]]
    second = [recs[VA], recs[102], recs[103]]
    return [
        envelope(first, pages=2, page=1, items=6).encode(),
        envelope(second, pages=2, page=2, items=6).encode(),
    ]


def pages_too_high(recs: dict[int, dict[str, Any]]) -> list[bytes]:
    return [envelope(all_records(recs), pages=7).encode()]  # pages 2+ reach the simulator


def pages_changing(recs: dict[int, dict[str, Any]]) -> list[bytes]:
    rs = all_records(recs)
    return [
        envelope(rs[:3], pages=2, page=1, items=5).encode(),
        envelope(rs[3:], pages=3, page=2, items=5).encode(),
    ]


def pages_empty_middle(recs: dict[int, dict[str, Any]]) -> list[bytes]:
    # The victim sits on page 3, after an empty page 2: not read this time, read next sync.
    good = [recs[101], recs[102], recs[103]]
    return [
        envelope(good, pages=3, page=1, items=5).encode(),
        envelope([], pages=3, page=2, items=5).encode(),
    ]


def pages_too_low(recs: dict[int, dict[str, Any]]) -> list[bytes]:
    # Page 1 claims to be the only page and shows the good orders; the victim is unseen.
    good = [recs[101], recs[102], recs[103]]
    return [envelope(good, pages=1, items=3).encode()]


def pages_non_objects(recs: dict[int, dict[str, Any]]) -> list[bytes]:
    return [envelope(["junk", 7, None, [1, 2], *all_records(recs)]).encode()]


def pages_business_refusal(recs: dict[int, dict[str, Any]]) -> list[bytes]:
    return [json.dumps({"success": False, "reason": "Internal failure"}).encode()]


def _meta(data: Any = (), **meta: Any) -> bytes:
    base = {"no_of_pages": 1, "current_page": 1, "max_items_per_page": 250, "no_of_items": 5}
    base.update(meta)
    body = {"meta": base, "data": list(data) if isinstance(data, tuple) else data}
    return json.dumps({**body, "success": True}).encode()


def served_spoiled(fn: Callable[[dict[str, Any]], None]) -> Pages:
    """Spoil the victim's first record in a scripted page (the simulator itself cannot render
    it), served for every sync of the case."""

    def pages(recs: dict[int, dict[str, Any]]) -> list[bytes]:
        spoiled = all_records(recs)
        fn(next(r for r in spoiled if r["line_items"][0]["ci_lineitemid"] == VA))
        return [envelope(spoiled).encode()] * 4

    return pages


HUGE = "x" * 1_000_000

CASES: list[Case] = [
    # --- nulls, missing keys, wrong types in the record ---
    Case("customer_null", "held", rec_a("customer", None), reason_has="customer"),
    Case("customer_missing", "held", drop_key(("customer",)), reason_has="customer"),
    Case("customer_is_list", "held", rec_a("customer", ["Ann"]), reason_has="customer"),
    Case("customer_name_null", "held", cust_a("name", None), reason_has="name"),
    Case("address1_empty", "held", cust_a("address1", ""), reason_has="address1"),
    Case("zip_as_int", "imported", cust_a("zip", 60601)),
    Case("date_null", "held", rec_a("date", None), reason_has="date"),
    Case("date_garbage", "held", rec_a("date", "yesterday-ish"), reason_has="date"),
    Case("date_impossible", "held", rec_a("date", "13/45/2024 09:15AM UTC"), reason_has="date"),
    Case("date_both_formats", "imported", window_date_format),
    Case("orderid_int", "imported", rec_a("orderid", int(VICTIM))),
    # Without an orderid the line cannot be tied to its order: it is held on its own and the
    # record that does name the order comes through (that is all the payload says it holds).
    Case("orderid_null", "held", rec_a("orderid", None), held_ids=(VA,), extra={"split": True}),
    Case("line_items_empty", "held", rec_a("line_items", []), held_ids=(VB,)),
    Case(
        "line_items_null",
        "held",
        pages=served_spoiled(lambda r: r.update(line_items=None)),
        held_ids=(VB,),
    ),
    Case(
        "line_items_not_a_list",
        "held",
        pages=served_spoiled(lambda r: r.update(line_items={"0": r["line_items"][0]})),
        held_ids=(VB,),
    ),
    Case(
        # Nothing ties the string to an order: it is reported as a problem without a line id,
        # and the record that does name the order comes through on its own.
        "record_is_a_string",
        "problem",
        pages=lambda recs: [envelope([*all_records(recs)[:3], "5009", recs[VB]]).encode()] * 4,
        reason_has="not a JSON object",
        extra={"split": True},
    ),
    Case("quantity_digit_string", "imported", item_a("quantity", "1")),
    Case("quantity_word", "held", item_a("quantity", "two"), reason_has="quantity"),
    Case("quantity_zero", "held", item_a("quantity", 0), reason_has="quantity"),
    Case("quantity_negative", "held", item_a("quantity", -3), reason_has="quantity"),
    Case("quantity_float", "held", item_a("quantity", 1.5), reason_has="quantity"),
    Case("quantity_bool", "held", item_a("quantity", True), reason_has="quantity"),
    Case("quantity_null", "held", item_a("quantity", None), reason_has="quantity"),
    Case("lineid_float", "held", item_a("ci_lineitemid", float(VA)), held_ids=(VB,)),
    Case("lineid_bool", "held", item_a("ci_lineitemid", True), held_ids=(VB,)),
    Case("lineid_null", "held", item_a("ci_lineitemid", None), held_ids=(VB,)),
    Case("lineid_negative", "held", item_a("ci_lineitemid", -VA), held_ids=(VB,)),
    Case("lineid_digit_string", "imported", item_a("ci_lineitemid", str(VA))),
    Case("price_as_string", "imported", item_a("unit_price", "49.99")),
    Case("price_garbage", "held", item_a("unit_price", "forty"), reason_has="unit_price"),
    Case("price_null", "held", item_a("unit_price", None), reason_has="unit_price"),
    Case("price_nan", "held", item_a("unit_price", "NaN"), reason_has="unit_price"),
    Case("price_bool", "held", item_a("unit_price", False), reason_has="unit_price"),
    Case(
        "money_strings_everywhere",
        "imported",
        on_a(lambda r: r.update(amount={"total": "49.99", "shipping": "0.00"})),
    ),
    Case("discount_string", "imported", item_a("discount", "2.25")),
    Case("sku_null", "held", item_a("sku", None), reason_has="sku"),
    Case("sku_int_with_bom", "imported", item_a("sku", 8009990001112)),
    Case("name_huge_1mb", "held", item_a("name", HUGE), reason_has="name"),
    Case("name_lone_surrogate", "held", item_a("name", "Glass \ud800 set"), reason_has="name"),
    Case("customer_name_surrogate", "held", cust_a("name", "\udfff"), reason_has="name"),
    Case("name_null", "held", item_a("name", None), reason_has="name"),
    Case("ship_by_garbage", "held", item_a("ship_by_date", "soon"), reason_has="ship_by"),
    Case("nulls_in_optional_fields", "imported", nulls_in_optional),
    Case("extra_keys_everywhere", "imported", extra_keys),
    Case("fulfillment_id_int", "imported", item_a("fulfillment_lineitem_id", 1302200901)),
    Case("same_orderid_other_address", "imported", other_address_b),
    # --- the envelope and the page counters ---
    Case("html_instead_of_json", "error", pages=protocol_error_bodies(b"<html>Oops</html>")),
    Case("truncated_json", "error", pages=protocol_error_bodies(b'{"meta": {"no_of_pa')),
    Case(
        "invalid_utf8", "error", pages=protocol_error_bodies(b'{"success": true, "x": "\xff\xfe"}')
    ),
    Case("empty_body", "error", pages=protocol_error_bodies(b"")),
    Case("top_level_list", "error", pages=protocol_error_bodies(b"[1, 2, 3]")),
    Case(
        "data_not_list",
        "error",
        pages=protocol_error_bodies(_meta(no_of_items=1, data={"a": 1})),
    ),
    Case("meta_missing", "error", pages=protocol_error_bodies(b'{"data": [], "success": true}')),
    Case("meta_negative", "error", pages=protocol_error_bodies(_meta(no_of_pages=-1))),
    Case("meta_strings", "error", pages=protocol_error_bodies(_meta(no_of_items="5"))),
    Case("success_false_on_read", "error", pages=pages_business_refusal),
    Case("data_with_non_objects", "imported", pages=pages_non_objects),
    Case("same_line_on_two_pages", "imported", pages=pages_dup_line_on_two_pages),
    Case("no_of_pages_too_high", "imported", pages=pages_too_high),
    Case("no_of_pages_changing", "imported", pages=pages_changing),
    Case("empty_page_in_the_middle", "imported", pages=pages_empty_middle),
    Case("no_of_pages_too_low", "imported", pages=pages_too_low),
]


@pytest.mark.sqlite_only  # counts the corpus: no ledger
def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_payload(case: Case, tmp_path: Path) -> None:
    state = SimState()
    # Frozen just after the orders were placed, so no auto-cancel sweeps them away.
    state.set_clock(ORDER_DATE + timedelta(hours=2))
    state.add_account(SUPPLIER, TOKEN, region="US", merchant_level=5)
    records = base_records()
    state.seed_records(SUPPLIER, list(records.values()))
    pages = case.pages(records) if case.pages else []
    if case.mutate:
        case.mutate(records)  # the simulator serves these very dicts

    app = create_app(state)
    app.wsgi_app = Scripted(app.wsgi_app, pages)  # type: ignore[method-assign]
    rig = make_rig(tmp_path / "host.sqlite3", StepClock(state.clock.now()))
    account = make_account(
        name="us",
        supplier_id=SUPPLIER,
        token=TOKEN,
        base_url=BASE_URL,
        data_dir=tmp_path / "data",
        timeout_seconds=5,
        backoff_seconds=0.0,
    )
    errors: list[ChannelError] = []
    stored_after: list[set[int]] = []
    try:
        with InProcessTransport(app, BASE_URL):
            for _ in range(4):
                try:
                    rig.host.sync(account)
                except ChannelError as exc:  # anything else fails the test
                    errors.append(exc)
                stored_after.append(_stored_ids(rig, account.name))
            held = rig.host.facade.held_lines(account=account)
    finally:
        rig.close()

    good_ids = {lid for lids in GOOD.values() for lid in lids}
    victim = {VA, VB}
    for seen in stored_after:
        # Never half an order: the victim's lines are in the host together or not at all.
        assert seen & victim in (set(), victim) or case.extra.get("split"), (case.name, seen)
    final = stored_after[-1]
    assert good_ids <= final, case.name
    for exc in errors:
        assert TOKEN not in str(exc)
        assert "get_orders" in str(exc), str(exc)

    if case.expect == "imported":
        assert victim <= final, case.name
        assert not [h for h in held if h.ci_lineitemid in victim], held
        assert not errors, [str(e) for e in errors]
    elif case.expect == "held":
        assert not (final & set(case.held_ids)), case.name
        held_victims = {h.ci_lineitemid: h.reason for h in held if h.ci_lineitemid in victim}
        assert set(case.held_ids) <= set(held_victims), (case.name, held)
        assert all(held_victims.values())
        if case.reason_has:
            assert any(case.reason_has in r for r in held_victims.values()), held_victims
        if not case.extra.get("split"):
            assert not (final & victim)
    elif case.expect == "problem":
        assert VB in final
        problems = [h.reason for h in held if h.ci_lineitemid is None]
        assert any(case.reason_has in r for r in problems), held
    else:
        assert case.expect == "error"
        assert errors, case.name
        assert stored_after[0] == set(), "a failed read must store nothing"
        assert victim <= final


def _stored_ids(rig: Any, account: str) -> set[int]:
    return {
        lid
        for lid in (*[x for v in GOOD.values() for x in v], VA, VB)
        if rig.host.store.line(account, lid)
    }


# --- generated payloads ------------------------------------------------------------------

_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "NaN", "1e999", "03/04/2024 09:15", "13/99/2024 99:99PM UTC", "\ud800"]),
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
_PATHS = [
    ("orderid",),
    ("date",),
    ("customer",),
    ("customer", "name"),
    ("customer", "address1"),
    ("customer", "billing_address"),
    ("amount",),
    ("amount", "total"),
    ("shipping",),
    ("line_items",),
    ("line_items", 0),
    ("line_items", 0, "ci_lineitemid"),
    ("line_items", 0, "quantity"),
    ("line_items", 0, "unit_price"),
    ("line_items", 0, "sku"),
    ("line_items", 0, "bom_sku"),
    ("line_items", 0, "name"),
    ("line_items", 0, "ship_by_date"),
    ("line_items", 0, "status"),
    ("line_items", 0, "fulfillment_lineitem_id"),
]


@st.composite
def mutated_records(draw: st.DrawFn) -> Any:
    record: Any = make_record("7001", 701)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(_PATHS))
        target: Any = record
        try:
            for key in path[:-1]:
                target = target[key]
            if draw(st.booleans()) and isinstance(target, dict):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = draw(_VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed the parent: fine, keep going
    if draw(st.integers(min_value=0, max_value=20)) == 0:
        return draw(_VALUES)  # not even an object
    return record


@pytest.mark.sqlite_only  # parses records only: no ledger
@settings(max_examples=300, deadline=None)
@given(raw=mutated_records())
def test_parse_record_never_raises(raw: Any) -> None:
    result = parse_record(raw)
    assert isinstance(result, ParsedRecord | RecordProblem)
    if isinstance(result, RecordProblem):
        assert result.reason


GOOD_LID = 987_654_321_987


class _FakePages:
    def __init__(self, records: list[Any]) -> None:
        self.records = records


class _ListClient:
    """The importer's view of CI: one listing of the given records; acks accepted."""

    def __init__(self, records: list[Any]) -> None:
        self.records = records
        self.acked: list[int] = []

    def fetch_all(self, window: Any = None) -> list[_FakePages]:
        pages = math.ceil(len(self.records) / 250) or 1
        return [_FakePages(self.records[i * 250 : (i + 1) * 250]) for i in range(pages)]

    def mark_exported(self, ci_lineitemids: Any) -> None:
        self.acked.extend(ci_lineitemids)

    def tracking_notification(self, items: Any) -> None:
        pass

    def lineitem_tracking_notification(self, items: Any) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.sqlite_only  # per example a new data_dir; on PostgreSQL one schema per name
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raws=st.lists(mutated_records(), min_size=1, max_size=4))
def test_importer_never_raises_on_generated_payloads(raws: list[Any], tmp_path: Path) -> None:
    from connector.plugin import GrouponPlugin

    good = make_record("GOOD-8001-ZZ", GOOD_LID)
    client = _ListClient([*raws, good])
    plugin = GrouponPlugin(client_factory=lambda a: client, clock=lambda: datetime.now(UTC))
    data_dir = tmp_path / uuid.uuid4().hex
    account = make_account(
        name="gen", supplier_id=SUPPLIER, token=TOKEN, base_url=BASE_URL, data_dir=data_dir
    )
    try:
        batch = plugin.oms_import_orders(account=account)
        assert batch is not None
        orders = {o.orderid: o for o in batch.orders}
        # The good order always comes through, whole.
        assert "GOOD-8001-ZZ" in orders
        assert orders["GOOD-8001-ZZ"].ci_lineitemids == (GOOD_LID,)
        for order in batch.orders:
            assert order.lines
        held = plugin.oms_held_lines(account=account)
        assert held is not None
        assert all(h.reason for h in held)
    finally:
        plugin.close()
