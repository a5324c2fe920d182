"""Silence: each cause told apart from what the last messages said, one finding per gateway."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from cloud.alerts.signals import Finding
from cloud.detectors.faults import FaultDetector, FaultInputs, FaultThresholds
from cloud.detectors.inputs import EventInput, MinuteSample, PositionInput, StatusInput
from cloud.detectors.silence import (
    SilenceDetector,
    SilenceInputs,
    SilenceThresholds,
)

T0 = datetime(2025, 6, 2, 8, tzinfo=UTC)
HOME = (51.26, 4.40)


def minutes(start: datetime, count: int, *, running: bool = True) -> tuple[MinuteSample, ...]:
    """Samples of a machine that runs (or not), one a minute."""
    return tuple(
        MinuteSample(
            start + timedelta(minutes=n),
            {
                "running": float(running),
                "motor_current": 40.0 + n % 7 if running else 0.5 + n % 3 / 10,
                "temperature": 40.0 + n % 5 / 10,
                "vibration_rms": 1.5 + n % 4 / 10 if running else 0.05 + n % 3 / 100,
            },
        )
        for n in range(count)
    )


class Gateway:
    """Feeds a silence detector the way the runner does, every 10 minutes."""

    def __init__(self) -> None:
        self.detector = SilenceDetector.create("gw-1", "truck", SilenceThresholds())
        self.now = T0
        self.boot = "b-0"
        self.status: StatusInput | None = StatusInput("online", T0, "b-0")
        self.found: list[Finding] = []

    def tick(self, samples: tuple[MinuteSample, ...] = (), **extra: object) -> list[Finding]:
        self.now += timedelta(minutes=10)
        live = samples[-1].ts if samples else None
        inputs = SilenceInputs(
            minutes=samples,
            status=self.status,
            last_live_at=live,
            boot=self.boot,
            home=HOME,
            events=tuple(extra.get("events", ())),  # type: ignore[arg-type]
            positions=tuple(extra.get("positions", ())),  # type: ignore[arg-type]
        )
        state = self.detector.restore(self.detector.to_json(), SilenceThresholds())
        found = state.update(inputs, self.now)
        self.detector = state
        self.found += found
        return found

    def run(self, count: int, *, running: bool = True) -> None:
        for _ in range(count):
            self.tick(minutes(self.now, 10, running=running))

    def quiet(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick()


def test_network_outage_last_will_and_backlog() -> None:
    gw = Gateway()
    gw.run(6)
    gw.status = StatusInput("offline", gw.now + timedelta(minutes=1), "b-0")
    gap_start = gw.now
    gw.quiet(12)
    opened = [f for f in gw.found if f.state == "open"]
    assert len(opened) == 1 and opened[0].key == "gateway"
    assert opened[0].evidence["cause"] == "network_outage" and opened[0].evidence["last_will"]
    backlog = minutes(gap_start, int((gw.now - gap_start).total_seconds() // 60) + 10)
    cleared = gw.tick(backlog)
    assert [f.state for f in cleared] == ["cleared"]
    assert cleared[0].evidence["cause"] == "network_outage" and cleared[0].confidence >= 0.9


def test_power_cut_no_will_then_a_new_boot() -> None:
    gw = Gateway()
    gw.run(6)
    gw.quiet(12)
    opened = [f for f in gw.found if f.state == "open"]
    assert opened[0].evidence["cause"] == "power_cut" and not opened[0].evidence["last_will"]
    gw.boot = "b-1"
    cleared = gw.tick(minutes(gw.now, 10))
    assert cleared[0].evidence["cause"] == "power_cut" and cleared[0].evidence["new_boot"]


def test_tamper_event_before_the_will() -> None:
    gw = Gateway()
    gw.run(6)
    lost = EventInput(gw.now, "sensor_lost", "machine", "tamper: gateway detached from the asset")
    gw.tick(minutes(gw.now, 5), events=[lost])
    gw.status = StatusInput("offline", gw.now, "b-0")
    gw.quiet(6)
    opened = [f for f in gw.found if f.state == "open"]
    assert opened[0].evidence["cause"] == "tamper"
    assert opened[0].severity == "critical"


def test_a_dead_gateway_is_one_finding_not_one_per_sensor() -> None:
    gw = Gateway()
    faults = FaultDetector.create("gw-1", "truck", FaultThresholds())
    fault_findings: list[Finding] = []
    for _ in range(6):
        samples = minutes(gw.now, 10)
        gw.tick(samples)
        fault_findings += faults.update(FaultInputs(samples), gw.now)
    for _ in range(30):
        gw.tick()
        fault_findings += faults.update(FaultInputs(()), gw.now)
    assert [f.key for f in gw.found] == ["gateway"]
    assert fault_findings == []


def working_day(gw: Gateway, *, works: bool) -> None:
    """One day of 10-minute ticks: running 08:00-16:00 when it works."""
    for _ in range(144):
        on = works and 8 <= gw.now.hour < 16
        gw.tick(minutes(gw.now, 10, running=on))


def test_parked_after_four_missed_working_days_at_home() -> None:
    gw = Gateway()
    gw.now = datetime(2025, 6, 2, tzinfo=UTC)  # a Monday
    for _ in range(21):
        working_day(gw, works=gw.now.weekday() < 5)
    gw.tick(minutes(gw.now, 10, running=False), positions=[PositionInput(gw.now, *HOME)])
    for _ in range(7):  # Monday 06-23 to Sunday: parked
        working_day(gw, works=False)
    parked = [f for f in gw.found if f.key == "parked"]
    assert [f.state for f in parked] == ["open"]
    assert parked[0].evaluated_at.date() == date(2025, 6, 27)  # when Thursday was judged
    assert parked[0].evidence["near_home"] is True and parked[0].confidence >= 0.8
    working_day(gw, works=True)
    assert [f.state for f in gw.found if f.key == "parked"] == ["open", "cleared"]


def test_weekends_and_idle_days_alone_are_not_parked() -> None:
    gw = Gateway()
    gw.now = datetime(2025, 6, 2, tzinfo=UTC)
    for n in range(35):
        idle = n in (18, 21, 22)  # Fri + Mon + Tue around a weekend: three missed days
        working_day(gw, works=gw.now.weekday() < 5 and not idle)
    assert not [f for f in gw.found if f.key == "parked"]


def test_time_without_data_does_not_count_as_parked() -> None:
    gw = Gateway()
    gw.run(6)
    gw.quiet(6 * 24 * 5)
    gw.boot = "b-1"
    gw.tick(minutes(gw.now, 10, running=False))
    assert not [f for f in gw.found if f.key == "parked"]


def test_sensors_reading_zero_while_online_is_tamper() -> None:
    gw = Gateway()
    gw.run(3)
    zeros = tuple(
        MinuteSample(
            gw.now + timedelta(minutes=n),
            {"running": 0.0, "motor_current": 0.0, "vibration_rms": 0.0, "temperature": 30.0},
        )
        for n in range(20)
    )
    found = gw.tick(zeros)
    assert [(f.key, f.state) for f in found] == [("sensors_removed", "open")]
    assert found[0].evidence["cause"] == "tamper" and found[0].severity == "critical"
    gw.run(1)
    assert [(f.key, f.state) for f in gw.found] == [
        ("sensors_removed", "open"),
        ("sensors_removed", "cleared"),
    ]
