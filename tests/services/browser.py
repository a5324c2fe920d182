"""Headless Chromium driven by selenium through the system's chromedriver (never downloaded).

Fixture:
    chromium   a `selenium.webdriver.Chrome` on /usr/bin/chromium, 1280x1600, a fresh profile

Selenium Manager is bypassed: the Service points at /usr/bin/chromedriver and SE_OFFLINE is set,
so the tests never need the internet. A missing browser or driver fails the test with how to
install them; it is never a skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW_SIZE = (1280, 1600)
INSTALL_HINT = (
    "The browser tests drive headless Chromium through chromedriver: install both with "
    "`sudo apt-get install chromium chromium-driver` (Debian/Ubuntu)."
)
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _require(path: str, what: str) -> str:
    """`path` if it is an executable file, else fail the test with how to install it."""
    if not (Path(path).is_file() and shutil.which(path)):
        pytest.fail(f"{what} not found at {path}. {INSTALL_HINT}", pytrace=False)
    return path


def chromium_options(profile_dir: Path) -> webdriver.ChromeOptions:
    """Headless options: the fixed flags, a fixed window size and the given fresh profile."""
    options = webdriver.ChromeOptions()
    options.binary_location = _require(CHROMIUM, "Chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}")
    options.add_argument(f"--user-data-dir={profile_dir}")
    return options


@pytest.fixture
def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    """A headless Chromium for one test; quit afterwards."""
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = chromium_options(tmp_path / "chromium-profile")
    service = Service(
        executable_path=_require(CHROMEDRIVER, "chromedriver"),
        log_output=str(tmp_path / "chromedriver.log"),
    )
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as err:
        pytest.fail(f"headless Chromium did not start: {err.msg}. {INSTALL_HINT}", pytrace=False)
    driver.set_page_load_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()
