"""The ingestor's broker side: one MQTT 5 session, batches off the shared subscription, PUBACKs.

Messages are acknowledged manually, in the order they came, only after the ingestor recorded
them and ran detection on them; batches go through a pipeline: prepared, recorded, detected
(`IngestLink._consume`).
PUBLISH packets come off the socket through `cloud.mqtt_receive`, not paho's and aiomqtt's
message callbacks.
"""

from __future__ import annotations

import asyncio
import gc
import random
import ssl
from collections import deque

import aiomqtt
import structlog
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud.ingest import Inbound, Ingestor, PreparedBatch, StateStoreUnavailableError
from cloud.mqtt_decoding import install_fast_publish_decoding
from cloud.mqtt_receive import install_publish_reader
from cloud.telemetry import TelemetryStoreError
from leasewatch.wire import HEALTH_FILTER, STATUS_FILTER, TELEMETRY_FILTER

log = structlog.get_logger(__name__)

SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
# A SUBACK comes after the session's queued messages (up to Receive Maximum of them): on a
# loaded machine a restarted worker timed out at aiomqtt's default of 10 s, again and again.
SUBSCRIBE_TIMEOUT_S = 60.0

# A worker allocates hundreds of objects per message (readings, timestamps, rows), nearly all
# freed by reference counting. CPython's cyclic collector, run by allocation counts, kept
# interrupting batches: at the default threshold (700) a quarter of the worker's CPU, at
# 10,000 still 13 % (its collections walk the batch's young, still-referenced containers).
# The link runs it between batches instead, when they are gone (docs/ingestion.md).
FULL_COLLECTION_EVERY = 50  # batches (or idle half-seconds) between collections of all generations

# Recorded batches waiting for (or in) detection, at most: a worker whose detection falls
# behind its state transactions stops taking batches rather than holding unacknowledged ones.
DETECTING_AT_MOST = 2


class BetweenBatchesGC:
    """The cyclic garbage collector, run between batches instead of by allocation counts."""

    def __init__(self) -> None:
        self.collections = 0

    def start(self) -> None:
        """Take over from the allocation-count trigger, for the whole process."""
        gc.freeze()  # what the started process holds is never scanned again
        gc.disable()

    def stop(self) -> None:
        """Hand collection back to the allocation-count trigger (the link stopped)."""
        gc.enable()

    def collect(self) -> None:
        """A young-generation pass; every FULL_COLLECTION_EVERY calls, all generations."""
        self.collections += 1
        gc.collect(0 if self.collections % FULL_COLLECTION_EVERY else 2)


