"""Dashboard pages (plotly, served with plotly.js from the package: no CDN, works offline)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, cast

from fastapi import APIRouter, Form, Path, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.alerts.records import AlertStatus
from cloud.alerts.signals import Severity
from cloud.alerts.store import AlertStore
from cloud.api.deps import (
    SESSION_COOKIE,
    CallerDep,
    DeviceScope,
    ReadAlerts,
    ReadRisk,
    ReadTelemetry,
    ServicesDep,
    visible_devices,
)
from cloud.api.problems import Problem
from cloud.api.routes.auth import session_for_key
from cloud.risk.model import Band
from dashboards.alerts_inbox import STATUSES, InboxFilter, inbox_html, known_detectors
from dashboards.asset_data import RangeName, asset_view, span_for
from dashboards.asset_page import asset_page_html, device_index_html
from dashboards.fleet_data import ASSET_STATES, AssetState, FleetFilter, fleet_view
from dashboards.fleet_page import fleet_page_html
from dashboards.risk_data import risk_view
from dashboards.risk_page import risk_page_html
from leasewatch.wire import DeviceId

router = APIRouter(tags=["dashboards"])

## Filters come from HTML forms, where "any" is an empty value
_STATES = "^(|" + "|".join(ASSET_STATES) + ")$"
_SEVERITIES = "^(|" + "|".join(Severity) + ")$"
_STATUSES = "^(|" + "|".join(STATUSES) + ")$"
_BANDS = "^(|" + "|".join(Band) + ")$"

_LOGIN_FORM = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>LeaseWatch login</title>'
    "</head><body><h1>LeaseWatch</h1>{error}"
    '<form method="post" action="/login"><label>API key <input type="password" name="key" '
    'id="key" autocomplete="current-password"></label> <button type="submit" id="login">'
    "Log in</button></form></body></html>"
)


@router.get("/static/plotly.min.js", include_in_schema=False)
def plotly_js() -> Response:
    """plotly.js as shipped inside the plotly package."""
    source = resources.files("plotly").joinpath("package_data/plotly.min.js").read_bytes()
    return Response(
        source, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
    )


@router.get("/static/topojson/{name}.json", include_in_schema=False)
def topojson(name: Annotated[str, Path(pattern=r"^[a-z_]+_\d+m$")]) -> Response:
    """Map base layers (Natural Earth topojson) shipped with the dashboards: maps work offline."""
    source = resources.files("dashboards").joinpath(f"static/topojson/{name}.json")
    if not source.is_file():
        raise Problem(404, "map_layer_not_found", f"No map layer {name} is shipped.")
    return Response(
        source.read_bytes(),
        media_type="application/json",
        headers={"Cache-Control": "max-age=86400"},
    )


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form() -> str:
    """The login form of the dashboards."""
    return _LOGIN_FORM.format(error="")


@router.post("/login", include_in_schema=False)
def login(services: ServicesDep, key: Annotated[str, Form()]) -> Response:
    """Check the API key and set the session cookie (a signed, expiring session token)."""
    session = session_for_key(services, key)
    if session is None:
        html = _LOGIN_FORM.format(error='<p role="alert">That key is not valid.</p>')
        return HTMLResponse(html, status_code=401)
    response = RedirectResponse("/dashboards", status_code=303)
    response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict")
    return response


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    """Send people to the dashboards."""
    return RedirectResponse("/dashboards", status_code=307)


@router.get("/dashboards", response_class=HTMLResponse, dependencies=[ReadTelemetry, DeviceScope])
def dashboards_index(services: ServicesDep, caller: CallerDep) -> str:
    """Every gateway the caller may see, with its status."""
    visible = visible_devices(services, caller)
    found = services.state.devices()
    return device_index_html([d for d in found if visible is None or d["device"] in visible])


@router.get(
    "/dashboards/devices/{device}",
    response_class=HTMLResponse,
    dependencies=[ReadTelemetry, DeviceScope],
)
async def asset_page(
    services: ServicesDep,
    device: DeviceId,
    *,
    range_name: Annotated[RangeName, Query(alias="range")] = "24h",
    end: Annotated[datetime | None, Query(description="End of the range (default now)")] = None,
    raw: Annotated[bool, Query(description="Raw readings (ranges up to 6 h)")] = False,
    days: Annotated[int, Query(ge=1, le=90)] = 14,
) -> str:
    """One asset: measures over a range, running hours per day, alerts, silences, health."""
    if end is not None and end.tzinfo is None:
        raise Problem(422, "naive_time", "Give `end` with a time zone, e.g. 2026-12-04T10:00Z.")
    span = span_for(range_name, (end or datetime.now(UTC)).astimezone(UTC), raw=raw)
    view = await asset_view(services.state, services.telemetry, device, span, days)
    return asset_page_html(view)


@router.get(
    "/dashboards/fleet", response_class=HTMLResponse, dependencies=[ReadTelemetry, DeviceScope]
)
def fleet_page(
    services: ServicesDep,
    caller: CallerDep,
    *,
    state: Annotated[str, Query(pattern=_STATES)] = "",
    severity: Annotated[str, Query(pattern=_SEVERITIES)] = "",
    search: Annotated[str, Query(max_length=64)] = "",
    days: Annotated[int, Query(ge=1, le=90)] = 14,
    page: Annotated[int, Query(ge=0)] = 0,
    per_page: Annotated[int, Query(ge=1, le=500)] = 100,
) -> str:
    """Fleet overview: status map, utilization heatmap, assets by state, open alerts."""
    wanted = FleetFilter(
        cast("AssetState", state) if state else None,
        Severity(severity) if severity else None,
        search.strip(),
        page,
        per_page,
        days,
    )
    visible = visible_devices(services, caller)
    view = fleet_view(services.state.engine, wanted, datetime.now(UTC), visible)
    return fleet_page_html(view, wanted)


@router.get(
    "/dashboards/alerts", response_class=HTMLResponse, dependencies=[ReadAlerts, DeviceScope]
)
def alerts_page(
    services: ServicesDep,
    caller: CallerDep,
    *,
    status: Annotated[str, Query(pattern=_STATUSES)] = "",
    severity: Annotated[str, Query(pattern=_SEVERITIES)] = "",
    detector: Annotated[str, Query(max_length=64)] = "",
    device: Annotated[str, Query(max_length=64)] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> str:
    """Alerts inbox: filter, read the evidence, acknowledge or resolve with a note."""
    wanted = InboxFilter(
        status or None, Severity(severity) if severity else None, detector or None,
        device.strip() or None, limit,
    )  # fmt: skip
    found = AlertStore(services.state.engine).query(
        status=cast("AlertStatus | None", wanted.status), severity=wanted.severity,
        device=wanted.device, detector=wanted.detector, limit=limit,
    )  # fmt: skip
    visible = visible_devices(services, caller)
    found = [a for a in found if visible is None or a.device in visible]
    detectors = known_detectors(services.state.engine)
    return inbox_html(found, wanted, detectors, caller.user)


@router.get("/dashboards/risk", response_class=HTMLResponse, dependencies=[ReadRisk])
def risk_page(
    services: ServicesDep,
    caller: CallerDep,
    band: Annotated[str, Query(pattern=_BANDS)] = "",
    lessee: Annotated[str, Query(max_length=64)] = "",
) -> str:
    """Risk view: leases and lessees by score and band, watchlist, reasons, score trends."""
    view = risk_view(
        services.state.engine,
        band=band or None,
        lessee=lessee.strip() or None,
        tenant=caller.tenant,
    )
    return risk_page_html(view, band or None, lessee.strip() or None)
