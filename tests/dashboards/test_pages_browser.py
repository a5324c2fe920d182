"""Fleet overview, asset page and alerts inbox in headless Chromium, on a fleet the test wrote.

The API runs for real on a loopback port (no ingestor) over a SQLite state store filled through
the store code (`fleet_fixture`); Chromium logs in, opens each page, reads the plotted traces
from the page and compares them with what was written, acknowledges an alert through the inbox,
and saves a screenshot of every page under the test's tmp dir (paths printed).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from cloud.alerts.store import AlertStore
from cloud.leasing.tables import lease_bands, risk_scores
from cloud.state import StateStore
from dashboards.bench import serving_api
from tests.dashboards.fleet_fixture import (
    BASELINE_HOURS,
    CONTRACT_HOURS,
    LEASE,
    LESSEE,
    MOTOR_CURRENT,
    POSITIONS,
    RUN_HOURS_PER_DAY,
    RUNNING,
    SILENCE_SUMMARY,
    SILENT,
    STATES,
    WATCH_REASON,
    WATCH_SCORE,
    FleetFixture,
    write_fleet,
)

API_KEY = "dashboard-test-key-0123456789"
WAIT_S = 15.0
NOTE = "Site visit booked for Monday."

_TRACES = """
const plot = document.getElementById(arguments[0]);
return plot.data.map(t => ({name: t.name || null, type: t.type || 'scatter',
  x: t.x ? Array.from(t.x) : null, y: t.y ? Array.from(t.y) : null,
  z: t.z ? Array.from(t.z, row => Array.from(row)) : null,
  lat: t.lat ? Array.from(t.lat) : null, lon: t.lon ? Array.from(t.lon) : null,
  text: t.text ? Array.from(t.text) : null}));
