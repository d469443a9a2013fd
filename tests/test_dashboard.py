"""The built-in dashboard in a real headless Chromium (Debian's chromium + chromium-driver,
driven with Selenium): sign in, pick bucket and event, the histogram and the newest events,
"load more", the live tail; no console error, no request to another origin, the token in no
URL. Screenshots of the main views go to docs/ when EVENTSAPI_SCREENSHOTS is set."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.service import Service

pytestmark = [pytest.mark.slow, pytest.mark.browser]
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()) or shutil.which("chromedriver") is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are required in CI (scripts/test.sh installs them)")
        pytest.skip("apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,900",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=DriverService(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_dashboard_shows_events_distribution_and_live_tail(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    service = Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0"})
    service.start()
    try:
        token = service.token("--sub", "ops", "--bucket", "*", "--scope", "events:read events:write")
        now = int(time.time() * 1000)
        events = [
            {"event_name": "deploy", "app_name": f"app-{i % 2}", "server_name": "web-1", "at": now - i * 600_000,
             "id": f"d{i:03d}", "data": {"rev": i, "note": "x" * 120}}
            for i in range(30)
        ] + [{"event_name": "restart", "app_name": "app-0", "at": now - 1000, "id": "r1"}]  # fmt: skip
        assert service.call("POST", "/api/bucket/prod/data/events/ingest", events, token)[0] == 200
        base = service.url
        wait = WebDriverWait(browser, 15)

        def by(testid: str) -> Any:
            return browser.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')

        def rows() -> list[str]:
            return [
                r.get_attribute("data-event-id") for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-event-id]")
            ]

        browser.get(base + "/")
        by("token-input").send_keys(token)
        by("token-submit").click()
        wait.until(lambda d: Select(by("bucket-select")).first_selected_option.get_attribute("value") == "prod")
        wait.until(lambda d: [o.text for o in Select(by("event-select")).options] == ["deploy", "restart"])
        Select(by("event-select")).select_by_visible_text("deploy")
        by("tz-input").clear()
        by("tz-input").send_keys("Europe/Paris\n")
        Select(by("interval-select")).select_by_visible_text("hour")
        wait.until(lambda d: len(rows()) == 20)
        _, stats, _ = service.call(
            "POST", "/api/bucket/prod/data/events/stats",
            {"event_name": "deploy", "interval": "hour", "days": 2, "tz": "Europe/Paris"}, token,
        )  # fmt: skip
        bars = wait.until(
            lambda d: (b := by("histogram").find_elements(By.CSS_SELECTOR, "rect")) and len(b) == len(stats) and b
        )
        assert sum(int(b.get_attribute("data-count")) for b in bars) == 30
        assert rows() == [f"d{i:03d}" for i in range(20)]  # newest first
        if os.environ.get("EVENTSAPI_SCREENSHOTS"):
            browser.save_screenshot(str(DOCS / "dashboard.png"))
        browser.find_element(By.ID, "more").click()
        wait.until(lambda d: len(rows()) == 30)
        assert rows() == [f"d{i:03d}" for i in range(30)]  # paged exactly: no duplicate, no gap

        by("live-toggle").click()
        time.sleep(1.0)  # the stream is open
        live = {"event_name": "deploy", "app_name": "app-9", "id": "live-1", "data": {"hello": "live"}}
        assert service.call("POST", "/api/bucket/prod/data/events/ingest", [live], token)[0] == 200
        wait.until(lambda d: rows()[:1] == ["live-1"])
        assert (
            sum(int(b.get_attribute("data-count")) for b in by("histogram").find_elements(By.CSS_SELECTOR, "rect"))
            == 31
        )
        if os.environ.get("EVENTSAPI_SCREENSHOTS"):
            browser.save_screenshot(str(DOCS / "dashboard-live.png"))

        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []  # no console error
        # An API error shows its problem detail (the browser logs that 400 itself).
        by("tz-input").clear()
        by("tz-input").send_keys("Not/AZone\n")
        wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
        assert "unknown IANA time zone" in browser.find_element(By.ID, "error").text

        urls = []
        for entry in browser.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            url = message["params"].get("request", {}).get("url", "")
            if message["method"] == "Network.requestWillBeSent" and not url.startswith("chrome://"):
                urls.append(url)  # (chrome:// pages are the browser's own new-tab page)
        assert urls and all(u.startswith(base + "/") or u.startswith("data:") for u in urls), urls
        assert not any(token in u for u in urls)
        assert browser.execute_script("return sessionStorage.getItem('eventsapi.token')") == token
        assert token not in browser.execute_script("return document.cookie + localStorage.length")
        # A token the service refuses (401) sends back to sign-in.
        browser.execute_script(
            "sessionStorage.setItem('eventsapi.token', 'expired');"
            "const tz = document.getElementById('tz'); tz.value = 'UTC'; tz.dispatchEvent(new Event('change'))"
        )
        wait.until(lambda d: by("token-input").is_displayed())
        assert browser.execute_script("return sessionStorage.getItem('eventsapi.token')") is None
    finally:
        service.close()
