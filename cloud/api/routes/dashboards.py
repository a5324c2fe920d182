"""Dashboard pages (plotly, served with plotly.js from the package: no CDN, works offline)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.api.deps import (
    SESSION_COOKIE,
    DeviceScope,
    ReadTelemetry,
    ServicesDep,
)
from cloud.api.routes.auth import session_for_key
from dashboards.asset_page import asset_page_html, device_index_html
from leasewatch.wire import DeviceId

router = APIRouter(tags=["dashboards"])

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


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form() -> str:
    """The login form of the dashboards."""
    return _LOGIN_FORM.format(error="")


@router.post("/login", include_in_schema=False)
def login(services: ServicesDep, key: Annotated[str, Form()]) -> Response:
    """Check the API key and set the session cookie."""
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


@router.get("/dashboards", response_class=HTMLResponse, dependencies=[ReadTelemetry])
def dashboards_index(services: ServicesDep) -> str:
    """Every gateway with its status."""
    return device_index_html(services.state.devices())


@router.get(
    "/dashboards/devices/{device}",
    response_class=HTMLResponse,
    dependencies=[ReadTelemetry, DeviceScope],
)
async def asset_page(
    services: ServicesDep,
    device: DeviceId,
    minutes: Annotated[int, Query(ge=1, le=7 * 24 * 60)] = 30,
) -> str:
    """Recent readings of one gateway's sensors, one panel per measure."""
    end = datetime.now(UTC)
    readings = await services.telemetry.query(device, end - timedelta(minutes=minutes), end)
    return asset_page_html(device, readings, f"last {minutes} minutes")
