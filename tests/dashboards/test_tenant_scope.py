"""A tenant's asset manager sees only the tenant's assets on the fleet overview, gateway list and
alerts inbox; another tenant's asset page is a 404. Real API over HTTP, SQLite state store."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from cloud.access.digests import derive
from cloud.access.roles import Role
from cloud.access.users import AccessStore
from cloud.state import StateStore
from dashboards.bench import serving_api
from tests.dashboards.fleet_fixture import IDLE, RUNNING, SILENT, STATES, write_fleet

API_KEY = "dashboard-tenant-key-0123456789"
MINE = {RUNNING, IDLE}


def _listed_assets(html: str) -> set[str]:
    """Asset ids linked from a page's tables."""
    return set(re.findall(r'href="/dashboards/devices/([^"]+)"', html))


@pytest.mark.integration
def test_a_tenant_sees_only_its_assets(tmp_path: Path) -> None:
    """Fleet, gateway list and inbox list the tenant's two assets; a foreign asset is 404."""
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    telemetry_url = f"sqlite:///{tmp_path / 'telemetry.sqlite'}"
    state = StateStore(state_url)
    now = datetime.now(UTC)
    write_fleet(state, telemetry_url, now)
    access = AccessStore(state.engine, derive(API_KEY, "api-key-pepper"))
    access.create_tenant("north", "North Leasing", now)
    for device in MINE:
        access.assign_device(device, "north", now)
    user = access.create_user("nora", Role.ASSET_MANAGER, "north", now)
    key = access.issue_key(user.id, "test", now).key
    state.close()
    with serving_api(state_url, telemetry_url, API_KEY) as url:
        headers = {"X-API-Key": key}
        fleet = httpx.get(f"{url}/dashboards/fleet", headers=headers)
        assert fleet.status_code == 200
        assert _listed_assets(fleet.text) == MINE
        assert f"({len(MINE)} in the fleet)" in fleet.text
        listing = httpx.get(f"{url}/dashboards", headers=headers)
        assert _listed_assets(listing.text) == MINE
        inbox = httpx.get(f"{url}/dashboards/alerts", headers=headers)
        assert _listed_assets(inbox.text) == {RUNNING}, "the silence alert is another tenant's"
        foreign = httpx.get(f"{url}/dashboards/devices/{SILENT}", headers=headers)
        assert (foreign.status_code, foreign.json()["code"]) == (404, "device_not_found")
        admin = httpx.get(f"{url}/dashboards/fleet", headers={"X-API-Key": API_KEY})
        assert _listed_assets(admin.text) == set(STATES)
