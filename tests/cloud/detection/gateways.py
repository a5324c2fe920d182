"""Messages of simulated gateways for the detection tests, stamped on the wall clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from leasewatch.wire import GatewayStatus, MachineEvent, Reading, TelemetryBatch


@dataclass
class Gateway:
    """One gateway: a boot, a sequence counter, and batches of readings every `step`."""

    device: str
    boot: str = "b1"
    seq: int = 0
    step: timedelta = timedelta(seconds=10)
    code: float = 0.0  # the controller's fault code it reports
    sent: list[TelemetryBatch] = field(default_factory=list)

    def batch(
        self,
        start: datetime,
        *,
        samples: int = 10,
        historical: bool = False,
        events: tuple[MachineEvent, ...] = (),
    ) -> TelemetryBatch:
        """`samples` readings per metric from `start`, one per second."""
        readings = []
        for i in range(samples):
            ts = start + timedelta(seconds=i)
            readings += [
                Reading(sensor="plc", metric="running", ts=ts, value=1.0),
                Reading(sensor="plc", metric="motor_current", ts=ts, value=40.0 + i % 3),
                Reading(sensor="plc", metric="fault_code", ts=ts, value=self.code),
            ]
        sent_at = start + timedelta(seconds=samples)
        batch = TelemetryBatch(
            device=self.device, boot=self.boot, seq=self.seq, sent_at=sent_at,
            historical=historical, readings=readings, events=list(events),
        )  # fmt: skip
        self.seq += 1
        self.sent.append(batch)
        return batch

    def stream(self, start: datetime, end: datetime, **kwargs: object) -> list[TelemetryBatch]:
        """Batches every `step` from start until end."""
        out = []
        at = start
        while at < end:
            out.append(self.batch(at, **kwargs))  # type: ignore[arg-type]
            at += self.step
        return out

    def status(self, state: str, ts: datetime) -> GatewayStatus:
        """A birth (online) or last will (offline)."""
        return GatewayStatus(device=self.device, boot=self.boot, state=state, ts=ts)  # type: ignore[arg-type]


def minute_start(now: datetime | None = None) -> datetime:
    """The start of the current UTC minute."""
    return (now or datetime.now(UTC)).replace(second=0, microsecond=0)
