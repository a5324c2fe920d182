"""Fleet mode: thousands of simulated gateways publishing straight to MQTT, and a report of it.

Each gateway is a scenario asset (`firmware_sim.scenarios`): its batches follow the wire contract
(device, boot, per-boot seq, per-reading timestamps in simulated time, `historical` on replays)
and the scenario's silences and data faults (duplicates, late, out of order, malformed) are
applied to what it publishes. A handful of MQTT connections (aiomqtt, QoS 1) carry all gateways,
each a slice of them, with `window` publishes awaiting their PUBACK at a time.

Credentials: Mosquitto's ACL is per username and one connection has one username, so per-device
credentials would need one connection per device. Fleet mode logs in instead as a *simulator*
principal (`cloud.broker_access.Role.SIMULATOR`: may write every device's telemetry and status
topics, nothing else). It exists for load tests and must never be provisioned in production.
Per-connection last wills cannot stand for one device, so the gateway stream publishes the
offline status the broker would have published for it.

Time: window k (`batch_s` simulated seconds) is published from `start + (k+1) * batch_s / speed`
real seconds on, the gateways of each connection spread evenly over the next window (a fleet
whose gateways all sent at the same instant would load the cloud in bursts); `speed=None`
publishes as fast as the broker acknowledges.

Delivery, like a gateway (`edge.link`): a publish the broker acknowledges without delivering
(PUBACK 0x10 "no matching subscribers", which Mosquitto answers after a restart until the
ingestors' shared subscription is back, or a failure code >= 0x80) is kept and published again
with back-off; a connection that drops is made again (capped, jittered back-off, persistent
session) and what had no PUBACK yet is published again first. The first connect must succeed
(a wrong password is reported, not retried). `give_up_s` after the run's end, or after that long
without a connection, what is left is abandoned and counted. The report (`fleet_report`) holds
only what the broker took, with the number of attempts; repeats are counted as retries.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import tomllib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.mqtt_client import backoff_delay
from edge.puback import NO_MATCHING_SUBSCRIBERS
from firmware_sim.fleet_publish import Acknowledgements, install_fast_puback
from firmware_sim.fleet_report import FleetReport, FleetStats
from firmware_sim.scenarios.expand import ResolvedScenario
from firmware_sim.scenarios.gateway import GatewayStream, Outgoing
from firmware_sim.scenarios.run import simulated_assets, windows

_QUIET = logging.getLogger("firmware_sim.fleet.mqtt")
_QUIET.setLevel(logging.ERROR)  # aiomqtt warns about many pending publishes: that is the point
__all__ = ["BrokerTarget", "FleetError", "FleetPlan", "FleetReport", "FleetStats", "run_fleet"]


class FleetError(Exception):
    """Fleet mode could not run or lost its broker connection."""


@dataclass(frozen=True)
class BrokerTarget:
    """Where fleet mode publishes and as whom."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    protocol: int = 5  # 5 or 4 (MQTT 3.1.1)


@dataclass(frozen=True)
class FleetPlan:
    """How fleet mode runs: pace, length, connections, report."""

    speed: float | None  # simulated seconds per real second; None = as fast as acknowledged
    duration_s: float | None = None  # real seconds; None = the whole scenario
    connections: int = 4
    window: int = 64  # publishes awaiting PUBACK per connection
    boot_tag: str = "fleet"
    report: Path | None = None
    client_prefix: str = "lw-fleet"
    keep_undelivered: bool = True  # retry what the broker took without delivering (0x10, >= 0x80)
    retry_max_s: float = 2.0  # cap of the back-off between publishes of a message not delivered
    reconnect_max_s: float = 5.0  # cap of the reconnect back-off
    give_up_s: float = 60.0  # after the run's end (or that long offline): abandon, counted
    session_expiry_s: int = 300  # MQTT 5 session kept by the broker across a reconnect


@dataclass(frozen=True)
class FleetShare:
    """The part of the gateways one of several fleet processes publishes: every `of`th."""

    number: int
    of: int
    ready: Callable[[], None]  # called once the gateways are built, before the clock starts


