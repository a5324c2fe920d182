"""SlavePoller without I/O: retries, giving up on a silent slave, back-off and recovery."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from edge.decoding import RegisterField, RegisterRequest
from edge.drivers.modbus_device import ModbusSlaveConfig, SlaveError, SlavePoller


class FakeSlave:
    """A transport whose answers a test scripts; it counts what it was asked."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | silent | refuse
        self.asked: list[int] = []

    async def transact(self, request: RegisterRequest) -> Sequence[int]:
        self.asked.append(request.start)
        if self.mode == "silent":
            raise SlaveError("timeout", "no answer")
        if self.mode == "refuse":
            raise SlaveError("exception_response", "illegal address", answered=True)
        return [request.start + i for i in range(request.count)]


class Clock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _config(**overrides: object) -> ModbusSlaveConfig:
    fields = [
        RegisterField(metric="a", address=0),
        RegisterField(metric="b", address=10),
        RegisterField(metric="c", address=20, kind="f32"),
    ]
    spec: dict[str, object] = {"sensor": "s", "unit_id": 1, "fields": fields}
    return ModbusSlaveConfig.model_validate({**spec, **overrides})


@pytest.fixture
def slave() -> FakeSlave:
    return FakeSlave()


async def test_an_answering_slave_gives_every_field(slave: FakeSlave) -> None:
    poller = SlavePoller(_config(), slave.transact)
    readings = await poller.read()
    assert [(r.metric, r.value) for r in readings][:2] == [("a", 0.0), ("b", 10.0)]
    assert len(readings) == 3
    assert not poller.errors


async def test_a_silent_slave_is_retried_then_abandoned_for_this_poll(slave: FakeSlave) -> None:
    slave.mode = "silent"
    poller = SlavePoller(_config(retries=2), slave.transact)
    assert await poller.read() == []
    assert slave.asked == [0, 0, 0]  # three attempts at the first request, none at the others
    assert poller.errors == {"timeout": 3}


async def test_a_refusing_slave_is_alive_so_no_retries_and_no_backoff(slave: FakeSlave) -> None:
    slave.mode = "refuse"
    clock = Clock()
    poller = SlavePoller(_config(retries=2), slave.transact, clock)
    assert await poller.read() == []
    assert slave.asked == [0, 10, 20]
    assert poller.errors == {"exception_response": 3}
    assert poller.backoff.due(clock.now)


async def test_backoff_doubles_to_its_cap_and_ends_on_the_first_answer(slave: FakeSlave) -> None:
    clock = Clock()
    poller = SlavePoller(_config(poll_interval=1.0, backoff_max=4.0), slave.transact, clock)
    slave.mode = "silent"
    attempted = []
    for tick in range(16):  # the agent calls read() once per second
        clock.now = 100.0 + tick
        before = len(slave.asked)
        await poller.read()
        attempted.append(len(slave.asked) > before)
    assert [t for t, tried in enumerate(attempted) if tried] == [0, 1, 3, 7, 11, 15]
    assert poller.skipped_polls == 10
    slave.mode = "ok"
    clock.now = 100.0 + 19
    assert len(await poller.read()) == 3
    clock.now += 1
    assert len(await poller.read()) == 3  # back to every poll
    assert poller.backoff.failures == 0


async def test_non_finite_values_are_left_out_and_counted(slave: FakeSlave) -> None:
    async def nan(request: RegisterRequest) -> Sequence[int]:
        return [0x7FC0, 0] if request.start == 20 else [1] * request.count

    poller = SlavePoller(_config(), nan)
    assert [r.metric for r in await poller.read()] == ["a", "b"]
    assert poller.errors == {"not_finite": 1}
