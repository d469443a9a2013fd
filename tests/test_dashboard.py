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
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
            lambda d: (
                (b := by("histogram").find_elements(By.CSS_SELECTOR, "rect[data-count]")) and len(b) == len(stats) and b
            )
        )
        assert sum(int(b.get_attribute("data-count")) for b in bars) == 30
        assert rows() == [f"d{i:03d}" for i in range(20)]  # newest first
        browser.find_element(By.ID, "more").click()
        wait.until(lambda d: len(rows()) == 30)
        assert rows() == [f"d{i:03d}" for i in range(30)]  # paged exactly: no duplicate, no gap

        by("live-toggle").click()
        time.sleep(1.0)  # the stream is open
        live = {"event_name": "deploy", "app_name": "app-9", "id": "live-1", "data": {"hello": "live"}}
        assert service.call("POST", "/api/bucket/prod/data/events/ingest", [live], token)[0] == 200
        wait.until(lambda d: rows()[:1] == ["live-1"])
        assert (
            sum(
                int(b.get_attribute("data-count"))
                for b in by("histogram").find_elements(By.CSS_SELECTOR, "rect[data-count]")
            )
            == 31
        )

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


def week_of_events(now: int) -> list[dict[str, Any]]:
    """Thousands of events over a week: three apps of unequal volume, four servers, one
    without a server."""
    events = []
    for i in range(3000):
        app = ["api", "api", "api", "worker", "worker", "cron"][i % 6]
        server = ["web-1", "web-2", "batch", ""][i % 4]
        event: dict[str, Any] = {"event_name": "deploy", "app_name": app, "at": now - (i * 7 * 86_400_000) // 3000 - 1}
        if server:
            event["server_name"] = server
        event["id"] = f"w{i:05d}"
        event["data"] = {"i": i}
        events.append(event)
    return events


def test_dashboard_axes_breakdown_zoom_live_and_the_fragment(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{
        "name": "deploy-storm", "bucket": "prod", "event_name": "deploy", "threshold": 1000, "window": "1h",
        "webhook": "http://127.0.0.1:9/never-called",
    }]}))  # fmt: skip
    service = Service(
        tmp_path,
        {"EVENTSAPI_ACCESS_LOG": "0", "EVENTSAPI_ALERT_RULES": str(rules), "EVENTSAPI_ALERT_ALLOW_PRIVATE": "1"},
    )
    service.start()
    try:
        token = service.token("--sub", "ops", "--bucket", "*", "--scope", "events:read events:write")
        now = int(time.time() * 1000)
        events = week_of_events(now)
        assert service.call("POST", "/api/bucket/prod/data/events/ingest", events, token)[0] == 200
        wait = WebDriverWait(browser, 20)

        def by(testid: str) -> Any:
            return browser.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')

        # The chart and its legend redraw (live events, the alert state's refresh): read what
        # they show in one script each, never from elements a redraw may have replaced.
        def texts(testid: str) -> list[str]:
            return browser.execute_script(  # type: ignore[no-any-return]
                'return [...document.querySelectorAll(`[data-testid="${arguments[0]}"]`)]'
                ".map((e) => e.innerText ?? e.textContent)",  # SVG text has no innerText
                testid,
            )

        def bars() -> list[dict[str, Any]]:
            return browser.execute_script(  # type: ignore[no-any-return]
                "return [...document.querySelectorAll('#histogram rect[data-count]')].map((b) => ({"
                "count: Number(b.dataset.count), series: b.dataset.series, height: Number(b.getAttribute('height')),"
                "start: Number(b.dataset.start)}))"
            )

        def counted() -> int:
            return sum(b["count"] for b in bars())

        def row_times() -> list[int]:
            return [
                int(r.get_attribute("data-at")) for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-event-id]")
            ]

        fragment = "#bucket=prod&event=deploy&interval=hour&days=7&tz=Asia%2FKolkata"
        browser.get(service.url + "/" + fragment)
        assert by("signin").is_displayed()
        by("token-input").send_keys(token)
        by("token-submit").click()
        wait.until(lambda d: bars() and counted() == 3000)
        assert not by("signin").is_displayed()  # signed in: the sign-in section is gone
        assert Select(by("interval-select")).first_selected_option.get_attribute("value") == "hour"
        assert by("tz-input").get_attribute("value") == "Asia/Kolkata"

        # Axes: a zero and round steps on y; x ticks on local boundaries of the chosen zone.
        y_labels = texts("y-tick")
        assert len(y_labels) >= 3 and y_labels[0] == "0", y_labels
        x_labels = texts("x-tick")
        assert len(x_labels) >= 3, x_labels
        _, stats, _ = service.call(
            "POST", "/api/bucket/prod/data/events/stats",
            {"event_name": "deploy", "interval": "hour", "days": 7, "tz": "Asia/Kolkata"}, token,
        )  # fmt: skip
        zone = ZoneInfo("Asia/Kolkata")
        local = [datetime.fromtimestamp(t / 1000, zone) for t, _ in stats]
        possible = {f"{d.day} {d.strftime('%b')}" for d in local} | {d.strftime("%H:%M") for d in local}
        assert all(label in possible for label in x_labels), (x_labels, sorted(possible)[:5])
        title = by("chart-title").text
        assert "deploy" in title and "3,000 events" in title and "Asia/Kolkata" in title and "per hour" in title
        assert by("row-count").text == "20 newest of 3,000 in the last 7 days"
        alert = by("alert-item").text  # the bucket's alert rule and its state
        assert alert.startswith("deploy-storm: ok") and "of 1,000 in 1h" in alert, alert

        # Broken down by app: one legend item per series, stacked bars that sum to the same.
        Select(by("group-select")).select_by_value("app_name")
        wait.until(lambda d: len(texts("legend-item")) == 3)
        assert texts("legend-item") == ["api: 1,500", "worker: 1,000", "cron: 500"]
        assert counted() == 3000
        assert {b["series"] for b in bars()} == {"api", "worker", "cron"}
        if os.environ.get("EVENTSAPI_SCREENSHOTS"):
            browser.save_screenshot(str(DOCS / "dashboard.png"))

        # Live: the current window's bar grows, and the title's total.
        by("live-toggle").click()
        wait.until(lambda d: by("live-state").get_attribute("data-state") == "connected")

        def current_api_height() -> float:
            current = [b for b in bars() if b["series"] == "api"]
            return float(current[-1]["height"]) if current else 0.0

        before = current_api_height()
        fresh = [
            {"event_name": "deploy", "app_name": "api", "server_name": "web-1", "id": f"live-{i}"} for i in range(40)
        ]
        assert service.call("POST", "/api/bucket/prod/data/events/ingest", fresh, token)[0] == 200
        wait.until(lambda d: counted() == 3040)
        assert current_api_height() > before
        assert "3,040 events" in by("chart-title").text
        assert (
            browser.find_elements(By.CSS_SELECTOR, "tr[data-event-id]")[0]
            .get_attribute("data-event-id")
            .startswith("live-")
        )
        if os.environ.get("EVENTSAPI_SCREENSHOTS"):
            browser.save_screenshot(str(DOCS / "dashboard-live.png"))

        # A reload with the fragment reopens the same view (grouped, live).
        assert "group=app_name" in browser.current_url and token not in browser.current_url
        browser.refresh()
        wait.until(lambda d: len(texts("legend-item")) == 3 and counted() == 3040)
        assert Select(by("group-select")).first_selected_option.get_attribute("value") == "app_name"
        wait.until(lambda d: by("live-state").get_attribute("data-state") == "connected")

        # Zoom: drag across the middle of the chart; the table lists that range only.
        overlay = by("histogram").find_element(By.CSS_SELECTOR, "rect.overlay")
        width = overlay.size["width"]
        ActionChains(browser).move_to_element_with_offset(overlay, -width // 6, 0).click_and_hold().move_by_offset(
            width // 3, 0
        ).release().perform()
        wait.until(lambda d: "between" in by("row-count").text)
        start, end = (int(x) for x in browser.execute_script(
            "const q = new URLSearchParams(location.hash.slice(1)); return [q.get('start'), q.get('end')]"
        ))  # fmt: skip
        times = row_times()
        assert times and all(start <= t < end for t in times)
        expected = sum(1 for e in events if start <= e["at"] < end)
        assert f"of {expected:,} between" in by("row-count").text
        if os.environ.get("EVENTSAPI_SCREENSHOTS"):
            browser.save_screenshot(str(DOCS / "dashboard-zoomed.png"))
        browser.find_element(By.ID, "unzoom").click()
        wait.until(lambda d: "in the last 7 days" in by("row-count").text)

        # An empty range says so.
        Select(by("group-select")).select_by_value("")
        by("days-input").clear()
        by("days-input").send_keys("0.01\n")
        browser.execute_script(
            "const s = document.getElementById('server'); s.value = 'nowhere'; s.dispatchEvent(new Event('change'))"
        )
        wait.until(lambda d: by("empty-state").is_displayed())
        assert "No events" in by("empty-state").text

        # At 414 px the page does not scroll sideways.
        Select(by("group-select")).select_by_value("server_name")
        browser.execute_script(
            "const s = document.getElementById('server'); s.value = ''; s.dispatchEvent(new Event('change'))"
        )
        by("days-input").clear()
        by("days-input").send_keys("7\n")
        browser.set_window_size(414, 900)
        wait.until(lambda d: len(texts("legend-item")) == 4)
        time.sleep(0.5)  # the chart redraws for the new width
        assert browser.execute_script("return document.documentElement.scrollWidth") <= browser.execute_script(
            "return document.documentElement.clientWidth"
        )
        if os.environ.get("EVENTSAPI_SCREENSHOTS"):
            browser.save_screenshot(str(DOCS / "dashboard-narrow.png"))
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        service.close()


