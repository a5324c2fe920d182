"""A virtual null-modem cable: two pseudo-terminals whose bytes are relayed both ways.

The simulated device opens `device_path`, the master (edge agent, mbpoll) opens `client_path`.
Bytes written on one path come out unchanged on the other. The relay keeps both slave ends open
itself, so a path stays valid (and reading its master never hits EIO) while nobody has it open.

A pty ignores the baud rate: bytes arrive as fast as the relay moves them, not at wire speed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import termios
import tty
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

#: Bytes held for one direction while the far side is not reading, like a UART's FIFO.
DEFAULT_BUFFER_LIMIT = 64 * 1024
_READ_SIZE = 4096


@dataclass
class _Pty:
    """One pseudo-terminal: master fd (relay side), slave fd (kept open), slave path."""

    master: int
    slave: int
    path: str

    @classmethod
    def open_raw(cls) -> _Pty:
        """Open a pty in raw mode with a non-blocking master."""
        master, slave = os.openpty()
        try:
            tty.setraw(slave, termios.TCSANOW)
            os.set_blocking(master, False)
            return cls(master, slave, os.ttyname(slave))
        except OSError:
            os.close(master)
            os.close(slave)
            raise

    def close(self) -> None:
        """Close both ends."""
        os.close(self.master)
        os.close(self.slave)


@dataclass
class _Direction:
    """Bytes read from one master, waiting to be written to the other."""

    source: _Pty
    sink: _Pty
    limit: int
    pending: bytearray = field(default_factory=bytearray)
    dropped: int = 0


class PtyPair:
    """Two raw ptys joined by an asyncio relay; an async context manager."""

    def __init__(self, buffer_limit: int = DEFAULT_BUFFER_LIMIT) -> None:
        """Prepare a pair; the ptys open on `open()` or `async with`."""
        self._buffer_limit = buffer_limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._device: _Pty | None = None
        self._client: _Pty | None = None
        self._directions: list[_Direction] = []

    @property
    def device_path(self) -> str:
        """Path the simulated device opens."""
        return self._require(self._device).path

    @property
    def client_path(self) -> str:
        """Path the master (edge agent, mbpoll) opens."""
        return self._require(self._client).path

    @property
    def dropped_bytes(self) -> int:
        """Bytes discarded because the receiving side did not read (overrun)."""
        return sum(d.dropped for d in self._directions)

    async def open(self) -> None:
        """Open both ptys and start relaying."""
        if self._loop is not None:
            raise RuntimeError("PtyPair is already open")
        self._device = _Pty.open_raw()
        try:
            self._client = _Pty.open_raw()
        except OSError:
            self._device.close()
            self._device = None
            raise
        self._loop = asyncio.get_running_loop()
        self._directions = [
            _Direction(self._device, self._client, self._buffer_limit),
            _Direction(self._client, self._device, self._buffer_limit),
        ]
        for direction in self._directions:
            self._loop.add_reader(direction.source.master, self._on_readable, direction)

    async def close(self) -> None:
        """Stop relaying and close all four fds; idempotent."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        for direction in self._directions:
            loop.remove_reader(direction.source.master)
            loop.remove_writer(direction.sink.master)
        self._directions = []
        for pty in (self._device, self._client):
            if pty is not None:
                pty.close()
        self._device = self._client = None

    async def __aenter__(self) -> Self:
        """Open the pair."""
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the pair."""
        await self.close()

    def _on_readable(self, direction: _Direction) -> None:
        """Move what one master has to the other's pending buffer, then flush it."""
        try:
            data = os.read(direction.source.master, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as err:
            if err.errno != errno.EIO:  # EIO: no slave open; cannot happen while we hold it
                raise
            return
        room = direction.limit - len(direction.pending)
        if len(data) > room:
            direction.dropped += len(data) - room
            data = data[:room]
        direction.pending += data
        self._flush(direction)

    def _flush(self, direction: _Direction) -> None:
        """Write pending bytes to the sink master; wait for writability if it is full."""
        loop = self._loop
        if loop is None:
            return
        sink = direction.sink.master
        try:
            written = os.write(sink, direction.pending) if direction.pending else 0
        except BlockingIOError:
            written = 0
        del direction.pending[:written]
        if direction.pending:
            loop.add_writer(sink, self._flush, direction)
        else:
            loop.remove_writer(sink)

    @staticmethod
    def _require(pty: _Pty | None) -> _Pty:
        """Return the pty or explain that the pair is not open."""
        if pty is None:
            raise RuntimeError("PtyPair is not open; use `async with PtyPair()`")
        return pty
