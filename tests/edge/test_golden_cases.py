"""Golden cases (Telegraf style): every edge/testcases/<case> through the pure decoders.

A case is a folder with `config.toml` (driver sections of an edge config), an input
(`input.json`: device memory by sensor, table and start address; or `input.txt`: raw bytes a
line sensor sent) and either `expected.json` (readings in order, errors by sensor; for Modbus
also the requests each poll makes) or `expected.err` (lines the configuration error contains).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.config import ConfigError, EdgeConfig, parse_config
from edge.decoding import RegisterRequest
from edge.drivers.modbus_device import SlaveError, SlavePoller
from edge.drivers.serial_lines import SerialLineConfig
from edge.line_decoding import LineReader
from leasewatch.wire import Reading

CASES = Path(__file__).parents[2] / "edge" / "testcases"
LINE_TIME = datetime(2026, 1, 1, tzinfo=UTC)  # a fixed stamp: the cases compare values
HEADER = """
[gateway]
device = "gw-golden"
data_dir = "/tmp/leasewatch-golden"

[mqtt]
host = "localhost"
username = "gw-golden"
password = "not-used"
tls = false

"""
Memory = dict[str, dict[str, list[int]]]


def _cases() -> list[Path]:
    return sorted(path for path in CASES.iterdir() if path.is_dir())


def _transact(memory: Memory) -> Any:
    """A device answering from memory; an address it does not hold is an illegal address."""

    async def transact(request: RegisterRequest) -> Sequence[int]:
        for start_text, values in memory.get(request.table, {}).items():
            offset = request.start - int(start_text)
            if offset >= 0 and offset + request.count <= len(values):
                return values[offset : offset + request.count]
        raise SlaveError("exception_response", "illegal data address", answered=True)

    return transact


def _rows(readings: list[Reading]) -> list[dict[str, Any]]:
    return [
        {"sensor": r.sensor, "metric": r.metric, "value": r.value, "unit": r.unit} for r in readings
    ]


async def _modbus(config: EdgeConfig, memory: dict[str, Memory]) -> dict[str, Any]:
    slaves = [s for bus in config.modbus_rtu for s in bus.slaves]
    slaves += [s for endpoint in config.modbus_tcp for s in endpoint.slaves]
    requests: dict[str, list[list[object]]] = {}
    readings: list[Reading] = []
    errors: dict[str, dict[str, int]] = {}
    for slave in slaves:
        poller = SlavePoller(slave, _transact(memory.get(slave.sensor, {})))
        requests[slave.sensor] = [[r.table, r.start, r.count] for r in poller.requests]
        readings += await poller.read()
        if poller.errors:
            errors[slave.sensor] = dict(poller.errors)
    return {"requests": requests, "readings": _rows(readings), "errors": errors}


def _lines(config: EdgeConfig, data: bytes, chunk: int) -> dict[str, Any]:
    sections: list[SerialLineConfig] = [*config.wristband, *config.nmea_gps]
    readings: list[Reading] = []
    errors: dict[str, dict[str, int]] = {}
    for section in sections:
        counted: Counter[str] = Counter()
        reader = LineReader(section.decoder(counted), counted)
        for start in range(0, len(data), chunk):
            for measurements in reader.feed(data[start : start + chunk]):
                readings += [
                    Reading(
                        sensor=section.sensor,
                        metric=m.metric,
                        ts=LINE_TIME,
                        value=m.value,
                        unit=m.unit,
                    )
                    for m in measurements
                ]
        if counted:
            errors[section.sensor] = dict(counted)
    return {"readings": _rows(readings), "errors": errors}


@pytest.mark.parametrize("case", _cases(), ids=lambda path: path.name)
async def test_golden_case(case: Path) -> None:
    text = (case / "config.toml").read_text() + "\n" + HEADER  # case lines keep their numbers
    source = f"{case.name}/config.toml"
    if (case / "expected.err").exists():
        with pytest.raises(ConfigError) as info:
            parse_config(text, source)
        for line in (case / "expected.err").read_text().splitlines():
            assert line in str(info.value), f"{line!r} not in:\n{info.value}"
        return
    config = parse_config(text, source)
    expected = json.loads((case / "expected.json").read_text())
    if (case / "input.json").exists():
        memory = json.loads((case / "input.json").read_text())
        assert await _modbus(config, memory) == expected
        return
    data = (case / "input.txt").read_bytes()
    assert _lines(config, data, chunk=len(data)) == expected
    assert _lines(config, data, chunk=5) == expected, "the result depends on how bytes arrive"


def test_every_case_is_complete() -> None:
    cases = _cases()
    assert len(cases) >= 20
    for case in cases:
        names = {p.name for p in case.iterdir()}
        assert "config.toml" in names, case
        outcome = names & {"expected.json", "expected.err"}
        assert len(outcome) == 1, f"{case.name}: one of expected.json / expected.err"
        if "expected.json" in names:
            assert len(names & {"input.json", "input.txt"}) == 1, f"{case.name}: one input"
