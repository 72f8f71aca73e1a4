"""Console pages and actions through Flask's test client (no browser), plus the state queries
behind them."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mock_ci_server.app import create_app
from mock_ci_server.state import LineQuery, SimState, TrackingRequest, UnknownAccountError
from mock_ci_server.uploads import EXPORT_COLUMNS
from tests.mock_ci_server.console.conftest import OTHER, OTHER_TOKEN, SUPPLIER, TOKEN, seeded_state

PAGES = (
    "/_sim/ui/",
    "/_sim/ui/lines",
    f"/_sim/ui/lines?account={SUPPLIER}&status=open&page=2",
    "/_sim/ui/requests",
    "/_sim/ui/requests/rows?after_id=0",
    "/_sim/ui/files",
    "/_sim/ui/levers",
    "/_sim/ui/api/",
)


@pytest.fixture
def state() -> SimState:
    return seeded_state()


@pytest.fixture
def app(state: SimState) -> Flask:
    return create_app(state)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _html(response: Any) -> str:
    return str(response.get_data(as_text=True))


def _flash(response: Any) -> str:
    from urllib.parse import parse_qs, urlsplit

    query = parse_qs(urlsplit(response.headers["Location"]).query)
    return (query.get("msg") or query.get("err") or [""])[0]


# --- pages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_and_never_shows_a_token(client: FlaskClient, path: str) -> None:
    client.get(
        "/api/v4/get_orders", query_string={"supplier_id": SUPPLIER, "token": TOKEN}
    ).get_data()
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert TOKEN not in _html(response)
    assert OTHER_TOKEN not in _html(response)


def test_line_detail_shows_record_and_unknown_line_is_404(
    client: FlaskClient, state: SimState
) -> None:
    _total, [row] = state.find_lines(SUPPLIER, limit=1)
    page = _html(client.get(f"/_sim/ui/lines/{row['ci_lineitemid']}"))
    assert row["orderid"] in page
    assert "&#34;line_items&#34;" in page  # the record as get_orders returns it (escaped)
    missing = client.get("/_sim/ui/lines/1")
    assert missing.status_code == 404
    assert "no line 1" in _html(missing)


def test_root_redirects_to_console(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/_sim/ui/")


def test_console_pages_are_not_in_the_request_log(client: FlaskClient, state: SimState) -> None:
    client.get("/_sim/ui/lines").get_data()
    client.get(
        "/api/v4/get_orders", query_string={"supplier_id": SUPPLIER, "token": TOKEN}
    ).get_data()  # an entry is recorded once the answer was read
    assert [e["path"] for e in state.request_log()] == ["/api/v4/get_orders"]


def test_request_rows_only_newer_than_after_id(client: FlaskClient, state: SimState) -> None:
    for page in (1, 2, 3):
        client.get(
            "/api/v4/get_orders",
            query_string={"supplier_id": SUPPLIER, "token": TOKEN, "page": page},
        ).get_data()
    ids = sorted(e["id"] for e in state.request_log())
    response = client.get(f"/_sim/ui/requests/rows?after_id={ids[0]}")
    assert response.headers["X-Last-Id"] == str(ids[-1])
    html = _html(response)
    assert html.count("<tr") == 2
    assert "page=<b>3</b>" in html
    assert "page=<b>1</b>" not in html
    assert "token=<b>********</b>" in html


def test_request_log_page_without_a_log(app: Flask, state: SimState) -> None:
    state.request_log = None  # type: ignore[assignment, method-assign]  # an older SimState
    page = _html(app.test_client().get("/_sim/ui/requests"))
    assert "keeps no request log" in page


# --- search and paging (SimState.find_lines) --------------------------------------------------


def test_pages_cover_every_line_once_newest_first(state: SimState) -> None:
    total, _ = state.find_lines(SUPPLIER, limit=0)
    seen: list[dict[str, Any]] = []
    for offset in range(0, total, 50):
        _t, rows = state.find_lines(SUPPLIER, offset=offset, limit=50)
        seen += rows
    assert len(seen) == total == state.status_counts()[SUPPLIER]["lines"]
    assert len({r["ci_lineitemid"] for r in seen}) == total
    keys = [r["order_date"] for r in seen]
    assert keys == sorted(keys, reverse=True)


def test_all_accounts_merge_by_order_date(state: SimState) -> None:
    total, rows = state.find_lines(None, limit=10_000)
    counts = state.status_counts()
    assert total == len(rows) == counts[SUPPLIER]["lines"] + counts[OTHER]["lines"]
    assert {r["supplier_id"] for r in rows} == {SUPPLIER, OTHER}
    dates = [r["order_date"] for r in rows]
    assert dates == sorted(dates, reverse=True)


def test_filters(state: SimState) -> None:
    _t, everything = state.find_lines(SUPPLIER, limit=10_000)
    sample = everything[7]
    surname = sample["customer"].split()[-1]
    total, rows = state.find_lines(SUPPLIER, query=LineQuery(customer=surname.upper()), limit=500)
    assert total == sum(surname.lower() in r["customer"].lower() for r in everything)
    assert sample["ci_lineitemid"] in {r["ci_lineitemid"] for r in rows}

    sku = sample["sku"]
    total, rows = state.find_lines(SUPPLIER, query=LineQuery(sku=sku[-6:]), limit=500)
    assert total == sum(sku[-6:] in r["sku"] for r in everything)

    total, rows = state.find_lines(None, query=LineQuery(orderid=sample["orderid"]))
    assert {r["orderid"] for r in rows} == {sample["orderid"]}
    assert total == sum(r["orderid"] == sample["orderid"] for r in everything)

    total, rows = state.find_lines(None, query=LineQuery(line_id=sample["ci_lineitemid"]))
    assert [r["ci_lineitemid"] for r in rows] == [sample["ci_lineitemid"]]
    assert state.find_lines(OTHER, query=LineQuery(line_id=sample["ci_lineitemid"]))[0] == 0

    state.cancel_lines(SUPPLIER, [sample["ci_lineitemid"]], reason="test")
    total, rows = state.find_lines(SUPPLIER, query=LineQuery(status="cancelled"))
    assert [r["ci_lineitemid"] for r in rows] == [sample["ci_lineitemid"]]
    assert rows[0]["cancel_reason"] == "cancelled by Groupon customer service: test"


def test_find_lines_unknown_account(state: SimState) -> None:
    with pytest.raises(UnknownAccountError):
        state.find_lines("nope")


def test_search_by_line_id_falls_back_from_order_id(client: FlaskClient, state: SimState) -> None:
    _total, [row] = state.find_lines(SUPPLIER, limit=1)
    page = _html(client.get(f"/_sim/ui/lines?q={row['ci_lineitemid']}"))
    assert "<strong>1</strong> line(s)" in page
    bad = _html(client.get("/_sim/ui/lines?status=lost"))
    assert "status must be one of" in bad


# --- actions ----------------------------------------------------------------------------------


def test_cancel_refuses_shipped_and_missing_reason(client: FlaskClient, state: SimState) -> None:
    _total, rows = state.find_lines(SUPPLIER, query=LineQuery(status="open"), limit=2)
    line = rows[0]
    state.tracking_notification(
        SUPPLIER,
        TOKEN,
        [
            TrackingRequest(
                index=0,
                carrier="ups",
                tracking="1Z999AA10123456784",
                ci_lineitemid=line["ci_lineitemid"],
            )
        ],
    )
    shipped = client.post(
        "/_sim/ui/lines/cancel", data={"ids": [str(line["ci_lineitemid"])], "reason": "x"}
    )
    assert _flash(shipped) == f"line {line['ci_lineitemid']} is shipped and cannot be cancelled"
    no_reason = client.post("/_sim/ui/lines/cancel", data={"ids": [str(rows[1]["ci_lineitemid"])]})
    assert _flash(no_reason) == "reason is required"
    none = client.post("/_sim/ui/lines/cancel", data={"reason": "x"})
    assert _flash(none) == "tick at least one line to cancel"
    still = state.line(rows[1]["ci_lineitemid"])
    assert still is not None
    assert still.status == "open"


def test_next_must_stay_in_the_console(client: FlaskClient) -> None:
    response = client.post(
        "/_sim/ui/clock", data={"amount": "1", "unit": "hours", "next": "https://evil.test/"}
    )
    assert response.headers["Location"].startswith("/_sim/ui/levers?")


@pytest.mark.parametrize(
    ("path", "form", "message"),
    [
        ("/_sim/ui/clock", {"set": "tomorrow"}, "set must be an ISO date-time"),
        ("/_sim/ui/clock", {"amount": "0"}, "give a date-time to set"),
        ("/_sim/ui/clock", {"amount": "1", "unit": "weeks"}, "unit must be minutes"),
        ("/_sim/ui/faults", {"rules": "{}"}, "rules must be a JSON list"),
        ("/_sim/ui/faults", {"rules": '[{"status": 99}]'}, "status"),
        (
            "/_sim/ui/seed",
            {"account": SUPPLIER, "lines_min": "3", "lines_max": "1"},
            "lines per order: min 3 is larger than max 1",
        ),
        ("/_sim/ui/seed", {"account": SUPPLIER, "orders": "ten"}, "orders must be a whole"),
        ("/_sim/ui/seed", {"account": "nope", "orders": "1"}, "unknown supplier_id 'nope'"),
        ("/_sim/ui/reset", {}, "tick 'yes, forget everything'"),
        ("/_sim/ui/accounts", {"supplier_id": "1"}, "token is required"),
        ("/_sim/ui/accounts", {"supplier_id": "1", "token": "t", "region": "XX"}, "XX"),
    ],
)
def test_bad_forms_name_the_field_and_change_nothing(
    client: FlaskClient, state: SimState, path: str, form: dict[str, str], message: str
) -> None:
    before = (state.clock.now(), state.status_counts(), len(state.accounts()))
    response = client.post(path, data=form)
    assert response.status_code == 303
    assert message in _flash(response)
    assert "err=" in response.headers["Location"]
    assert (state.clock.now(), state.status_counts(), len(state.accounts())) == before


def test_add_account_then_seed_then_reset(client: FlaskClient, state: SimState) -> None:
    added = client.post(
        "/_sim/ui/accounts",
        data={"supplier_id": "777", "token": "NewTok-1234567890", "region": "gb", "name": "UK"},
    )
    assert _flash(added) == "account 777 saved (token kept, never shown)"
    seeded = client.post("/_sim/ui/seed", data={"account": "777", "orders": "4"})
    assert _flash(seeded) == "seeded 4 order(s), 4 line(s) for 777"
    assert "NewTok-1234567890" not in _html(client.get("/_sim/ui/"))
    reset = client.post("/_sim/ui/reset", data={"confirm": "yes"})
    assert "simulator reset" in _flash(reset)
    assert state.accounts() == []


def test_config_switch(client: FlaskClient, app: Flask) -> None:
    from mock_ci_server.app import ERROR_STATUS_CODES

    client.post("/_sim/ui/config", data={"error_status_codes": "1"})
    assert app.config[ERROR_STATUS_CODES] is True
    client.post("/_sim/ui/config", data={})
    assert app.config[ERROR_STATUS_CODES] is False


def test_export_csv_and_xlsx(client: FlaskClient, state: SimState) -> None:
    response = client.get(f"/_sim/ui/export?account={OTHER}&format=csv&status=open")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith('attachment; filename="orders-')
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert len(rows) - 1 == state.status_counts()[OTHER]["open"]
    assert state.status_counts()[OTHER]["exported"] == 0

    marked = client.get(f"/_sim/ui/export?account={OTHER}&format=xlsx&mark_exported=1")
    assert marked.mimetype.endswith("spreadsheetml.sheet")
    assert marked.get_data()[:2] == b"PK"
    assert state.status_counts()[OTHER]["exported"] == state.status_counts()[OTHER]["lines"]

    bad = client.get("/_sim/ui/export?account=nope&format=csv")
    assert bad.status_code == 303
    assert "unknown supplier_id" in _flash(bad)
    assert "format must be csv or xlsx" in _flash(
        client.get(f"/_sim/ui/export?account={OTHER}&format=pdf")
    )


def test_import_refusal_names_the_row_and_applies_nothing(
    client: FlaskClient, state: SimState
) -> None:
    _total, rows = state.find_lines(SUPPLIER, query=LineQuery(status="open"), limit=2)
    body = (
        "ci_lineitemid,carrier,tracking\n"
        f"{rows[0]['ci_lineitemid']},ups,1Z999AA10123456784\n"
        f"{rows[1]['ci_lineitemid']},pigeon,XYZ\n"
    )
    response = client.post(
        "/_sim/ui/import",
        data={"account": SUPPLIER, "file": (io.BytesIO(body.encode()), "t.csv")},
        content_type="multipart/form-data",
    )
    message = _flash(response)
    assert "row 3" in message
    assert "nothing was imported" in message
    line = state.line(rows[0]["ci_lineitemid"])
    assert line is not None
    assert line.status == "open"
    none = client.post("/_sim/ui/import", data={"account": SUPPLIER})
    assert _flash(none) == "choose a .csv or .xlsx file to upload"


def test_search_lists_follow_new_lines_and_reset(state: SimState) -> None:
    def brute(customer: str) -> int:
        _t, every = state.find_lines(SUPPLIER, limit=100_000)
        return sum(customer in r["customer"].lower() for r in every)

    _t, [row] = state.find_lines(SUPPLIER, limit=1)
    name = row["customer"].split()[0].lower()
    before, _ = state.find_lines(SUPPLIER, query=LineQuery(customer=name))
    assert before == brute(name)
    state.seed(SUPPLIER, orders=40, seed=99)
    after, _ = state.find_lines(SUPPLIER, query=LineQuery(customer=name))
    assert after == brute(name)
    assert after > before
    state.reset()
    state.add_account(SUPPLIER, TOKEN)
    assert state.find_lines(SUPPLIER, query=LineQuery(customer=name)) == (0, [])


def test_request_log_filters_and_clear(client: FlaskClient, state: SimState) -> None:
    client.get(
        "/api/v4/get_orders", query_string={"supplier_id": SUPPLIER, "token": TOKEN}
    ).get_data()
    client.post(
        "/api/v4/mark_exported",
        data={"supplier_id": OTHER, "token": OTHER_TOKEN, "ci_lineitem_ids": "[1]"},
    ).get_data()
    only_mark = _html(client.get("/_sim/ui/requests?path=mark_exported"))
    assert "/api/v4/mark_exported" in only_mark
    assert "/api/v4/get_orders</code>" not in only_mark
    only_other = _html(client.get(f"/_sim/ui/requests?account={OTHER}"))
    assert only_other.count('<tr data-id="') == 1
    cleared = client.post("/_sim/ui/requests/clear")
    assert _flash(cleared) == "request log cleared"
    assert state.request_log() == []