class _Pace:
    """When each window may be published, and when the run must stop."""

    def __init__(self, resolved: ResolvedScenario, plan: FleetPlan, stats: FleetStats) -> None:
        self.batch_s = resolved.scenario.batch_s
        self.plan = plan
        self.stats = stats
        self.start = time.monotonic()

    def expired(self) -> bool:
        """Whether the run has used up its duration."""
        limit = self.plan.duration_s
        return limit is not None and time.monotonic() - self.start >= limit

    def deadline(self) -> float | None:
        """When the duration ends (monotonic), None for the whole scenario."""
        limit = self.plan.duration_s
        return None if limit is None else self.start + limit

    async def wait_for(self, index: int, share: float = 0.0) -> None:
        """Sleep until window `index` (plus `share` of the next) is due, noting any lag."""
        if self.plan.speed is None:
            return
        due = self.start + (index + 1 + share) * self.batch_s / self.plan.speed
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            self.stats.max_lag_s = max(self.stats.max_lag_s, -delay)


@dataclass
class _Pending:
    """A message taken from the lane and how often it was published already."""

    message: Outgoing
    attempts: int = 0


class _Lane:
    """One connection's messages: queued by the producer, held for retry, and when it ended."""

    def __init__(self, pace: _Pace, report: FleetReport) -> None:
        self.plan = plan = pace.plan
        self.pace = pace
        self.report = report
        self.queue: asyncio.Queue[Outgoing | None] = asyncio.Queue(maxsize=plan.window * 4)
        self.held: deque[_Pending] = deque()  # lost with a connection: published first
        self.ended_at: float | None = None  # the producer is done (monotonic)

    async def take(self) -> _Pending | None:
        """The next message (held ones first); None once the producer is done and all went."""
        if self.held:
            return self.held.popleft()
        message = await self.queue.get()
        if message is None:
            self.queue.put_nowait(None)  # the end stays visible to every publisher
            return None
        return _Pending(message)

    def give_up(self) -> bool:
        """Whether the run ended (or used up its duration) `give_up_s` ago: stop retrying then."""
        ended = self.ended_at or self.pace.deadline()
        return ended is not None and time.monotonic() - ended > self.plan.give_up_s

    def abandon(self) -> None:
        """Count every message still held or queued as abandoned (the run gives up)."""
        left = len(self.held)
        while not self.queue.empty():
            left += self.queue.get_nowait() is not None
        self.report.stats.abandoned += left


def _client(target: BrokerTarget, identifier: str, plan: FleetPlan) -> aiomqtt.Client:
    """One publishing connection with a persistent session, as a gateway keeps."""
    v5 = target.protocol == 5
    properties = None
    if v5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = plan.session_expiry_s
    client = aiomqtt.Client(
        target.host,
        target.port,
        username=target.username,
        password=target.password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        clean_session=None if v5 else False,
        clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
        properties=properties,
        # no cap in paho (it scans every message in flight on each PUBACK): the `window`
        # publishers of the connection keep at most that many in flight themselves
        max_inflight_messages=0,
        timeout=30.0,
        logger=_QUIET,
    )
    client.pending_calls_threshold = plan.window + 1
    return client


async def _deliver(acks: Acknowledgements, item: _Pending, lane: _Lane) -> None:
    """Publish until the broker keeps the message (0x10 and >= 0x80 are retried with back-off)."""
    plan, report, message = lane.plan, lane.report, item.message
    while True:
        if item.attempts:
            report.stats.retries += 1
        item.attempts += 1
        started = time.perf_counter()
        code = await acks.publish(message.topic, message.payload, retain=message.retain)
        if code == NO_MATCHING_SUBSCRIBERS or code >= 0x80:
            report.stats.not_delivered += 1
            if plan.keep_undelivered and not lane.give_up():
                await asyncio.sleep(min(plan.retry_max_s, 0.1 * 2 ** min(item.attempts, 8)))
                continue
            if plan.keep_undelivered:
                report.stats.abandoned += 1
                return
        report.sent(message, time.perf_counter() - started, item.attempts)
        return


async def _publisher(acks: Acknowledgements, lane: _Lane) -> None:
    """Publish the lane's messages one at a time; a lost one is held for the next connection."""
    while (item := await lane.take()) is not None:
        try:
            await _deliver(acks, item, lane)
        except BaseException:
            lane.held.append(item)  # connection lost (or cancelled) before the broker kept it
            raise


async def _watch(client: aiomqtt.Client) -> None:
    """Raise MqttError as soon as the connection drops (pending publishes would only time out)."""
    async for _ in client.messages:
        pass


async def _session(client: aiomqtt.Client, lane: _Lane) -> None:
    """Publish through one connection until the lane is empty or the connection drops."""
    acks = Acknowledgements(client)
    async with asyncio.TaskGroup() as group:
        watcher = group.create_task(_watch(client))
        publishers = [group.create_task(_publisher(acks, lane)) for _ in range(lane.plan.window)]
        await asyncio.wait(publishers)
        watcher.cancel()


