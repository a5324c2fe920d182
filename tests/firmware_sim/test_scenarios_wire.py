"""What simulated gateways publish: the wire contract, silences and data faults as labelled."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.scenarios import ResolvedScenario, load_scenario, resolve, run_scenario
from firmware_sim.scenarios.asset import METRICS, UNITS
from firmware_sim.scenarios.draws import draw
from firmware_sim.scenarios.encoding import encode_batch
from firmware_sim.scenarios.gateway import TAMPER_DETAIL, Outgoing
from firmware_sim.scenarios.labels import Label, labels_for, read_labels
from firmware_sim.scenarios.run import messages_of, simulated_assets, windows
from leasewatch.wire import (
    Reading,
    RejectedMessageError,
    TelemetryBatch,
    decode_status,
    decode_telemetry,
)

Messages = dict[str, list[Outgoing]]


def _published(resolved: ResolvedScenario) -> Messages:
    """Every publish of every gateway over the whole scenario, by device."""
    count = windows(resolved)
    return {a.gateway.device: list(messages_of(a, count)) for a in simulated_assets(resolved, "t")}


def _labels(resolved: ResolvedScenario) -> list[Label]:
    timelines = {a.timeline.spec.id: a.timeline for a in simulated_assets(resolved)}
    return labels_for(resolved, timelines)


def _ts(stamp: object) -> float:
    return datetime.fromisoformat(str(stamp)).timestamp()


Document = dict[str, object]


def _valid(messages: list[Outgoing]) -> list[tuple[Outgoing, Document]]:
    """Telemetry that is not malformed, parsed as plain JSON (the contract is checked apart)."""
    return [
        (m, json.loads(m.payload))
        for m in messages
        if m.kind == "telemetry" and m.fault != "malformed"
    ]


def _readings(document: Document) -> list[dict[str, object]]:
    readings = document["readings"]
    assert isinstance(readings, list)
    return readings


@pytest.fixture(scope="module")
def silence() -> tuple[ResolvedScenario, Messages, list[Label]]:
    """The silence scenario, what its gateways published, and its labels."""
    resolved = resolve(load_scenario("silence"))
    return resolved, _published(resolved), _labels(resolved)


@pytest.fixture(scope="module")
def data_faults() -> tuple[ResolvedScenario, Messages, list[Label]]:
    """The data-faults scenario, what its gateways published, and its labels."""
    resolved = resolve(load_scenario("data-faults"))
    return resolved, _published(resolved), _labels(resolved)


def test_batches_keep_the_contract_and_number_each_boot_from_zero(
    silence: tuple[ResolvedScenario, Messages, list[Label]],
) -> None:
    _, published, _ = silence
    for device, messages in published.items():
        seqs: dict[str, list[int]] = defaultdict(list)
        for n, message in enumerate(m for m in messages if m.kind == "telemetry"):
            seqs[message.boot].append(message.seq)
            if n % 20 and not message.historical:
                continue  # the full contract check on a sample and on every replay
            batch = decode_telemetry(message.topic, message.payload)
            assert batch.key == (device, message.boot, message.seq)
            assert batch.historical == message.historical
            first, last = message.window
            assert all(first <= r.ts.timestamp() <= last for r in batch.readings)
        for boot, numbers in seqs.items():
            assert sorted(numbers) == list(range(len(numbers))), (device, boot)


def test_run_hours_in_the_telemetry_match_the_day_summary(tmp_path: Path) -> None:
    resolved = resolve(load_scenario("smoke"))
    run_scenario(resolved, tmp_path)
    last: dict[tuple[str, str], tuple[float, float]] = {}
    for device, messages in _published(resolved).items():
        for _, batch in _valid(messages):
            for r in _readings(batch):
                if r["metric"] == "run_hours":
                    at = _ts(r["ts"])
                    key = (device, str(r["ts"])[:10])
                    if key not in last or at > last[key][0]:
                        last[key] = (at, float(str(r["value"])))
    rows = (tmp_path / "days.csv").read_text().splitlines()[1:]
    compared = 0
    for previous, row in itertools.pairwise(rows):
        asset, day, hours, _ = row.split(",")
        if previous.split(",")[0] != asset:
            continue
        before = last[(asset, previous.split(",")[1])][1]
        assert last[(asset, day)][1] - before == pytest.approx(float(hours), abs=0.04), row
        compared += 1
    assert compared == 5 * 13


def _window_messages(messages: list[Outgoing], label: Label) -> list[Outgoing]:
    """Messages published strictly inside a label's window."""
    start, end = _ts(label["start"]), _ts(label["end"])
    return [m for m in messages if start < m.due < end]


