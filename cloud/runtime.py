"""Wiring of the cloud process: stores, ingestor and API in one asyncio program."""

from __future__ import annotations

import asyncio
import gc
import socket
from dataclasses import dataclass, field

import structlog
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from cloud.alerts.delivery import run_alert_delivery
from cloud.alerts.receivers import receiver_ids
from cloud.alerts.store import AlertStore
from cloud.api.deps import Services
from cloud.api.main import create_app
from cloud.commands.link import CommandLink, why_undeliverable
from cloud.detection.context import AssetContextSource
from cloud.detection.settings import DetectionSettings, load_detection_settings
from cloud.detection.worker import DetectionWorker, detection_worker
from cloud.ingest import Ingestor
from cloud.leasing.asset_context import LeasingContextSource
from cloud.leasing.peer_refresh import run_peer_refresh
from cloud.leasing.rescore import run_rescoring
from cloud.metrics import IngestMetrics
from cloud.risk.rules import load_rules
from cloud.settings import CloudSettings
from cloud.state import StateStore
from cloud.telemetry import TelemetryStoreError, open_telemetry_store

log = structlog.get_logger(__name__)


def bind_listener(host: str, port: int, *, fall_back: bool) -> socket.socket:
    """A listening TCP socket on host:port, or on a free port when that one is taken and allowed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        if not fall_back:
            sock.close()
            raise
        log.warning("port taken, using a free one", host=host, port=port)
        sock.bind((host, 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@dataclass
class CloudRuntime:
    """The cloud's services for one process; `run` serves ingestion and/or the API until stopped."""

    settings: CloudSettings
    detection: DetectionSettings | None = None  # None: read LEASEWATCH_DETECT_* when detecting
    asset_context: AssetContextSource | None = None  # None: leasing store, then the context file
    services: Services = field(init=False)
    ingestor: Ingestor = field(init=False)
    detector: DetectionWorker | None = field(init=False, default=None)
    ingesting: bool = field(init=False, default=False)
    commands: CommandLink | None = field(init=False, default=None)  # with the API (commands.md)

    async def open(self) -> None:
        """Open the stores; raises TelemetryStoreError or a SQLAlchemy error when unreachable."""
        telemetry = await open_telemetry_store(self.settings.telemetry_url)
        state = await asyncio.to_thread(
            StateStore, self.settings.state_url, self.settings.dead_letter_max
        )
        metrics = IngestMetrics()
        self.services = Services(self.settings, telemetry, state, metrics)
        self.ingestor = Ingestor(self.settings, telemetry, state, metrics)

    async def open_with_retries(self, stop: asyncio.Event) -> None:
        """Open the stores, retrying with back-off for startup_timeout_s (stores start late)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.startup_timeout_s
        delay = 0.5
        while True:
            try:
                await self.open()
            except (TelemetryStoreError, SQLAlchemyError) as err:
                if loop.time() + delay > deadline or stop.is_set():
                    raise
                log.warning("stores not reachable yet, retrying", error=str(err), retry_in=delay)
                await _sleep_or_stop(delay, stop)
                delay = min(delay * 2, 10.0)
                continue
            return

    async def close(self) -> None:
        """Flush and close the stores."""
        await self.services.telemetry.close()
        await asyncio.to_thread(self.services.state.close)

    async def run(
        self,
        stop: asyncio.Event,
        *,
        ingest: bool = True,
        api_socket: socket.socket | None = None,
        ops_only: bool = False,
        detect: bool = False,
    ) -> None:
        """Run the ingestor, detection and the API, or only the ops endpoints, until stopped.

        With `detect`, the detectors run on every batch the ingestor stored (its hook, before
        the PUBACKs) and the sweep runs beside it; without `ingest` it is the sweep alone.
        Detection never subscribes to gateway topics (docs/detection.md).
        """
        # What start-up loaded (modules, models, settings) is never scanned again: a full
        # collection of an API process took 130-570 ms, one credit check in 2,000 waited for
        # it (docs/leasing.md). An ingesting process also runs collection between batches.
        gc.freeze()
        async with asyncio.TaskGroup() as group:
            if detect:
                detector = self._detection()
                if ingest:
                    self.ingestor.on_stored = detector.on_stored
                group.create_task(detector.run(stop))
            if ingest:
                self.ingesting = True
                group.create_task(self.ingestor.run(stop))
                group.create_task(self.ingestor.enforce_retention(stop))
            if ingest or detect:
                group.create_task(
                    run_alert_delivery(self.settings, self.services.state.engine, stop)
                )
                group.create_task(run_rescoring(self.settings, self.services.state.engine, stop))
            if api_socket is not None and not ops_only and (link := self._command_link()):
                group.create_task(link.run(stop))
            if api_socket is not None and not ops_only:
                group.create_task(run_peer_refresh(self.settings, self.services.state.engine, stop))
            if api_socket is not None:
                app = create_ops_app(self) if ops_only else create_app(self.services)
                group.create_task(_serve(app, api_socket, stop))

    async def wait_subscribed(self) -> None:
        """Until the ingestor (and the API's command link) have subscribed.

        Start publishers only after this on the embedded broker: amqtt loses a message it is
        fanning out while a subscription is being added ("dictionary changed size").
        """
        await self.ingestor.connected.wait()
        if self.commands is not None:
            await self.commands.connected.wait()

    def _command_link(self) -> CommandLink | None:
        """The API's command link; None (logged) when this process has no broker password."""
        if (why := why_undeliverable(self.settings)) is not None:
            log.warning("gateway commands disabled", reason=why)
            return None
        self.commands = CommandLink(self.settings, self.services.state, self.services.metrics)
        return self.commands

    def _detection(self) -> DetectionWorker:
        """Detection on the state store: the ingestor's hook and the sweep."""
        settings = self.detection or load_detection_settings()
        alerts = AlertStore(self.services.state.engine, receiver_ids(self.settings))
        registry = self.services.metrics.registry  # one /metrics: ingest and detection
        # Gateways on an asset of the leasing store get its type, their lease's region and
        # their region's public holidays (the scoring rules'); others what the context file
        # (or the defaults) says.
        context = self.asset_context or LeasingContextSource(
            self.services.state.engine,
            settings.context_source(),
            holidays=load_rules(self.settings.risk_rules_file).holidays.resolver(),
        )
        self.detector = detection_worker(settings, alerts, context, registry)
        return self.detector


def create_ops_app(runtime: CloudRuntime) -> FastAPI:
    """/healthz and /metrics of an ingest process (or of a sweep-only detection process).

    Healthy: the ingestor is connected to the broker; a process that does not ingest
    (`cloud detect`, the sweep alone) is healthy while its sweep runs.
    """
    app = FastAPI(title="LeaseWatch ingestor ops", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    def healthz() -> Response:
        detector = runtime.detector
        connected = runtime.ingestor.connected.is_set()
        sweeping = bool(detector and detector.sweeping.is_set())
        healthy = connected or (sweeping and not runtime.ingesting)
        body = {
            "status": "ok" if healthy else "disconnected",
            "broker_connected": connected,
            "sweeping": sweeping,
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        payload = generate_latest(runtime.services.metrics.registry)
        return Response(payload, media_type=CONTENT_TYPE_LATEST)

    return app


async def _serve(app: FastAPI, sock: socket.socket, stop: asyncio.Event) -> None:
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    await stop.wait()
    server.should_exit = True
    await serving


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
