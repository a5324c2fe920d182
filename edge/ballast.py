"""Reserved disk space the durable buffer gives up when the disk is full, to make room."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


class Ballast:
    """A file of reserved bytes, given up when the disk is full so the buffer can make room."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    def release(self) -> bool:
        """Delete the ballast; True if there was one to free."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        log.warning("buffer ballast released", path=str(self.path), bytes=self.size)
        return True

    def restore(self) -> None:
        """Put the ballast back when the disk has room for it and a margin (else try later)."""
        if self.path.exists() or shutil.disk_usage(self.path.parent).free < self.size + (1 << 20):
            return
        try:
            with self.path.open("wb") as handle:
                handle.truncate(0)
                for _ in range(self.size // 65536 + 1):
                    handle.write(bytes(65536))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            self.path.unlink(missing_ok=True)
