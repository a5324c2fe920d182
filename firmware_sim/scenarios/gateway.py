"""What one simulated gateway publishes, window by window: the wire contract plus the scenario.

Each batch window (`batch_s` of simulated time) the gateway seals the samples it took into one
TelemetryBatch numbered per boot, exactly as the edge agent does, and publishes it at the end of
the window. Silences and data faults change that:

- network outage: an offline status (the last will the broker would publish) at the start; the
  batches sealed meanwhile are buffered and replayed, `historical`, after an online status
  when the link is back;
- power cut: nothing at all (no will); the batch cut short is kept in the durable buffer and
  replayed after the reboot, which starts a new boot id with seq 0 and a birth message;
- tamper (gateway removed from the asset): a last batch with a `sensor_lost` event, then the
  offline will, then silence; a new boot when it is put back;
- duplicates: the same payload twice; late: published `delay_s` later (not historical: the
  gateway sent it on time); out of order: held back and published right after the next batch
  (which is itself left clean); malformed: a broken payload under a valid (device, boot, seq).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace

from firmware_sim.scenarios.asset import ScenarioAsset
from firmware_sim.scenarios.draws import Stream, draw
from firmware_sim.scenarios.encoding import (
    MALFORMED_VARIANTS,
    MachineEventSpec,
    Sample,
    encode_batch,
    encode_status,
    malformed,
)
from firmware_sim.scenarios.expand import Incident
from leasewatch.wire import status_topic, telemetry_topic

TAMPER_DETAIL = "tamper: gateway detached from the asset"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT publish of a gateway: what, when in simulated time, and why."""

    due: float  # simulated time it is published
    topic: str
    payload: bytes
    kind: str  # telemetry | status
    device: str
    boot: str
    seq: int  # -1 for a status message
    readings: int
    window: tuple[float, float]  # simulated time the readings cover (status: its instant)
    historical: bool = False
    retain: bool = False
    fault: str = ""  # duplicate | late | out_of_order | malformed
    detail: str = ""  # malformed: the variant; status: online | offline
    copy: int = 0


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """The scenario clock a gateway follows."""

    start_ts: float
    sample_s: int
    batch_s: int
    seed: int
    boot_tag: str = "b"


@dataclass(order=True, slots=True)
class _Queued:
    due: float
    priority: int
    order: int
    message: Outgoing = field(compare=False)