async def _keep_connected(number: int, target: BrokerTarget, lane: _Lane) -> None:
    """Reconnect with capped, jittered back-off until the lane is done; first connect must work."""
    # a wrong password or address on the first connect is a mistake to report, not an outage
    plan, rng = lane.plan, random.Random(number)
    identifier, where = f"{plan.client_prefix}-{number}", f"{target.host}:{target.port}"
    connected, attempt, failing_since = False, 0, time.monotonic()
    while True:
        try:
            async with _client(target, identifier, plan) as client:
                lane.report.stats.reconnects += connected
                connected, attempt = True, 0
                await _session(client, lane)
                return
        except* aiomqtt.MqttError as errors:
            error = _leaves(errors)[0]
            if not connected:
                raise FleetError(f"connection {number} to {where}: {error}") from error
            failing_since = failing_since if attempt else time.monotonic()
            if lane.give_up() or time.monotonic() - failing_since > plan.give_up_s:
                lane.abandon()
                raise FleetError(f"connection {number} to {where} lost: {error}") from error
        await asyncio.sleep(backoff_delay(attempt, 0.1, plan.reconnect_max_s, rng))
        attempt += 1


async def _produce(
    streams: Sequence[GatewayStream],
    lane: _Lane,
    count: int,
    pace: _Pace,
    on_window: Callable[[], None],
) -> None:
    """Generate each window of every gateway in the slice and queue its messages."""
    for index in range(count):
        if pace.expired():
            break
        for position, stream in enumerate(streams):
            # real gateways do not send in step: spread the slice's gateways over the window
            await pace.wait_for(index, position / len(streams))
            for message in stream.window(index):
                await lane.queue.put(message)
        on_window()
    lane.ended_at = time.monotonic()
    await lane.queue.put(None)


async def _connection(
    number: int,
    *,
    streams: Sequence[GatewayStream],
    target: BrokerTarget,
    pace: _Pace,
    report: FleetReport,
    count: int,
) -> None:
    """One connection publishing for a slice of the gateways until the run ends."""
    lane = _Lane(pace, report)
    done = [0]

    def on_window() -> None:
        """Count a finished window (connection 0 speaks for the progress bar)."""
        done[0] += 1
        if number == 0:
            report.stats.windows_done = done[0]

    async with asyncio.TaskGroup() as group:
        group.create_task(_produce(streams, lane, count, pace, on_window))
        await _keep_connected(number, target, lane)


async def run_fleet(
    resolved: ResolvedScenario,
    target: BrokerTarget,
    plan: FleetPlan,
    report: FleetReport,
    *,
    share: FleetShare | None = None,
) -> FleetStats:
    """Run the fleet (or a share of it) until the scenario ends or the duration is up."""
    if plan.connections < 1 or plan.window < 1:
        raise FleetError("connections and window must be at least 1")
    install_fast_puback()
    gateways = [a.gateway for a in simulated_assets(resolved, boot_tag=plan.boot_tag)]
    if share is not None:
        gateways = gateways[share.number :: share.of]
        share.ready()
    slices = [gateways[n :: plan.connections] for n in range(plan.connections)]
    pace = _Pace(resolved, plan, report.stats)
    report.stats.started = pace.start
    count = windows(resolved)
    try:
        async with asyncio.TaskGroup() as group:
            for number, part in enumerate(slices):
                if part:
                    group.create_task(
                        _connection(
                            number,
                            streams=part,
                            target=target,
                            pace=pace,
                            report=report,
                            count=count,
                        )
                    )
    except* FleetError as errors:
        raise FleetError("; ".join(str(e) for e in _leaves(errors))) from errors
    finally:
        report.stats.unsent = sum(g.pending for g in gateways)
        report.close()
    return report.stats


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions inside nested exception groups."""
    found: list[BaseException] = []
    for error in group.exceptions:
        found += _leaves(error) if isinstance(error, BaseExceptionGroup) else [error]
    return found


def load_credentials(path: Path) -> tuple[str, str]:
    """(username, password) from a TOML file with those two keys (keep it mode 600)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise FleetError(f"{path}: cannot read credentials: {err}") from err
    username, password = document.get("username"), document.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise FleetError(f"{path}: needs string keys username and password")
    return username, password
