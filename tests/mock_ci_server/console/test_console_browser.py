"""The simulator console in a real headless Chromium (see tests/browser.py).

Each test drives pages as a tester would, checks what the page shows and what the simulator
state became, and writes a screenshot under its tmp dir.
"""

from __future__ import annotations

import csv
from pathlib import Path

import requests

from mock_ci_server.state import LineQuery
from tests.browser import Browser
from tests.mock_ci_server.console.conftest import OTHER, SUPPLIER, TOKEN, Served


def _open(browser: Browser, served: Served, path: str) -> None:
    browser.base_url = served.url
    browser.open(path)


def test_root_lands_on_accounts_with_counts(browser: Browser, served: Served) -> None:
    _open(browser, served, "/")
    assert browser.driver.current_url.endswith("/_sim/ui/")
    rows = browser.all("#accounts tbody tr[data-supplier]")
    assert [r.get_attribute("data-supplier") for r in rows] == [SUPPLIER, OTHER]
    first = rows[0].text
    lines = served.state.status_counts()[SUPPLIER]["lines"]
    assert "Acme Home" in first
    assert str(lines) in first
    assert TOKEN not in browser.driver.page_source
    assert browser.screenshot("accounts").stat().st_size > 10_000
    assert browser.console_errors() == []


def test_search_by_customer_and_status_then_page(browser: Browser, served: Served) -> None:
    _open(browser, served, f"/_sim/ui/lines?account={SUPPLIER}")
    total = served.state.status_counts()[SUPPLIER]["lines"]
    assert f"{total:,} line(s)" in browser.text("#total")
    assert len(browser.all("#lines tbody tr")) == 50
    browser.submit("a[rel=next]")
    assert "page 2 of" in browser.text("#total")
    expected, _ = served.state.find_lines(SUPPLIER, offset=50, limit=50)
    first_on_page_two = served.state.find_lines(SUPPLIER, offset=50, limit=1)[1][0]
    assert str(first_on_page_two["ci_lineitemid"]) in browser.all("#lines tbody tr")[0].text
    assert expected > 50

    customer = first_on_page_two["customer"].split()[-1]
    browser.fill("input[name=customer]", customer.lower())
    browser.submit("#search button")
    want, _ = served.state.find_lines(SUPPLIER, query=LineQuery(customer=customer))
    assert f"{want:,} line(s)" in browser.text("#total")
    for row in browser.all("#lines tbody tr"):
        assert customer in row.text

    orderid = first_on_page_two["orderid"]
    browser.open(f"/_sim/ui/lines?q={orderid}")
    rows = browser.all("#lines tbody tr")
    assert rows
    assert all(orderid in r.text for r in rows)
    browser.screenshot("lines-search")


def test_cancel_two_lines_with_a_reason(browser: Browser, served: Served) -> None:
    _open(browser, served, f"/_sim/ui/lines?account={SUPPLIER}&status=open")
    boxes = browser.all("#lines input[name=ids]")[:2]
    ids = [int(b.get_attribute("value") or 0) for b in boxes]
    for box in boxes:
        box.click()
    browser.fill("input[name=reason]", "customer asked by phone")
    browser.submit("#cancel-selected")
    assert "cancelled 2 line(s): customer asked by phone" in browser.text(".flash.ok")
    for line_id in ids:
        line = served.state.line(line_id)
        assert line is not None
        assert line.status == "cancelled"
        assert line.cancel_reason == (
            "cancelled by Groupon customer service: customer asked by phone"
        )
    browser.screenshot("cancelled")

    browser.open(f"/_sim/ui/lines/{ids[0]}")
    assert "customer asked by phone" in browser.text("#line-state")


def test_cancel_without_reason_is_refused_by_the_page(browser: Browser, served: Served) -> None:
    _open(browser, served, f"/_sim/ui/lines?account={SUPPLIER}&status=open")
    box = browser.all("#lines input[name=ids]")[0]
    line_id = int(box.get_attribute("value") or 0)
    box.click()
    browser.css("#cancel-selected").click()  # the required reason stops the submit
    missing = browser.driver.execute_script(
        "return document.querySelector('#lines-form input[name=reason]').validity.valueMissing"
    )
    assert missing is True
    assert browser.all("#lines input[name=ids]")[0].is_selected()  # still the same page
    browser.screenshot("cancel-needs-reason")
    line = served.state.line(line_id)
    assert line is not None
    assert line.status == "open"