class GatewayStream:
    """The publishes of one gateway, generated window by window."""

    def __init__(
        self, asset: ScenarioAsset, incidents: tuple[Incident, ...], timing: StreamTiming
    ) -> None:
        """Index the silences and data faults of the asset."""
        self.asset = asset
        self.timing = timing
        self.device = asset.timeline.spec.device
        self._key = asset.timeline.spec.key
        self._topic = telemetry_topic(self.device)
        self._off = sorted(
            (i.start, i.end, i.kind) for i in incidents if i.kind in ("power_cut", "tamper")
        )
        self._outages = sorted((i.start, i.end) for i in incidents if i.kind == "network_outage")
        self._data_faults = tuple(i for i in incidents if i.category == "data_fault")
        self._boot_number = 0
        self._boot = f"{timing.boot_tag}-0"
        self._seq = 0
        self._powered = True
        self._restored_at = 0.0
        self._queue: list[_Queued] = []
        self._held: Outgoing | None = None  # out of order: published after the next batch
        self._order = 0

    @property
    def boot(self) -> str:
        """The current boot id."""
        return self._boot

    @property
    def pending(self) -> int:
        """Messages held back (buffered, late, out of order) and not yet published."""
        return len(self._queue) + (self._held is not None)

    def window(self, index: int) -> list[Outgoing]:
        """What the gateway publishes during window `index`, in publish order."""
        timing = self.timing
        t0 = timing.start_ts + index * timing.batch_s
        t1 = t0 + timing.batch_s
        if index == 0:
            self._status("online", t0)
        for start, end in self._outages:
            if t0 <= start < t1:
                self._status("offline", start)
            if t0 < end <= t1:
                self._status("online", end)
        if self._off:
            samples = self._sampled(t0, t1)
        else:  # never powered off: every sample is taken
            times = range(int(t0), int(t1), timing.sample_s)
            samples = list(zip(map(float, times), self.asset.values_over(times), strict=True))
        if samples:
            self._seal(samples, t1, self._link_up(t1))
        return self._due_until(t1)

    def _sampled(self, t0: float, t1: float) -> list[Sample]:
        """The samples of window [t0, t1) still unsealed at its end, with power cuts and tamper."""
        samples: list[Sample] = []
        previous = t0 - self.timing.sample_s
        for t in range(int(t0), int(t1), self.timing.sample_s):
            samples = self._power_events(samples, previous, t)
            previous = t
            if not self._powered:
                if t < self._restored_at:
                    continue
                self._power_back()
            samples.append((float(t), self.asset.values(t)))
        return self._power_events(samples, previous, t1 - 0.001)  # lost before the seal?

    def _power_events(self, samples: list[Sample], after: float, until: float) -> list[Sample]:
        """Handle power cuts and tamper starting in (after, until]; the samples still unsealed."""
        for off in self._off:
            if not after < off[0] <= until:
                continue
            if self._powered:
                self._power_lost(samples, off)
                samples = []
            self._restored_at = max(self._restored_at, off[1])
        return samples

    def _link_up(self, t: float) -> float:
        """When a message ready at `t` can leave: `t`, or the end of the outage it falls in."""
        for start, end in self._outages:
            if start <= t < end:
                return end
        return t

    def _power_lost(self, samples: list[Sample], off: tuple[float, float, str]) -> None:
        """Seal what was sampled; a tampered gateway says so and its will goes out."""
        self._powered = False
        at = off[0]
        if off[2] == "tamper":
            event: MachineEventSpec = ("machine", "sensor_lost", at, TAMPER_DETAIL)
            self._seal(samples, at, self._link_up(at), events=(event,))
            self._status("offline", at)
        elif samples:
            self._seal(samples, at, self._link_up(off[1]))

    def _power_back(self) -> None:
        """A reboot: new boot id, seq from 0, a birth message."""
        self._powered = True
        self._boot_number += 1
        self._boot = f"{self.timing.boot_tag}-{self._boot_number}"
        self._seq = 0
        self._status("online", self._restored_at)

    def _status(self, state: str, at: float) -> None:
        """Queue a retained status message at `at` (before telemetry due at the same time)."""
        payload = encode_status(self.device, self.boot, state, at)
        message = Outgoing(
            at, status_topic(self.device), payload, "status", self.device, self.boot, -1, 0,
            (at, at), retain=True, detail=state,
        )  # fmt: skip
        self._push(message, priority=0)

    def _seal(
        self,
        samples: list[Sample],
        at: float,
        due: float,
        events: tuple[MachineEventSpec, ...] = (),
    ) -> None:
        """Number the samples as one batch and queue it, with any data fault applied."""
        seq, self._seq = self._seq, self._seq + 1
        historical = due > at
        position = (samples[0][0], self.asset.timeline.position(samples[0][0])) if samples else None
        payload, count = encode_batch(
            self.device, self.boot, seq, due if historical else at,
            samples=samples, positions=[position] if position else [], events=events,
            historical=historical,
        )  # fmt: skip
        first = samples[0][0] if samples else at
        message = Outgoing(
            due, self._topic, payload, "telemetry", self.device, self.boot, seq, count, (first, at),
            historical=historical,
        )  # fmt: skip
        held, self._held = self._held, None
        if held is not None:  # the batch held back goes out right after this one
            self._push(message)
            self._push(replace(held, due=message.due + 0.001))
            return
        fault = None if historical else self._fault_for(at, seq)
        if fault is None:
            self._push(message)
        else:
            self._faulty(message, fault)

    def _faulty(self, message: Outgoing, fault: Incident) -> None:
        """Queue a batch as a data fault delivers it: twice, late, held back, or broken."""
        match fault.kind:
            case "duplicates":
                self._push(message)
                self._push(replace(message, fault="duplicate", copy=1))
            case "late":
                due = self._link_up(message.due + fault.delay_s)
                self._push(replace(message, due=due, fault="late"))
            case "out_of_order":
                self._held = replace(message, fault="out_of_order")
            case _:
                keys = (self._key, self._boot_number, message.seq)
                pick = draw(self.timing.seed, Stream.MALFORMED, *keys)
                variant = MALFORMED_VARIANTS[int(pick * len(MALFORMED_VARIANTS))]
                broken = malformed(message.payload, variant)
                self._push(replace(message, payload=broken, fault="malformed", detail=variant))

    def _fault_for(self, at: float, seq: int) -> Incident | None:
        """The data fault that hits the batch sealed at `at`, if any."""
        for incident in self._data_faults:
            if incident.start <= at < incident.end:
                keys = (self._key, self._boot_number, seq, incident.event)
                if draw(self.timing.seed, Stream.DATA_FAULT, *keys) < incident.message_share:
                    return incident
        return None

    def _push(self, message: Outgoing, priority: int = 1) -> None:
        """Queue a message; at equal due times status (0) goes before telemetry (1)."""
        self._order += 1
        heapq.heappush(self._queue, _Queued(message.due, priority, self._order, message))

    def _due_until(self, t: float) -> list[Outgoing]:
        """Pop the queued messages due by `t`, in publish order."""
        due = []
        while self._queue and self._queue[0].due <= t:
            due.append(heapq.heappop(self._queue).message)
        return due
