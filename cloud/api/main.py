"""The API application: routes, problem details, and the services it reads."""

from __future__ import annotations

from fastapi import FastAPI

from cloud.api import problems
from cloud.api.deps import Services
from cloud.api.routes import (
    alerts,
    assets,
    auth,
    commands,
    credit_checks,
    dashboards,
    devices,
    health,
    ingest,
    leases,
    lessees,
    maintenance,
    provisioning,
    risk,
)


def create_app(services: Services) -> FastAPI:
    """A FastAPI app bound to the given stores and settings."""
    app = FastAPI(
        title="LeaseWatch API",
        version="0.1.0",
        description="Telemetry, devices and ingestion health of leased assets.",
    )
    app.state.services = services
    problems.install(app)
    for module in (health, auth, devices, provisioning, ingest, dashboards, alerts, maintenance):
        app.include_router(module.router)
    app.include_router(commands.router)  # gateway commands and their acknowledgements
    for module in (lessees, leases, assets, risk, credit_checks):  # the leasing domain
        app.include_router(module.router)
    return app
