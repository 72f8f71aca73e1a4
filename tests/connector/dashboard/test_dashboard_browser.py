"""The operator dashboard in a real headless Chromium (shared helper: tests/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from connector.cli import open_facade
from connector.config import load_config
from connector.dashboard.data import DashboardData, collect
from connector.dashboard.server import DashboardServer
from tests.browser import Browser
from tests.connector.dashboard.conftest import TOKEN, Synced


@pytest.fixture
def served(synced: Synced) -> Iterator[tuple[DashboardServer, Synced, datetime]]:
    config = load_config(synced.config)
    facade = open_facade()
    now = synced.sim_now + timedelta(days=1, hours=12)

    def collector(_ignored: datetime | None = None) -> DashboardData:
        return collect(list(config.accounts), config.data_dir, now, facade=facade)

    with DashboardServer(collector, 0) as server:
        yield server, synced, now


def test_dashboard_shows_held_risk_cycle_and_syncs(
    browser: Browser, served: tuple[DashboardServer, Synced, datetime]
) -> None:
    server, synced, now = served
    config = load_config(synced.config)
    data = collect(list(config.accounts), config.data_dir, now, facade=open_facade())
    [account] = data.accounts
    assert account.held_total > 0  # the seed drew unmapped SKUs
    assert account.sla is not None
    assert account.cycle is not None

    browser.base_url = server.url.rstrip("/")
    browser.open("/")
    assert browser.text("#held-total") == f"{account.held_total} held"
    assert browser.text("#risk-total") == f"{len(account.sla.at_risk)} at risk"
    held_rows = browser.all(".held-lines tbody tr")
    assert len(held_rows) == min(account.held_total, 12)
    fixes = browser.text("dl.fixes")
    assert "add a row groupon_sku,host_sku,quantity" in fixes  # the fix, not only the reason
    assert "ci-connector mappings check" in fixes
    dots = browser.all("svg.timeline circle.dot")
    assert len(dots) == len(account.sla.dots)
    assert sum(int(d.get_attribute("data-count") or 0) for d in dots) == len(account.sla.at_risk)
    assert "Projected cap" in browser.text(f"#projection-{account.name}")
    bars = browser.all(".meter .bar > span")
    assert len(bars) == 3  # units, sales, cycle time
    sync_rows = browser.all("#syncs tbody tr")
    assert len(sync_rows) == 2
    assert "503 \u00d71" in sync_rows[0].text  # the newest sync retried once
    page = browser.driver.page_source
    assert TOKEN not in page
    links = [
        e.get_attribute("src") or e.get_attribute("href") or ""
        for e in browser.all("[src], link[href]")
    ]
    assert all(not link.startswith("http") or link.startswith(server.url) for link in links)
    shot = browser.screenshot("dashboard")
    assert shot.stat().st_size > 20_000
    assert browser.console_errors() == []


def test_data_json_matches_the_page(
    browser: Browser, served: tuple[DashboardServer, Synced, datetime]
) -> None:
    import json

    server, _synced, _now = served
    browser.base_url = server.url.rstrip("/")
    browser.open("/")
    held_on_page = int(browser.text("#held-total").split()[0])
    risk_on_page = int(browser.text("#risk-total").split()[0])
    browser.open("/data.json")
    payload = json.loads(browser.text("body"))
    assert payload["held_total"] == held_on_page
    assert payload["at_risk_total"] == risk_on_page
    assert payload["accounts"][0]["name"] == "us"
    assert TOKEN not in json.dumps(payload)
    assert browser.screenshot("data-json").stat().st_size > 0
