"""Readings served, sent and stored per fault: the outcome table of a chaos run.

A gateway's poll is one Modbus read the simulated machine answered (`ServedRead`); each gives
one reading per register field. "Sent" is what the gateway published: a reading in a
telemetry message seen on its wire (every message passes the relay), by (device, boot, seq).
Readings are matched to the poll that produced them by timestamp (the agent stamps a poll
just before its request goes out), shifted back by the gateway's clock step when one applied.
A poll with no reading on the wire was never taken: when it lies within `KILL_WINDOW` before a
kill -9, it was answered but the agent died before its durable write (counted apart);
otherwise the agent did not keep it (a timed-out read, or dropped for a full disk).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from leasewatch.chaos.collect import StoredState
from leasewatch.chaos.faults import Phase
from leasewatch.chaos.wire_record import MessageKey, ReadingKey, WireRecord

KILL_WINDOW = timedelta(seconds=2)
MATCH_EARLY_MS = 1  # a served read may carry a stamp up to 1 ms before the agent's
MATCH_LATE_MS = 1500  # and come back up to one timeout plus a retry after it
STEP_SLACK = timedelta(seconds=1)
#: After a broker restart, how long a PUBACK may come from a subscriber other than the ingestors
#: (see docs/chaos.md: Mosquitto 2.0.11 does not restore shared subscriptions).
RESUBSCRIBE_WINDOW = timedelta(seconds=5)


@dataclass
class FaultOutcome:
    """One row of the table: what a fault did to the readings and the alerts."""

    fault: str
    notes: str
    seconds: float
    served: int = 0
    not_taken_killed: int = 0
    not_taken_other: int = 0
    sent: int = 0
    stored: int = 0
    lost: int = 0
    lost_resubscribing: int = 0  # of `lost`: sent while the ingestors had not subscribed again
    lost_rejected: int = 0  # of `lost`: in a message the ingestor rejected (a dead letter)
    duplicated: int = 0
    sent_messages: int = 0
    lost_messages: int = 0
    resent_messages: int = 0
    alerts: int | None = None
    alert_detail: list[str] = field(default_factory=list)


@dataclass
class Poll:
    """A served read of one gateway and the readings on the wire that came from it."""

    device: str
    at: datetime
    fields: int
    readings: set[ReadingKey] = field(default_factory=set)


def _offset_at(steps: list[tuple[datetime, float]], at: datetime) -> list[float]:
    """The clock offsets that may have applied at `at` (two near a step)."""
    offsets = {0.0}
    current = 0.0
    for when, offset in steps:
        if at >= when + STEP_SLACK:
            current = offset
        elif at >= when - STEP_SLACK:
            offsets.add(offset)
    return sorted(offsets | {current})


@dataclass
class PollMatch:
    """How the sent readings matched the served polls."""

    unmatched: list[ReadingKey] = field(default_factory=list)
    #: Readings whose stamp carries a clock step (matched to their poll only once shifted back).
    stepped: int = 0


def match_polls(
    polls: dict[str, list[Poll]], wire: WireRecord, steps: dict[str, list[tuple[datetime, float]]]
) -> PollMatch:
    """Attach every sent reading to its poll; the readings that match none or a stepped clock."""
    stamps = {d: [round(p.at.timestamp() * 1000) for p in ps] for d, ps in polls.items()}
    match = PollMatch()
    for message in wire.messages.values():
        for key in message.readings:
            found = _poll_for(
                key, polls.get(key[0], []), stamps.get(key[0], []), steps.get(key[0], [])
            )
            if found is None:
                match.unmatched.append(key)
            else:
                found[0].readings.add(key)
                match.stepped += found[1] != 0.0
    return match


def _poll_for(
    key: ReadingKey, polls: list[Poll], stamps: list[int], steps: list[tuple[datetime, float]]
) -> tuple[Poll, float] | None:
    """The poll a reading came from, and the clock offset its stamp carries."""
    candidates = {0.0, *(offset for _, offset in steps)}
    for offset in sorted(candidates, key=abs):  # the true clock first
        true_ms = key[3] - round(offset * 1000)
        index = bisect.bisect_left(stamps, true_ms - MATCH_EARLY_MS)
        if index < len(stamps) and stamps[index] <= true_ms + MATCH_LATE_MS:
            poll = polls[index]
            if offset in _offset_at(steps, poll.at):
                return poll, offset
    return None


def _phase_of(phases: list[Phase], at: datetime) -> Phase | None:
    for phase in phases:
        if phase.started <= at and (phase.ended is None or at < phase.ended):
            return phase
    return None


def outcomes(
    phases: list[Phase],
    polls: dict[str, list[Poll]],
    wire: WireRecord,
    stored: StoredState,
    *,
    alerts_measured: bool,
) -> list[FaultOutcome]:
    """One outcome per phase."""
    rows = {
        id(p): FaultOutcome(
            p.fault, "; ".join(p.notes), ((p.ended or p.started) - p.started).total_seconds()
        )
        for p in phases
    }
    lookup = _Lookup(stored, defaultdict(list), _resubscribing(phases, wire, stored))
    for key, message in wire.messages.items():
        for reading in message.readings:
            lookup.carriers[reading].append(key)
    for device_polls in polls.values():
        for poll in device_polls:
            phase = _phase_of(phases, poll.at)
            if phase is not None:
                _count_poll(rows[id(phase)], phase, poll, lookup)
    _count_messages(rows, phases, polls, wire, stored)
    _count_alerts(rows, phases, stored, measured=alerts_measured)
    return [rows[id(p)] for p in phases]


@dataclass(frozen=True)
class _Lookup:
    stored: StoredState
    carriers: dict[ReadingKey, list[MessageKey]]
    resubscribing: set[MessageKey]  # lost messages first sent in a resubscription window


def _resubscribing(phases: list[Phase], wire: WireRecord, stored: StoredState) -> set[MessageKey]:
    """Lost messages the gateway first sent within RESUBSCRIBE_WINDOW after a broker restart."""
    backs = [at for phase in phases for at in phase.broker_back]
    return {
        key
        for key, message in wire.messages.items()
        if key not in stored.ledger
        and any(timedelta(0) <= message.first_seen - at <= RESUBSCRIBE_WINDOW for at in backs)
    }


def _count_poll(row: FaultOutcome, phase: Phase, poll: Poll, lookup: _Lookup) -> None:
    row.served += poll.fields
    if not poll.readings:
        killed = any(
            device == poll.device and timedelta(0) <= when - poll.at <= KILL_WINDOW
            for device, when in phase.edge_kills
        )
        if killed:
            row.not_taken_killed += poll.fields
        else:
            row.not_taken_other += poll.fields
        return
    for reading in poll.readings:
        row.sent += 1
        carried_by = lookup.carriers[reading]
        in_ledger = [m for m in carried_by if m in lookup.stored.ledger]
        if reading in lookup.stored.readings and in_ledger:
            row.stored += 1
        else:
            row.lost += 1
            row.lost_resubscribing += any(m in lookup.resubscribing for m in carried_by)
            row.lost_rejected += any(m in lookup.stored.dead_lettered for m in carried_by)
        row.duplicated += max(0, len(in_ledger) - 1)


def _count_messages(
    rows: dict[int, FaultOutcome],
    phases: list[Phase],
    polls: dict[str, list[Poll]],
    wire: WireRecord,
    stored: StoredState,
) -> None:
    """Messages by (device, boot, seq), in the phase of their oldest reading's poll."""
    poll_of = {r: p for ps in polls.values() for p in ps for r in p.readings}
    for key, message in wire.messages.items():
        first = min((poll_of[r].at for r in message.readings if r in poll_of), default=None)
        phase = _phase_of(phases, first) if first is not None else None
        if phase is None:
            continue
        row = rows[id(phase)]
        row.sent_messages += 1
        row.lost_messages += key not in stored.ledger
        row.resent_messages += message.sends > 1


def _count_alerts(
    rows: dict[int, FaultOutcome], phases: list[Phase], stored: StoredState, *, measured: bool
) -> None:
    if not measured:
        return
    for phase in phases:
        rows[id(phase)].alerts = 0
    for alert in stored.alerts:
        opened_in = _phase_of(phases, alert.opened_at)
        if opened_in is not None:
            row = rows[id(opened_in)]
            row.alerts = (row.alerts or 0) + 1
            row.alert_detail.append(f"{alert.device} {alert.detector} {alert.key}")


def stored_twice(stored: StoredState) -> int:
    """Ledger readings beyond the distinct readings stored (0 when nothing is stored twice)."""
    return max(0, sum(stored.ledger.values()) - len(stored.readings))


def wire_counts(wire: WireRecord) -> Counter[str]:
    """Messages and re-sends seen on the gateways' wires."""
    counts: Counter[str] = Counter()
    for message in wire.messages.values():
        counts["messages"] += 1
        counts["resent"] += message.sends > 1
    return counts
