"""Power loss mid-write: the buffer's WAL torn or garbled after its last intact commit.

kill -9 keeps every byte the process wrote (the page cache survives it); power loss keeps only
what was synced. With `synchronous=FULL` every commit syncs the WAL, so what a power cut can
damage is the tail after the last synced commit: frames cut short, or sectors of garbage. The
test takes the WAL of a writer killed mid-stream, damages it after one of its commits in those
ways, and opens it: the buffer must come back exactly as of that commit, never with a part of a
later transaction, never with a reading twice.
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.buffer import ReadingBuffer
from tests.edge.test_buffer import start_writer

REPO = Path(__file__).resolve().parents[2]
_WAL_HEADER = 32
_FRAME_HEADER = 24


def _commit_ends(wal: bytes) -> list[int]:
    """Offsets just past each commit frame of the WAL's current generation (its salt)."""
    page_size = int.from_bytes(wal[8:12], "big")
    salt = wal[16:24]
    frame = _FRAME_HEADER + page_size
    ends: list[int] = []
    offset = _WAL_HEADER
    while offset + frame <= len(wal) and wal[offset + 8 : offset + 16] == salt:
        if int.from_bytes(wal[offset + 4 : offset + 8], "big"):  # database size: a commit
            ends.append(offset + frame)
        offset += frame
    return ends


def _backfilled_end(shm: bytes, page_size: int) -> int:
    """Offset in the WAL up to which frames were already copied into the database file.

    A checkpoint copies only synced frames, so power loss cannot take those back: damage can
    only come after them. nBackfill is the u32 after the two 48-byte WAL index headers.
    """
    backfilled = int.from_bytes(shm[96:100], sys.byteorder)
    return _WAL_HEADER + backfilled * (_FRAME_HEADER + page_size)


def _killed_writer(path: Path, readings: int, commits: int = 20) -> None:
    """Run the buffer writer until it committed `readings`, the WAL's current generation
    holding at least `commits` commits (a checkpoint restarts it), then SIGKILL it."""
    writer = start_writer(path)
    assert writer.stdout is not None
    wal = path.with_name(path.name + "-wal")
    for line in writer.stdout:
        if int(line) >= readings and len(_commit_ends(wal.read_bytes())) >= commits:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait()


def _recovered(source: Path, wal: bytes, scratch: Path) -> list[float]:
    """Values the buffer holds when opened on `source`'s database with this WAL."""
    scratch.mkdir()
    shutil.copy(source, scratch / "b.sqlite")
    (scratch / "b.sqlite-wal").write_bytes(wal)
    with closing(sqlite3.connect(scratch / "b.sqlite")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    buffer = ReadingBuffer(scratch / "b.sqlite", reserve_bytes=4096)
    buffer.seal("after", 0, max_readings=5000, now=datetime.now(UTC))
    values = [r.value for m in buffer.oldest(10_000) for r in m.readings]
    buffer.close()
    return values


@pytest.mark.parametrize("damage", ["cut_mid_frame", "garbage_sectors", "cut_mid_header"])
def test_power_loss_leaves_the_buffer_as_of_its_last_intact_commit(
    damage: str, tmp_path: Path
) -> None:
    path = tmp_path / "b.sqlite"
    _killed_writer(path, readings=400)
    wal = (tmp_path / "b.sqlite-wal").read_bytes()
    page_size = int.from_bytes(wal[8:12], "big")
    shm = (tmp_path / "b.sqlite-shm").read_bytes()
    ends = [e for e in _commit_ends(wal) if e > _backfilled_end(shm, page_size)]
    assert len(ends) >= 6, "commits since the last checkpoint, to tear after"
    rng = random.Random(damage)
    for number, end in enumerate(rng.sample(ends[:-1], 5)):
        intact = _recovered(path, wal[:end], tmp_path / f"intact-{number}")
        tail = wal[end:]
        match damage:
            case "cut_mid_frame":  # the next frame's page only partly written
                torn = wal[:end] + tail[: _FRAME_HEADER + rng.randrange(1, page_size)]
            case "cut_mid_header":  # the next frame's header only partly written
                torn = wal[:end] + tail[: rng.randrange(1, _FRAME_HEADER)]
            case _:  # the rest of the file: sectors of garbage, length unchanged
                torn = wal[:end] + rng.randbytes(len(tail))
        recovered = _recovered(path, torn, tmp_path / f"torn-{number}")
        assert recovered == intact, "exactly the state of the last intact commit"
        assert recovered == sorted(set(recovered)), "no reading twice, in the order taken"
        assert recovered == [float(n) for n in range(len(recovered))], "no reading skipped"
