"""One headless-Chromium helper for every browser test (simulator console, operator dashboard).

Drives Debian's ``chromium`` through ``chromium-driver`` with selenium. The driver path is
given explicitly so Selenium Manager never tries to download a browser or a driver (CI reaches
no host but the package registries). ``make test`` installs both packages when it runs as root
with apt-get; anywhere else the browser tests skip with :data:`INSTALL_HINT`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = (
    "browser tests need Debian's chromium and chromium-driver "
    f"({CHROMIUM}, {CHROMEDRIVER}): run `make test` as root (it installs them) or "
    "`sudo apt-get install chromium chromium-driver`"
)
# Flags that work as root in a container with no display, GPU or network but loopback.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
WINDOW = (1280, 900)
WAIT_SECONDS = 15.0


def unavailable_reason() -> str | None:
    """Why no browser test can run here (None when chromium, its driver and selenium exist)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{', '.join(missing)} missing; {INSTALL_HINT}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


class Browser:
    """A thin layer over a selenium driver: a base URL, waits, and screenshots to a folder."""

    def __init__(self, driver: WebDriver, shots: Path) -> None:
        self.driver = driver
        self.shots = shots
        self.base_url = ""

    def open(self, path: str) -> None:
        """Load ``base_url + path`` and wait until the document is complete."""
        self.driver.get(self.base_url + path)
        self.wait_ready()

    def wait_ready(self) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, WAIT_SECONDS).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )

    def css(self, selector: str) -> WebElement:
        """The first element matching ``selector`` (waits for it to appear)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        element: WebElement = WebDriverWait(self.driver, WAIT_SECONDS).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, selector))
        )
        return element

    def all(self, selector: str) -> list[WebElement]:
        """Every element matching ``selector`` now (no wait)."""
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def text(self, selector: str = "body") -> str:
        return self.css(selector).text

    def wait_text(self, needle: str, selector: str = "body") -> str:
        """Wait until ``needle`` shows in the element's text (e.g. after htmx swapped it)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, WAIT_SECONDS).until(
            lambda d: needle in d.find_element(By.CSS_SELECTOR, selector).text
        )
        return self.text(selector)

    def fill(self, selector: str, value: str) -> None:
        element = self.css(selector)
        element.clear()
        element.send_keys(value)

    def submit(self, selector: str) -> None:
        """Click a submit button and wait for the next page (the old one must go first:
        right after the click the old document still reads "complete")."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        old_page = self.css("html")
        self.css(selector).click()

        def gone(_driver: WebDriver) -> bool:
            try:
                old_page.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException as exc:
                # Asked mid-navigation, chromedriver may answer "unhandled inspector error"
                # instead of "stale element": the old document is going, ask again.
                if "inspector error" not in str(exc):
                    raise
            return False

        WebDriverWait(self.driver, WAIT_SECONDS).until(gone)
        self.wait_ready()

    def screenshot(self, name: str) -> Path:
        """Write ``<name>.png`` of the whole page into the test's folder and return its path."""
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        height = int(self.driver.execute_script("return document.body.scrollHeight") or 0)
        self.driver.set_window_size(WINDOW[0], max(WINDOW[1], min(height + 40, 4000)))
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(*WINDOW)
        return path

    def console_errors(self) -> list[str]:
        """Severe entries of the browser console (JS errors, failed loads)."""
        try:
            entries = self.driver.get_log("browser")
        except Exception:  # not every driver keeps the log
            return []
        return [str(e.get("message")) for e in entries if e.get("level") == "SEVERE"]


@contextmanager
def chromium(workdir: Path) -> Iterator[Browser]:
    """A fresh headless Chromium (own profile under ``workdir``); screenshots go to
    ``workdir/screenshots``. Quits the browser on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = workdir / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(workdir / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(30)
        yield Browser(driver, workdir / "screenshots")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


__all__ = ["CHROMEDRIVER", "CHROMIUM", "INSTALL_HINT", "Browser", "chromium", "unavailable_reason"]