def test_outages_power_cuts_and_tamper_are_silent_as_labelled(
    silence: tuple[ResolvedScenario, Messages, list[Label]],
) -> None:
    _, published, labels = silence
    kinds = Counter(str(x["kind"]) for x in labels)
    assert {"network_outage", "power_cut", "tamper", "parked"} <= kinds.keys()
    for label in labels:
        messages = published[str(label["device"])]
        start, end = _ts(label["start"]), _ts(label["end"])
        inside = _window_messages(messages, label)
        if label["kind"] == "parked":
            running = {
                r["value"]
                for _, batch in _valid(inside)
                for r in _readings(batch)
                if r["metric"] == "running"
            }
            assert inside and running == {0.0}
            continue
        assert inside == [], label
        wills = [m for m in messages if m.kind == "status" and m.due == start]
        assert [m.detail for m in wills] == (["offline"] if label["last_will"] else []), label
        covered = [
            at
            for _, b in _valid(messages)
            for at in (_ts(r["ts"]) for r in _readings(b))
            if start <= at < end
        ]
        if label["data"] == "delayed":
            replayed = [m for m in messages if m.historical and start < m.window[1] <= end]
            assert covered and replayed and all(m.due >= end for m in replayed)
        else:
            assert covered == [], label


def test_a_power_cut_reboots_and_tamper_says_so(
    silence: tuple[ResolvedScenario, Messages, list[Label]],
) -> None:
    _, published, labels = silence
    (cut,) = [x for x in labels if x["kind"] == "power_cut" and x["asset"] == "cmp-202"]
    boots = {m.boot for m in published["cmp-202"] if m.kind == "telemetry"}
    assert len(boots) == 2
    (tamper,) = [x for x in labels if x["asset"] == "exc-203"]
    (last,) = [
        m
        for m in published["exc-203"]
        if m.kind == "telemetry" and m.due == _ts(tamper["start"]) and b'"events":[{' in m.payload
    ]
    events = decode_telemetry(last.topic, last.payload).events
    assert [(e.kind, e.detail) for e in events] == [("sensor_lost", TAMPER_DETAIL)]
    assert not [m for m in published["exc-203"] if m.due > _ts(tamper["start"])]
    statuses = [
        decode_status(m.topic, m.payload) for m in published["cmp-202"] if m.kind == "status"
    ]
    assert [s.state for s in statuses] == ["online", "online"]
    assert cut["new_boot"] is True


def test_data_faults_reach_the_wire_inside_their_labelled_windows(
    data_faults: tuple[ResolvedScenario, Messages, list[Label]],
) -> None:
    _, published, labels = data_faults
    windows_of: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for label in labels:
        windows_of[(str(label["device"]), str(label["kind"]))].append(
            (_ts(label["start"]), _ts(label["end"]))
        )
    names = {"duplicate": "duplicates", "late": "late", "out_of_order": "out_of_order"}
    seen: Counter[str] = Counter()
    for device, messages in published.items():
        for message in messages:
            if not message.fault:
                continue
            seen[message.fault] += 1
            sealed = message.window[1]
            spans = windows_of[(device, names.get(message.fault, message.fault))]
            assert any(a <= sealed < b for a, b in spans), message
            _check_fault(message, messages)
    assert {"duplicate", "late", "out_of_order", "malformed"} <= seen.keys()


def _check_fault(message: Outgoing, messages: list[Outgoing]) -> None:
    """What each data fault does to the message on the wire."""
    same_key = [m for m in messages if (m.boot, m.seq) == (message.boot, message.seq)]
    match message.fault:
        case "duplicate":
            assert len(same_key) == 2 and same_key[0].payload == same_key[1].payload
        case "malformed":
            with pytest.raises(RejectedMessageError):
                decode_telemetry(message.topic, message.payload)
        case "late":
            batch = decode_telemetry(message.topic, message.payload)
            assert message.due - batch.sent_at.timestamp() >= 29 * 60 and not batch.historical
        case "out_of_order":
            (after,) = [m for m in messages if m.boot == message.boot and m.seq == message.seq + 1]
            assert messages.index(after) == messages.index(message) - 1 and not after.fault


