"""What a user sees: log in, list the gateways, open an asset page whose plot shows what was read
and whose command history shows what the gateway answered.

The real slice runs in-process (embedded amqtt broker, a simulated machine holding known values
on a pty, a real edge agent, the ingestor with SQLite stores, the API); headless Chromium then
drives the dashboards as a person would. Selenium blocks, so the browser steps run in a worker
thread while the event loop keeps serving the stack.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from plotly.offline import get_plotlyjs_version
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from cloud.broker_access import Principal
from cloud.embedded_broker import EmbeddedBroker
from dashboards.layout import PLOTLY_JS_URL
from firmware_sim.machine import HeldMachine
from firmware_sim.register_map import MACHINE_MAP
from tests.slice import (
    API_KEY,
    BrokerAddress,
    api_get,
    api_post,
    cloud_settings,
    eventually,
    running_cloud,
    running_gateway,
)

DEVICE = "gw-0001"
HELD: dict[str, Any] = {
    "running": True,
    "motor_current": 12.34,
    "temperature": -3.5,
    "vibration_rms": 4.21,
    "run_hours": 1234.567,
    "fault_code": 17,
}
EXPECTED = {metric: float(value) for metric, value in HELD.items()}
UNITS = {f.metric: f.unit for f in MACHINE_MAP.fields}
WAIT_S = 10.0

_NAVIGATION_STATUS = "return performance.getEntriesByType('navigation')[0].responseStatus"
_PLOT_RENDERED = "return document.querySelectorAll('#readings-plot .main-svg').length > 0"
_PLOTTED_TRACES = """
return document.getElementById('readings-plot').data.map(
    t => ({name: t.name, x: Array.from(t.x), y: Array.from(t.y)}));
"""
_RESOURCES = "return performance.getEntriesByType('resource').map(e => e.name)"
_SCRIPT_SOURCES = "return Array.from(document.scripts, s => s.src).filter(s => s)"
_PLOTLY_VERSION = "return window.Plotly ? window.Plotly.version : null"


@asynccontextmanager
async def embedded_broker() -> AsyncIterator[BrokerAddress]:
    """The demo's amqtt broker with accounts for one gateway and the ingestor."""
    passwords = {DEVICE: "gateway-pass-1", "ingestor": "ingestor-pass-1"}
    principals = [
        Principal.gateway(DEVICE, passwords[DEVICE]),
        Principal.ingestor("ingestor", passwords["ingestor"]),
    ]
    async with EmbeddedBroker(principals) as broker:
        yield BrokerAddress("127.0.0.1", broker.port, 311, "", passwords["ingestor"], passwords)


def _wait(driver: webdriver.Chrome, script: str, what: str) -> None:
    """Wait until a JS expression is truthy, or fail naming what did not happen."""
    WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script(script), message=what)


def check_unauthenticated(driver: webdriver.Chrome, api_url: str) -> None:
    """Without logging in, the asset page is a 401 problem document, not data."""
    driver.get(f"{api_url}/dashboards/devices/{DEVICE}?range=1h")
    assert driver.execute_script(_NAVIGATION_STATUS) == 401
    problem = json.loads(driver.find_element(By.TAG_NAME, "body").text)
    assert (problem["status"], problem["code"]) == (401, "unauthenticated")
    assert driver.find_elements(By.ID, "readings-plot") == []


def _submit_key(driver: webdriver.Chrome, key: str) -> None:
    field = driver.find_element(By.ID, "key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "login").click()


def check_login(driver: webdriver.Chrome, api_url: str) -> None:
    """A wrong key is refused with a message; the right one lands on the gateway list."""
    driver.get(f"{api_url}/login")
    _submit_key(driver, "not-the-key-0123456789")
    _wait(driver, "return document.querySelector('[role=alert]') !== null", "no error shown")
    assert driver.find_element(By.CSS_SELECTOR, "[role=alert]").text == "That key is not valid."
    assert driver.execute_script(_NAVIGATION_STATUS) == 401
    assert driver.get_cookies() == []

    _submit_key(driver, API_KEY)
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.current_url == f"{api_url}/dashboards", message="login did not redirect"
    )
    (cookie,) = driver.get_cookies()
    assert cookie["httpOnly"] is True
    assert driver.execute_script("return document.cookie") == "", "session hidden from scripts"
    link = driver.find_element(By.LINK_TEXT, DEVICE)
    assert link.get_attribute("href") == f"{api_url}/dashboards/devices/{DEVICE}"
    row = link.find_element(By.XPATH, "./ancestor::tr")
    assert "online" in row.text


def _measures(driver: webdriver.Chrome) -> dict[str, dict[str, Any]]:
    """Plotted mean (or raw) traces by metric, leaving out min/max bands."""
    traces: list[dict[str, Any]] = driver.execute_script(_PLOTTED_TRACES)
    means = [t for t in traces if not t["name"].endswith((" min", " max"))]
    by_metric = {t["name"].split(" · ")[1].split(" [")[0]: t for t in means}
    assert len(means) == len(by_metric) == len(MACHINE_MAP.fields)
    assert set(by_metric) == set(MACHINE_MAP.metrics)
    return by_metric