"""
_RENDERED = "return document.querySelectorAll('#' + arguments[0] + ' .main-svg').length > 0"


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, FleetFixture, StateStore]]:
    """The written fleet and the API serving it, on each state store; (API URL, fixture, store)."""
    if request.param == "postgresql":
        state_url = str(request.getfixturevalue("postgres_url"))
    else:
        state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    telemetry_url = f"sqlite:///{tmp_path / 'telemetry.sqlite'}"
    state = StateStore(state_url)
    written = write_fleet(state, telemetry_url, datetime.now(UTC))
    with serving_api(state_url, telemetry_url, API_KEY) as url:
        yield url, written, state
    state.close()


def _traces(driver: webdriver.Chrome, plot: str) -> list[dict[str, Any]]:
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.execute_script(_RENDERED, plot), message=f"plotly did not render #{plot}"
    )
    traces: list[dict[str, Any]] = driver.execute_script(_TRACES, plot)
    return traces


def _shot(driver: webdriver.Chrome, path: Path) -> None:
    assert driver.save_screenshot(str(path)), path
    print(f"screenshot: {path}")


def _log_in(driver: webdriver.Chrome, url: str) -> None:
    driver.get(f"{url}/login")
    driver.find_element(By.ID, "key").send_keys(API_KEY)
    driver.find_element(By.ID, "login").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.current_url == f"{url}/dashboards")


def check_fleet(driver: webdriver.Chrome, url: str, fixture: FleetFixture, shots: Path) -> None:
    """States, alert counts, map positions and running hours as written; links to assets."""
    driver.get(f"{url}/dashboards/fleet")
    (bars,) = _traces(driver, "state-plot")
    assert dict(zip(bars["x"], bars["y"], strict=True)) == {
        "running": 1, "idle": 1, "off": 1, "silent": 1, "unknown": 0,
    }  # fmt: skip
    by_status = {
        t["name"]: dict(zip(t["x"], t["y"], strict=True)) for t in _traces(driver, "alerts-plot")
    }
    assert by_status == {
        "open": {"critical": 1, "warning": 1, "info": 0},
        "acknowledged": {"critical": 0, "warning": 0, "info": 0},
    }
    placed = {t["name"]: t for t in _traces(driver, "map-plot")}
    assert set(placed) == {"running", "idle", "off"}, "the silent asset sent no position"
    for device, (lat, lon) in POSITIONS.items():
        trace = placed[STATES[device]]
        assert (trace["text"], trace["lat"], trace["lon"]) == ([device], [lat], [lon])
    (heat,) = _traces(driver, "usage-plot")
    row = heat["z"][heat["y"].index(RUNNING)]
    hours = dict(zip(heat["x"], row, strict=True))
    assert [hours[d.isoformat()] for d in fixture.run_days] == [RUN_HOURS_PER_DAY] * 3
    assert all(
        v is None for d, v in hours.items() if d not in {x.isoformat() for x in fixture.run_days}
    )
    _shot(driver, shots / "fleet.png")
    driver.get(f"{url}/dashboards/fleet?state=silent")
    links = driver.find_elements(By.CSS_SELECTOR, "#assets a")
    assert [a.text for a in links] == [SILENT]
    assert links[0].get_attribute("href") == f"{url}/dashboards/devices/{SILENT}"


def check_asset(driver: webdriver.Chrome, url: str, fixture: FleetFixture, shots: Path) -> None:
    """Minute means of motor current, 8 h per day against the 9.5 h baseline, the alert marker."""
    driver.get(f"{url}/dashboards/devices/{RUNNING}?range=1h")
    traces = {t["name"]: t for t in _traces(driver, "readings-plot")}
    current = traces["machine · motor_current [A]"]
    assert current["y"] == MOTOR_CURRENT
    assert [
        datetime.fromisoformat(x).replace(tzinfo=UTC) for x in current["x"]
    ] == fixture.minute_ts
    assert traces["alerts"]["text"] == [
        "warning: Running hours dropped to 45% of the usual for 3 days."
    ]
    hours = {t["name"]: t for t in _traces(driver, "hours-plot")}
    bars = dict(zip(hours["running hours"]["x"], hours["running hours"]["y"], strict=True))
    assert [bars[d.isoformat()] for d in fixture.run_days] == [RUN_HOURS_PER_DAY] * 3
    assert set(hours["baseline"]["y"]) == {BASELINE_HOURS}
    assert set(hours["contract"]["y"]) == {CONTRACT_HOURS}
    assert driver.find_element(By.ID, "contract").text == (
        f"Lease {LEASE} of lessee {LESSEE}, {fixture.now.date() - timedelta(days=60)} to "
        f"{fixture.now.date() + timedelta(days=300)}: 10.0 running hours expected per day."
    )
    assert driver.find_element(By.ID, "health").text == "No health report from this gateway yet."
    _shot(driver, shots / "asset.png")
    driver.find_element(By.ID, "raw-link").click()
    raw = {t["name"]: t for t in _traces(driver, "readings-plot")}
    assert raw["machine · motor_current [A]"]["y"] == MOTOR_CURRENT
    assert "raw readings" in driver.find_element(By.ID, "range").text


def check_inbox(
    driver: webdriver.Chrome, url: str, fixture: FleetFixture, store: AlertStore, shots: Path
) -> None:
    """The silence alert in words and numbers; acknowledged with a note through the page."""
    driver.get(f"{url}/dashboards/alerts?severity=critical")
    (only,) = [t for t in _traces(driver, "inbox-plot") if t["name"] == "critical"]
    assert dict(zip(only["x"], only["y"], strict=True)) == {"silence": 1}
    rows = driver.find_elements(By.CSS_SELECTOR, "#inbox tbody tr")
    assert len(rows) == 1
    assert SILENCE_SUMMARY in rows[0].text
    assert "silent_h: 2.0" in rows[0].text and "expected_interval_s: 10" in rows[0].text
    driver.find_element(By.ID, f"note-{fixture.silence_alert}").send_keys(NOTE)
    driver.find_element(
        By.CSS_SELECTOR, f'button[data-action="acknowledge"][data-alert="{fixture.silence_alert}"]'
    ).click()
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_element(By.ID, f"result-{fixture.silence_alert}").text == "Acknowledged.",
        message="the inbox did not confirm the acknowledgement",
    )
    alert = store.get(fixture.silence_alert)
    assert (alert.status, alert.acknowledged_by, alert.acknowledge_note) == (
        "acknowledged", "bootstrap-admin", NOTE,
    )  # fmt: skip
    _shot(driver, shots / "alerts.png")
    driver.refresh()
    assert "acknowledged by bootstrap-admin: " + NOTE in driver.find_element(By.ID, "inbox").text


def check_risk(
    driver: webdriver.Chrome, url: str, fixture: FleetFixture, state: StateStore, shots: Path
) -> None:
    """Band counts, the lease's score trend and reasons, the watchlist entry, as stored."""
    with state.engine.connect() as conn:
        band, score = conn.execute(select(lease_bands.c.band, lease_bands.c.score)).one()
        served = conn.execute(
            select(risk_scores.c.as_of, risk_scores.c.score, risk_scores.c.reasons)
            .where(risk_scores.c.subject == f"lease:{LEASE}")
            .order_by(risk_scores.c.as_of)
        ).all()
    driver.get(f"{url}/dashboards/risk")
    (bars,) = _traces(driver, "bands-plot")
    assert dict(zip(bars["x"], bars["y"], strict=True)) == {
        b: int(b == band) for b in ("low", "medium", "high", "critical")
    }
    (trend,) = _traces(driver, "trend-plot")
    assert trend["name"] == LEASE
    expected = {r.as_of.replace(tzinfo=UTC): r.score for r in served}
    expected[fixture.now - timedelta(days=3)] = WATCH_SCORE
    plotted = {
        datetime.fromisoformat(x).replace(tzinfo=UTC): y
        for x, y in zip(trend["x"], trend["y"], strict=True)
    }
    assert len(served) == 3
    assert plotted == expected
    lease_row = driver.find_element(By.CSS_SELECTOR, "#leases tbody tr").text
    assert lease_row.startswith(LEASE) and f"{score:.1f}" in lease_row and band in lease_row
    newest_reasons = served[-1].reasons
    for reason in newest_reasons[:3]:
        assert reason["summary"] in lease_row
    watch = driver.find_element(By.ID, "watchlist").text
    assert "low → medium" in watch and WATCH_REASON in watch and f"{WATCH_SCORE:.1f}" in watch
    assert LESSEE in driver.find_element(By.ID, "lessees").text
    _shot(driver, shots / "risk.png")


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.timeout(120)
def test_pages_show_what_the_stores_hold(
    chromium: webdriver.Chrome, fleet: tuple[str, FleetFixture, StateStore], tmp_path: Path
) -> None:
    """Log in, then fleet overview, asset page (rollups and raw) and inbox, each checked."""
    url, fixture, state = fleet
    _log_in(chromium, url)
    check_fleet(chromium, url, fixture, tmp_path)
    check_asset(chromium, url, fixture, tmp_path)
    check_inbox(chromium, url, fixture, AlertStore(state.engine), tmp_path)
    check_risk(chromium, url, fixture, state, tmp_path)
