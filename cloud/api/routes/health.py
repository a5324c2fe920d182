"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cloud.api.deps import ReadOperations, ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers (no authentication)."""
    return {"status": "ok"}


@router.get("/metrics", dependencies=[ReadOperations], response_class=Response)
def metrics(services: ServicesDep) -> Response:
    """Operational metrics in the Prometheus text format."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
