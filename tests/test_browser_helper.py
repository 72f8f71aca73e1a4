"""The shared headless-browser helper itself: a real Chromium loads a page and screenshots it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.browser import INSTALL_HINT, Browser, unavailable_reason

PAGE = b"<!doctype html><title>probe</title><h1 id='h'>hello from 127.0.0.1</h1>"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_install_hint_says_how_to_install() -> None:
    assert "apt-get install chromium chromium-driver" in INSTALL_HINT


def test_unavailable_reason_is_none_or_names_the_fix() -> None:
    reason = unavailable_reason()
    assert reason is None or "chromium" in reason


def test_browser_loads_a_page_and_writes_a_screenshot(browser: Browser, page_url: str) -> None:
    browser.base_url = page_url
    browser.open("/")
    assert browser.text("#h") == "hello from 127.0.0.1"
    assert browser.driver.title == "probe"
    shot = browser.screenshot("probe")
    assert shot.parent.name == "screenshots"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 1000