def test_request_log_shows_new_calls_live_with_token_masked(
    browser: Browser, served: Served
) -> None:
    _open(browser, served, "/_sim/ui/requests")
    assert browser.all("#no-requests")
    answer = requests.get(
        f"{served.url}/api/v4/get_orders",
        params={"supplier_id": SUPPLIER, "token": TOKEN, "page": 2},
        timeout=10,
    )
    assert answer.status_code == 200
    requests.get(
        f"{served.url}/api/v4/get_orders",
        params={"supplier_id": SUPPLIER, "token": "wrong-token-xyz"},
        timeout=10,
    )
    text = browser.wait_text("· false", "#requests tbody")  # appears without a reload
    rows = browser.all("#requests tbody tr")
    assert len(rows) == 2
    assert "/api/v4/get_orders" in text
    assert "page=2" in text
    assert "token=********" in text
    assert TOKEN not in browser.driver.page_source
    assert "wrong-token-xyz" not in browser.driver.page_source
    assert "fail" in (rows[0].get_attribute("class") or "")  # bad credentials, newest first
    browser.screenshot("request-log")
    assert browser.console_errors() == []


def test_upload_tracking_file_ships_a_line(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    _total, [row] = served.state.find_lines(SUPPLIER, query=LineQuery(status="open"), limit=1)
    upload = tmp_path / "tracking.csv"
    with upload.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["orderid", "ci_lineitemid", "quantity", "carrier", "tracking"])
        writer.writerow([row["orderid"], row["ci_lineitemid"], "", "ups", "1Z999AA10123456784"])
    _open(browser, served, "/_sim/ui/files")
    browser.css("#import-form input[type=file]").send_keys(str(upload))
    browser.submit("#import-form button")
    assert "tracking.csv: 1 tracking row(s) imported" in browser.text(".flash.ok")
    line = served.state.line(row["ci_lineitemid"])
    assert line is not None
    assert line.status == "shipped"
    browser.screenshot("upload-ok")

    bad = tmp_path / "bad.csv"
    bad.write_text("ci_lineitemid,carrier,tracking\n999,ups,1Z999AA10123456784\n")
    browser.css("#import-form input[type=file]").send_keys(str(bad))
    browser.submit("#import-form button")
    assert "row 2" in browser.text(".flash.bad")


def test_levers_move_clock_set_faults_and_seed(browser: Browser, served: Served) -> None:
    _open(browser, served, "/_sim/ui/levers")
    open_before = served.state.status_counts()[SUPPLIER]["open"]
    browser.fill("#advance-form input[name=amount]", "12")
    browser.submit("#advance-form button")
    flash = browser.text(".flash.ok")
    assert "clock now 2024-03-16" in flash
    assert "auto-cancelled" in flash
    assert served.state.status_counts()[SUPPLIER]["open"] < open_before

    browser.fill(
        "#faults-form textarea",
        '[{"method": "GET", "path": "/api/*/get_orders", "status": 503, "count": 1}]',
    )
    browser.submit("#faults-form button")
    assert "1 fault rule(s) active" in browser.text(".flash.ok")
    assert "status 503" in browser.text("#rules")
    answer = requests.get(
        f"{served.url}/api/v4/get_orders",
        params={"supplier_id": SUPPLIER, "token": TOKEN},
        timeout=10,
    )
    assert answer.status_code == 503

    browser.fill("#faults-form textarea", "[{not json")
    browser.submit("#faults-form button")
    assert "rules: not JSON" in browser.text(".flash.bad")

    lines_before = served.state.status_counts()[OTHER]["lines"]
    browser.css(f"#seed-form select[name=account] option[value='{OTHER}']").click()
    browser.fill("#seed-form input[name=orders]", "5")
    browser.fill("#seed-form input[name=lines_max]", "1")
    browser.submit("#seed-form button")
    assert f"seeded 5 order(s), 5 line(s) for {OTHER}" in browser.text(".flash.ok")
    assert served.state.status_counts()[OTHER]["lines"] == lines_before + 5
    browser.screenshot("levers")


def test_suspend_and_reinstate_from_accounts(browser: Browser, served: Served) -> None:
    _open(browser, served, "/_sim/ui/")
    row = f"#accounts tr[data-supplier='{OTHER}']"
    browser.fill(f"{row} input[name=reason]", "tester check")
    browser.submit(f"{row} button")
    assert "suspended" in browser.text(row)
    assert served.state.accounts()[1]["suspended"] is True
    browser.screenshot("suspended")
    browser.submit(f"{row} button")
    assert served.state.accounts()[1]["suspended"] is False


def test_swagger_ui_renders_the_local_spec(browser: Browser, served: Served) -> None:
    _open(browser, served, "/_sim/ui/api/")
    title = browser.wait_text("CommerceInterface", ".swagger-ui .info")
    assert title
    browser.wait_text("get_orders", "#swagger-ui")
    scripts = [s.get_attribute("src") or "" for s in browser.all("script")]
    assert scripts
    assert all(s.startswith(served.url) for s in scripts)
    browser.screenshot("swagger")
    assert browser.console_errors() == []