class IngestLink:
    """One ingestor's subscription: reconnects, batches, and acknowledges what it stored."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self.gc = BetweenBatchesGC()

    async def run(self, stop: asyncio.Event) -> None:
        """Stay subscribed until `stop` is set, reconnecting with capped, jittered back-off."""
        install_fast_publish_decoding()
        self.gc.start()
        try:
            await self._stay_subscribed(stop)
        finally:
            self.gc.stop()

    async def _stay_subscribed(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                await self._connection(stop)
                attempt = 0
            except aiomqtt.MqttError as err:
                self.ingestor.connected.clear()
                attempt += 1
                delay = min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning("ingestor lost the broker", error=str(err), retry_in=round(delay, 2))
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    continue

    def _client(self) -> aiomqtt.Client:
        s = self.ingestor.settings
        v5 = s.mqtt_protocol == 5
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
            # Unacknowledged messages in flight to this worker: the broker stops sending beyond
            # this, which bounds memory (aiomqtt's queue is unbounded; a bounded one would drop).
            properties.ReceiveMaximum = min(65535, 4 * s.ingest_batch_max)
        tls = ssl.create_default_context(cafile=str(s.mqtt_ca_file) if s.mqtt_ca_file else None)
        client = aiomqtt.Client(
            s.mqtt_host,
            s.mqtt_port,
            username=s.mqtt_username,
            password=s.mqtt_password.get_secret_value(),
            identifier=s.mqtt_client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else False,
            clean_start=False if v5 else MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            tls_context=tls if s.mqtt_tls else None,
            timeout=SUBSCRIBE_TIMEOUT_S,
        )
        # PUBACK only once the message is stored: paho's manual acknowledgement, set before CONNECT
        client._client.manual_ack_set(True)
        return client

    def _filters(self) -> list[str]:
        group = self.ingestor.settings.mqtt_shared_group
        prefix = f"$share/{group}/" if group else ""
        return [prefix + TELEMETRY_FILTER, prefix + STATUS_FILTER, prefix + HEALTH_FILTER]

    async def _connection(self, stop: asyncio.Event) -> None:
        client = self._client()
        queue: asyncio.Queue[Inbound] = asyncio.Queue()

        def received(topic: str, payload: bytes, mid: int, qos: int) -> None:
            queue.put_nowait(Inbound(topic, payload, mid, qos))

        install_publish_reader(client._client, received)
        async with client:
            # Consume before subscribing: a broker may hold a SUBACK until the retained messages
            # of an earlier subscription are acknowledged, and we acknowledge only what we stored.
            reader = asyncio.create_task(self._read(client, queue))
            consumer = asyncio.create_task(self._consume(client, queue, stop, reader))
            try:
                for topic_filter in self._filters():
                    await client.subscribe(topic_filter, qos=1)
                self.ingestor.connected.set()
                self.ingestor.consuming = True
                log.info("ingestor subscribed", filters=self._filters())
                await consumer
            finally:
                self.ingestor.consuming = False
                self.ingestor.connected.clear()
                for task in (consumer, reader):
                    task.cancel()
                await asyncio.gather(consumer, reader, return_exceptions=True)

    async def _read(self, client: aiomqtt.Client, queue: asyncio.Queue[Inbound]) -> None:
        """Watch the connection; pass on what paho itself still delivers (module doc)."""
        try:
            async for m in client.messages:
                await queue.put(Inbound(str(m.topic), _payload_bytes(m.payload), m.mid, m.qos))
        finally:
            self.ingestor.connected.clear()  # the batch in hand cannot be acknowledged any more

    async def _consume(
        self,
        client: aiomqtt.Client,
        queue: asyncio.Queue[Inbound],
        stop: asyncio.Event,
        reader: asyncio.Task[None],
    ) -> None:
        """Batches off the queue in a three-stage pipeline: while batch N+1 is prepared
        (decoded, its readings written), batch N is recorded (the state transaction) and
        batch N-1 goes through detection. Each stage takes batches one at a time, in order;
        PUBACKs go out in order, after detection. On SQLite the two transactions take different
        write locks (`cloud.sqlite_files`), so a worker's detection no longer waits for its
        own next ingest transaction, nor that one for it."""
        recording: asyncio.Task[object] | None = None
        detecting: deque[asyncio.Task[None]] = deque()
        try:
            while not stop.is_set():
                if reader.done() and queue.empty():
                    reader.result()  # re-raises the MqttError that ended the connection
                    raise aiomqtt.MqttError("the broker closed the message stream")
                batch = await self._collect(queue, stop)
                self.ingestor.metrics.pending.set(len(batch) + queue.qsize())
                if not batch:
                    await _drain(recording, detecting)
                    recording = None
                    self.gc.collect()
                    continue
                prepared = await self.ingestor.prepare(batch, stop)
                if recording is not None:
                    await recording  # one state transaction at a time, in batch order
                while len(detecting) >= DETECTING_AT_MOST:
                    await detecting.popleft()
                recording = asyncio.create_task(self.ingestor.record(prepared, stop))
                after = detecting[-1] if detecting else None
                detecting.append(
                    asyncio.create_task(
                        self._detect_and_ack(
                            client, batch, prepared, stop, recorded=recording, after=after
                        )
                    )
                )
            await _drain(recording, detecting)
        except (TelemetryStoreError, StateStoreUnavailableError):
            return  # stopping during a store outage: leave the messages unacknowledged
        finally:
            pending = [t for t in (recording, *detecting) if t is not None and not t.done()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _detect_and_ack(
        self,
        client: aiomqtt.Client,
        batch: list[Inbound],
        prepared: PreparedBatch,
        stop: asyncio.Event,
        *,
        recorded: asyncio.Task[object],
        after: asyncio.Task[None] | None,
    ) -> None:
        """Detection of a recorded batch, after the previous batch's; then its PUBACKs."""
        await recorded
        if after is not None:
            await after
        await self.ingestor.detect(prepared, stop)
        for message in batch:
            if message.qos > 0:
                client._client.ack(message.mid, message.qos)
        self.ingestor.metrics.acknowledged.inc(len(batch))
        self.gc.collect()  # what the batch allocated is gone: a short pass

    async def _collect(self, queue: asyncio.Queue[Inbound], stop: asyncio.Event) -> list[Inbound]:
        """Up to ingest_batch_max messages, waiting at most ingest_batch_wait after the first."""
        try:
            first = await asyncio.wait_for(queue.get(), timeout=0.5)
        except TimeoutError:
            return []
        batch = [first]
        limit = self.ingestor.settings.ingest_batch_max
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ingestor.settings.ingest_batch_wait
        while len(batch) < limit and not stop.is_set():
            while len(batch) < limit and not queue.empty():  # what is there: no task per message
                batch.append(queue.get_nowait())
            left = deadline - loop.time()
            if len(batch) >= limit or left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), timeout=left))
            except TimeoutError:
                break
        return batch


async def _drain(
    recording: asyncio.Task[object] | None, detecting: deque[asyncio.Task[None]]
) -> None:
    """Wait for every batch in the pipeline to be recorded, detected and acknowledged."""
    if recording is not None:
        await recording
    while detecting:
        await detecting.popleft()


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return str(payload).encode() if payload is not None else b""
