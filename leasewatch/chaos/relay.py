"""A TCP relay between one gateway and the broker that the chaos suite can cut.

The gateway's agent connects to the relay's port as if it were the broker. `cut()` turns the
relay into a black hole, like a pulled cable: bytes in both directions are read and dropped,
new connections are accepted and hear nothing, so the agent finds out only by its keepalive
and publish timeouts. `restore()` closes the connections that lived through the cut (their
TCP streams lost bytes, so they could not carry on) and relays again. Every PUBLISH the gateway
sends passes `on_publish` (see `mqtt_tap`), whether the cut lets it through or not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from paho.mqtt.exception import MalformedPacket

from leasewatch.chaos.mqtt_tap import MqttFrameError, MqttStreamParser, Publish

log = structlog.get_logger(__name__)
_CHUNK = 65536


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    broker: asyncio.StreamWriter | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for writer in (self.client, self.broker):
            if writer is not None:
                writer.close()
        for task in self.tasks:
            task.cancel()


class CuttableRelay:
    """Relays 127.0.0.1:<port> to the broker; `cut()` and `restore()` the gateway's network."""

    def __init__(self, broker_port: int, on_publish: Callable[[Publish], None]) -> None:
        """Relay to the broker on this loopback port; `start()` listens."""
        self.broker_port = broker_port
        self.on_publish = on_publish
        self.port = 0
        self.cut_now = False
        self.tap_errors = 0
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()
        self._connections.clear()

    def cut(self) -> None:
        """From now on, nothing passes in either direction."""
        self.cut_now = True

    def restore(self) -> None:
        """Close what lived through the cut; new connections are relayed again."""
        self.cut_now = False
        for connection in list(self._connections):
            connection.close()
        self._connections.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        broker: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        if not self.cut_now:
            try:
                broker = await asyncio.open_connection("127.0.0.1", self.broker_port)
            except OSError:
                writer.close()  # the broker is down: the gateway sees a refused connection
                return
        connection = _Connection(writer, broker[1] if broker else None)
        self._connections.add(connection)
        parser = MqttStreamParser()
        upstream = asyncio.create_task(self._pump(reader, connection.broker, parser))
        connection.tasks.append(upstream)
        if broker is not None:
            connection.tasks.append(asyncio.create_task(self._pump(broker[0], writer, None)))
        with contextlib.suppress(asyncio.CancelledError):
            await upstream
        connection.close()
        self._connections.discard(connection)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter | None,
        parser: MqttStreamParser | None,
    ) -> None:
        try:
            while data := await source.read(_CHUNK):
                if parser is not None and not self._tap(parser, data):
                    parser = None  # a stream it cannot frame is not guessed at
                if sink is None or self.cut_now:
                    continue  # the black hole
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if sink is not None:
                sink.close()

    def _tap(self, parser: MqttStreamParser, data: bytes) -> bool:
        try:
            for publish in parser.feed(data):
                self.on_publish(publish)
        except (MqttFrameError, MalformedPacket, UnicodeDecodeError, IndexError) as err:
            self.tap_errors += 1
            log.warning("mqtt tap could not frame the gateway's stream", error=str(err))
            return False
        return True
