"""PtyPair: a relayed pty pair carries bytes both ways, unchanged, and closes cleanly."""

from __future__ import annotations

import asyncio
import os

import pytest
import serial

from firmware_sim.pty_pair import PtyPair

ALL_BYTES = bytes(range(256))


def _open(path: str) -> serial.Serial:
    """Open a pty path the way a device or master would (pyserial, 8N1, raw)."""
    return serial.Serial(path, baudrate=19200, timeout=2.0)


def _is_tty(path: str) -> bool:
    """Whether `path` opens as a terminal."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def _exchange(device_path: str, client_path: str, payload: bytes) -> tuple[bytes, bytes]:
    """Write `payload` on each side and read what arrives on the other."""
    with _open(device_path) as device, _open(client_path) as client:
        device.write(payload)
        at_client = client.read(len(payload))
        client.write(payload[::-1])
        at_device = device.read(len(payload))
    return at_client, at_device


async def test_bytes_flow_both_ways_unchanged() -> None:
    payload = ALL_BYTES * 4  # every byte value, incl. XON/XOFF, CR, LF, ^C, ^D, NUL
    async with PtyPair() as pair:
        at_client, at_device = await asyncio.to_thread(
            _exchange, pair.device_path, pair.client_path, payload
        )
    assert at_client == payload
    assert at_device == payload[::-1]


async def test_large_transfer_larger_than_a_tty_buffer() -> None:
    payload = ALL_BYTES * 200  # 51 kB: more than the kernel's 4 kB tty input queue
    async with PtyPair() as pair:
        at_client, _ = await asyncio.to_thread(
            _exchange, pair.device_path, pair.client_path, payload
        )
        assert pair.dropped_bytes == 0
    assert at_client == payload


async def test_path_stays_valid_while_nobody_has_it_open() -> None:
    async with PtyPair() as pair:
        for round_trip in (b"first open\r\n", b"second open\x00\x11\x13"):
            at_client, at_device = await asyncio.to_thread(
                _exchange, pair.device_path, pair.client_path, round_trip
            )
            assert at_client == round_trip
            assert at_device == round_trip[::-1]


async def test_paths_differ_and_exist_only_while_open() -> None:
    pair = PtyPair()
    with pytest.raises(RuntimeError, match="not open"):
        _ = pair.device_path
    async with pair:
        device_path, client_path = pair.device_path, pair.client_path
        assert device_path != client_path
        assert _is_tty(device_path)
        assert _is_tty(client_path)
    with pytest.raises(RuntimeError, match="not open"):
        _ = pair.client_path
    await pair.close()  # idempotent


async def test_close_leaves_no_fd_behind() -> None:
    before = set(os.listdir("/proc/self/fd"))
    async with PtyPair() as pair:
        await asyncio.to_thread(_exchange, pair.device_path, pair.client_path, b"ping")
        assert len(set(os.listdir("/proc/self/fd")) - before) == 4
    assert set(os.listdir("/proc/self/fd")) == before