def check_asset_page(driver: webdriver.Chrome, api_url: str) -> None:
    """One panel per metric: 1-minute rollup means, then the raw readings, of the held values."""
    driver.find_element(By.LINK_TEXT, DEVICE).click()
    _wait(driver, _PLOT_RENDERED, "plotly did not render #readings-plot")
    assert driver.find_element(By.TAG_NAME, "h1").text == f"LeaseWatch · {DEVICE}"
    assert "1-minute rollups" in driver.find_element(By.ID, "range").text
    for metric, trace in _measures(driver).items():
        assert len(trace["x"]) == len(trace["y"]) >= 1, metric
        assert trace["y"] == pytest.approx([EXPECTED[metric]] * len(trace["y"])), metric

    driver.get(f"{api_url}/dashboards/devices/{DEVICE}?range=1h")
    driver.find_element(By.ID, "raw-link").click()
    _wait(driver, _PLOT_RENDERED, "plotly did not render the raw readings")
    assert "raw readings" in driver.find_element(By.ID, "range").text
    for metric, trace in _measures(driver).items():
        assert len(trace["x"]) == len(trace["y"]) >= 2, metric
        assert set(trace["y"]) == {EXPECTED[metric]}, (metric, trace["y"])

    titles = {e.text for e in driver.find_elements(By.CSS_SELECTOR, "#readings-plot .g-gtitle")}
    subplot_titles = {
        e.text for e in driver.find_elements(By.CSS_SELECTOR, "#readings-plot .annotation-text")
    }
    assert titles == {f"Asset gateway {DEVICE}: measures"}
    assert subplot_titles == {
        f"machine · {m}" + (f" [{UNITS[m]}]" if UNITS[m] else "") for m in MACHINE_MAP.metrics
    }


def check_commands(driver: webdriver.Chrome, api_url: str, boot: str) -> None:
    """The command history: newest first, who sent each, and the agent's own answer."""
    driver.get(f"{api_url}/dashboards/devices/{DEVICE}?range=1h")
    rows = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in driver.find_elements(By.CSS_SELECTOR, "#commands tbody tr")
    ]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("set_poll_interval", "failed", "bootstrap-admin"),
        ("ping", "acknowledged", "bootstrap-admin"),
    ]
    assert rows[0][5] == "rejected: no polled sensor 'gearbox'"
    assert rows[1][5] == f"done: boot={boot}"
    assert all(r[3].endswith(" UTC") and r[4].endswith(" UTC") for r in rows), rows


def check_offline(driver: webdriver.Chrome, api_url: str) -> None:
    """Nothing was fetched from outside this server; plotly.js is the packaged copy it serves."""
    resources: list[str] = driver.execute_script(_RESOURCES)
    assert resources, "the browser recorded no resource loads"
    foreign = [r for r in resources if not r.startswith(f"{api_url}/")]
    assert foreign == [], f"fetched from elsewhere: {foreign}"
    plotly_url = f"{api_url}{PLOTLY_JS_URL}"
    assert plotly_url in resources
    assert driver.execute_script(_SCRIPT_SOURCES) == [plotly_url]
    assert driver.execute_script(_PLOTLY_VERSION) == get_plotlyjs_version()


def browse(driver: webdriver.Chrome, api_url: str, screenshot: Path, boot: str) -> None:
    """Everything the user does, in order; ends with a screenshot of the asset page."""
    check_unauthenticated(driver, api_url)
    check_login(driver, api_url)
    check_asset_page(driver, api_url)
    check_commands(driver, api_url, boot)
    check_offline(driver, api_url)
    assert driver.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")


async def _send_commands(api_url: str) -> str:
    """A ping the agent answers and a poll interval it rejects; returns the agent's boot."""
    path = f"/v1/devices/{DEVICE}/commands"
    ping = await api_post(api_url, path, {"name": "ping"})
    await asyncio.sleep(0.01)  # distinct request times: the page lists newest first
    bad = {"name": "set_poll_interval", "args": {"sensor": "gearbox", "interval": 1.0}}
    rejected = await api_post(api_url, path, bad)

    async def answers() -> list[str | None]:
        return [(await api_get(api_url, f"/v1/commands/{c['id']}"))["ack_status"]
                for c in (ping, rejected)]  # fmt: skip

    await eventually(answers, lambda a: a == ["done", "rejected"])
    return str((await api_get(api_url, "/v1/devices"))[0]["last_boot"])


async def _readings_per_metric(api_url: str) -> int:
    devices = await api_get(api_url, "/v1/devices")
    return int(devices[0]["readings"]) // len(HELD) if devices else 0


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_asset_page_shows_what_the_machine_held(
    chromium: webdriver.Chrome, tmp_path: Path
) -> None:
    """Login, gateway list and asset page in Chromium, on the real in-process stack."""
    machine = HeldMachine(**HELD)
    async with embedded_broker() as broker:
        settings = cloud_settings(broker, f"sqlite:///{tmp_path / 'telemetry.sqlite'}", tmp_path)
        async with (
            running_cloud(settings) as (_runtime, api_url),
            running_gateway(DEVICE, broker, tmp_path / "edge", machine),
        ):
            await eventually(lambda: _readings_per_metric(api_url), lambda n: n >= 3)
            boot = await _send_commands(api_url)
            await asyncio.to_thread(browse, chromium, api_url, tmp_path / "asset_page.png", boot)
