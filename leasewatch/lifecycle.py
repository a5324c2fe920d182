"""`StartStop`: something a test or command starts and stops, usable as `async with`."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StartStop:
    """Has `start()` and `stop()`; `async with` starts it and stops it on the way out."""

    async def start(self) -> None:
        """Begin serving (subclasses)."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop serving; idempotent (subclasses)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        """Start."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop, whatever happened in the block."""
        await self.stop()