FAULT_OF_LABEL = {
    "duplicates": "duplicate",
    "late": "late",
    "out_of_order": "out_of_order",
    "malformed": "malformed",
}


def test_each_data_fault_label_hits_its_share_of_messages_and_late_ones_its_delay(
    data_faults: tuple[ResolvedScenario, Messages, list[Label]],
) -> None:
    """Label -> wire: every labelled window holds that fault, at the labelled share."""
    _, published, labels = data_faults
    hits: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    asked: dict[str, float] = {}
    for label in labels:
        kind, share = str(label["kind"]), float(str(label["message_share"]))
        assert asked.setdefault(kind, share) == share, "one share per kind in this scenario"
        start, end = _ts(label["start"]), _ts(label["end"])
        inside = [
            m
            for m in published[str(label["device"])]
            if m.kind == "telemetry" and start <= m.window[1] < end
        ]
        hit = [m for m in inside if m.fault == FAULT_OF_LABEL[kind]]
        messages = len({(m.boot, m.seq) for m in inside})
        assert messages >= 200 and hit, label
        assert len(hit) / messages == pytest.approx(share, abs=0.03), label
        hits[kind] += len(hit)
        keys[kind] += messages
        if kind == "late":
            delays = {
                round(m.due - decode_telemetry(m.topic, m.payload).sent_at.timestamp()) for m in hit
            }
            assert delays == {round(float(str(label["delay_s"])))}, label
    assert set(hits) == set(FAULT_OF_LABEL)
    for kind, count in hits.items():  # over the fleet, the share is close to what was asked
        assert count / keys[kind] == pytest.approx(asked[kind], abs=0.01), kind


def test_every_malformed_variant_is_rejected_by_the_cloud_decoder(
    data_faults: tuple[ResolvedScenario, Messages, list[Label]],
) -> None:
    _, published, _ = data_faults
    variants = {m.detail for ms in published.values() for m in ms if m.fault == "malformed"}
    assert variants == {"truncated", "nan_value", "bad_version"}


READING_VALUES = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10**6),
            st.tuples(*[st.none() | READING_VALUES for _ in METRICS]),
        ),
        min_size=1,
        max_size=8,
    ),
    position=st.none() | st.tuples(st.floats(-90, 90), st.floats(-180, 180)),
    historical=st.booleans(),
    seq=st.integers(min_value=0, max_value=2**31),
)
def test_the_fast_encoder_writes_what_the_wire_contract_reads(
    samples: list[tuple[int, tuple[float | None, ...]]],
    position: tuple[float, float] | None,
    historical: bool,
    seq: int,
) -> None:
    base = 1_740_000_000.0
    timed = [(base + offset / 1000, values) for offset, values in samples]
    positions = [(timed[0][0], position)] if position else []
    payload, count = encode_batch(
        "gw-1", "b-0", seq, base, samples=timed, positions=positions, historical=historical
    )
    readings = [
        Reading(
            sensor="machine",
            metric=metric,
            ts=datetime.fromtimestamp(round(t, 3), UTC),
            value=value,
            unit=unit,
        )
        for t, values in timed
        for metric, unit, value in zip(METRICS, UNITS, values, strict=True)
        if value is not None
    ]
    if position:
        at = datetime.fromtimestamp(round(timed[0][0], 3), UTC)
        for metric, value in zip(("lat", "lon"), position, strict=True):
            readings.append(
                Reading(sensor="gps", metric=metric, ts=at, value=round(value, 6), unit="deg")
            )
    if not readings:
        return  # a batch needs a reading or an event; the gateway never seals an empty one
    expected = TelemetryBatch(
        device="gw-1",
        boot="b-0",
        seq=seq,
        sent_at=datetime.fromtimestamp(base, UTC),
        historical=historical,
        readings=readings,
    )
    assert decode_telemetry("lw/v1/gw-1/telemetry", payload) == expected
    assert count == len(readings)


@given(st.lists(st.integers(min_value=-(2**70), max_value=2**70), min_size=1, max_size=6))
def test_draws_are_uniform_numbers_fixed_by_their_keys(keys: list[int]) -> None:
    value = draw(*keys)
    assert 0.0 <= value < 1.0 and value == draw(*keys)
    assert math.isfinite(value)


def test_labels_files_round_trip(tmp_path: Path) -> None:
    resolved = resolve(load_scenario("smoke"))
    run_scenario(resolved, tmp_path)
    assert read_labels(tmp_path / "labels.jsonl") == _labels(resolved)
