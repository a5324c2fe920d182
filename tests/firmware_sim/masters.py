"""Real Modbus masters for the firmware_sim tests: minimalmodbus and mbpoll (libmodbus)."""

from __future__ import annotations

import asyncio
import re
import shutil

import minimalmodbus
import pytest

#: mbpoll options for the simulator's line settings (19200 8N1, unit 1).
# -o 3: a 3 s answer timeout, so a loaded CI machine does not fail a correct slave
RTU_19200_8N1 = (
    *("-m", "rtu", "-a", "1", "-b", "19200", "-P", "none", "-d", "8", "-s", "1", "-o", "3"),
)
MBPOLL_LINE = re.compile(r"^\[(\d+)\]:\s+(-?[0-9.eE+-]+)", re.MULTILINE)


def instrument(path: str, unit_id: int = 1, timeout: float = 1.0) -> minimalmodbus.Instrument:
    """A minimalmodbus master on `path`, 19200 8N1, closing the port after each call."""
    master = minimalmodbus.Instrument(path, unit_id, close_port_after_each_call=True)
    master.serial.baudrate = 19200
    master.serial.timeout = timeout
    return master


def read_registers(path: str, address: int, count: int, unit_id: int = 1) -> list[int]:
    """Read holding registers with minimalmodbus (blocking; run it in a thread)."""
    registers: list[int] = instrument(path, unit_id).read_registers(address, count, 3)
    return registers


def _number(text: str) -> int | float:
    """An integer if mbpoll printed one, else a float."""
    return int(text) if text.lstrip("-").isdigit() else float(text)


async def mbpoll(*args: str) -> dict[int, int | float]:
    """Run mbpoll once and return {1-based reference: value} from its output."""
    path = shutil.which("mbpoll")
    if path is None:
        pytest.fail("mbpoll is not installed: `apt-get install mbpoll` (Debian) to run this test")
    for attempt in range(2):
        process = await asyncio.create_subprocess_exec(
            path, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=15)
        # A loaded machine can split the slave's answer on the relayed pty with a gap longer
        # than the inter-character timeout, so mbpoll sees half a frame: retry once, as a
        # master on a real bus would. A wrong value is never retried.
        if process.returncode == 0 or attempt or b"Invalid CRC" not in out + err:
            break
    assert process.returncode == 0, f"mbpoll failed: {out.decode()} {err.decode()}"
    return {int(ref): _number(value) for ref, value in MBPOLL_LINE.findall(out.decode())}