def test_live_feed_reconnects_after_a_restart_and_misses_nothing(browser: Any, tmp_path: Path) -> None:
    """The service stops (SIGTERM) and starts again on the same port while the page follows
    live: the page says it is reconnecting, comes back with Last-Event-ID, and the event
    ingested before it reconnected appears once; so do the ones before and after."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    service = Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0"})
    service.start()
    try:
        token = service.token("--sub", "ops", "--bucket", "*", "--scope", "events:read events:write")
        now = int(time.time() * 1000)
        first = [{"event_name": "deploy", "app_name": "api", "at": now - 60_000, "id": "old"}]
        assert service.call("POST", "/api/bucket/prod/data/events/ingest", first, token)[0] == 200
        wait = WebDriverWait(browser, 30)

        def by(testid: str) -> Any:
            return browser.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')

        def state() -> str:
            return str(browser.execute_script("return document.getElementById('live-state').dataset.state"))

        def rows() -> list[str]:
            return browser.execute_script(  # type: ignore[no-any-return]
                "return [...document.querySelectorAll('tr[data-event-id]')].map((r) => r.dataset.eventId)"
            )

        browser.get(service.url + "/#bucket=prod&event=deploy&interval=minute&days=1&live=1")
        by("token-input").send_keys(token)
        by("token-submit").click()
        wait.until(lambda d: state() == "connected" and rows() == ["old"])

        def ingest(event_id: str) -> None:
            event = [{"event_name": "deploy", "app_name": "api", "id": event_id}]
            assert service.call("POST", "/api/bucket/prod/data/events/ingest", event, token)[0] == 200

        ingest("before-stop")
        wait.until(lambda d: rows()[:1] == ["before-stop"])
        port = service.port
        assert service.stop() == 0
        wait.until(lambda d: state() == "reconnecting")
        service = Service(tmp_path, {"EVENTSAPI_ACCESS_LOG": "0"})
        service.port = port
        service.start()
        ingest("while-away")  # before the page is back: it must come through Last-Event-ID
        wait.until(lambda d: state() == "connected")
        ingest("after")
        wait.until(lambda d: rows()[:1] == ["after"])
        assert rows() == ["after", "while-away", "before-stop", "old"]
        counted = browser.execute_script(
            "return [...document.querySelectorAll('#histogram rect[data-count]')]"
            ".reduce((n, b) => n + Number(b.dataset.count), 0)"
        )
        assert counted == 4
    finally:
        service.close()
