"""Wiring of the cloud process: stores, ingestor and API in one asyncio program."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import structlog
import uvicorn

from cloud.api.deps import Services
from cloud.api.main import create_app
from cloud.ingest import Ingestor
from cloud.metrics import IngestMetrics
from cloud.settings import CloudSettings
from cloud.state import StateStore
from cloud.telemetry import open_telemetry_store

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
    services: Services = field(init=False)
    ingestor: Ingestor = field(init=False)

    async def open(self) -> None:
        """Open the stores; raises TelemetryStoreError or a SQLAlchemy error when unreachable."""
        telemetry = await open_telemetry_store(self.settings.telemetry_url)
        state = await asyncio.to_thread(
            StateStore, self.settings.state_url, self.settings.dead_letter_max
        )
        metrics = IngestMetrics()
        self.services = Services(self.settings, telemetry, state, metrics)
        self.ingestor = Ingestor(self.settings, telemetry, state, metrics)

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
    ) -> None:
        """Run the ingestor and the API (when given a socket) until `stop` is set."""
        async with asyncio.TaskGroup() as group:
            if ingest:
                group.create_task(self.ingestor.run(stop))
            if api_socket is not None:
                group.create_task(self._serve_api(api_socket, stop))

    async def _serve_api(self, sock: socket.socket, stop: asyncio.Event) -> None:
        config = uvicorn.Config(
            create_app(self.services), log_level="warning", access_log=False, lifespan="off"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        await stop.wait()
        server.should_exit = True
        await serving
