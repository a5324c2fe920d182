"""The command table's statuses, compare-and-set writes and acknowledgements, on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.commands.store import AckOutcome, CommandStatus, CommandStore
from cloud.state import StateStore
from leasewatch.wire import Command, CommandAck

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
DEVICE = "gw-0001"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CommandStore]:
    """A migrated state store of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    state = StateStore(url)
    yield CommandStore(state.engine)
    state.close()


def _command(command_id: str, ttl_s: float = 60.0, at: datetime = NOW) -> Command:
    return Command(
        id=command_id, name="ping", issued_at=at, expires_at=at + timedelta(seconds=ttl_s)
    )


def _ack(command_id: str, status: str, device: str = DEVICE, **result: str) -> CommandAck:
    return CommandAck.model_validate(
        {"device": device, "boot": "boot-1", "id": command_id, "status": status,
         "result": result, "ts": NOW}
    )  # fmt: skip


def test_a_command_goes_queued_sent_acknowledged(store: CommandStore) -> None:
    created = store.create(DEVICE, _command("cmd-00001"), "ops-1")
    assert (created.status, created.requested_by, created.sent_at) == ("queued", "ops-1", None)
    assert [c.id for c in store.due(NOW)] == ["cmd-00001"]
    assert store.mark_sent("cmd-00001", NOW + timedelta(seconds=1))
    assert not store.mark_sent("cmd-00001", NOW + timedelta(seconds=2)), "only once"
    assert store.due(NOW) == []

    later = NOW + timedelta(seconds=3)
    assert store.record_ack(_ack("cmd-00001", "accepted"), later) is AckOutcome.RECORDED
    assert store.get("cmd-00001").status is CommandStatus.SENT  # type: ignore[union-attr]
    done = _ack("cmd-00001", "done", boot="boot-1")
    assert store.record_ack(done, later + timedelta(seconds=1)) is AckOutcome.RECORDED
    record = store.get("cmd-00001")
    assert record is not None
    assert (record.status, record.ack_status, record.ack_result) == (
        "acknowledged",
        "done",
        {"boot": "boot-1"},
    )
    assert record.sent_at == NOW + timedelta(seconds=1)
    assert record.acked_at == later + timedelta(seconds=1)
    assert record.to_wire() == _command("cmd-00001")


def test_repeated_late_and_foreign_acknowledgements_change_nothing(store: CommandStore) -> None:
    store.create(DEVICE, _command("cmd-00002"), "ops-1")
    store.mark_sent("cmd-00002", NOW)
    assert store.record_ack(_ack("cmd-00002", "failed"), NOW) is AckOutcome.RECORDED
    before = store.get("cmd-00002")
    for repeat in ("failed", "accepted", "done"):
        outcome = store.record_ack(_ack("cmd-00002", repeat), NOW + timedelta(minutes=1))
        assert outcome is AckOutcome.REPEATED, repeat
    assert store.get("cmd-00002") == before
    assert before is not None and before.status is CommandStatus.FAILED

    assert store.record_ack(_ack("cmd-nobody1", "done"), NOW) is AckOutcome.UNKNOWN
    store.create(DEVICE, _command("cmd-00003"), "ops-1")
    foreign = _ack("cmd-00003", "done", device="gw-0002")
    assert store.record_ack(foreign, NOW) is AckOutcome.UNKNOWN
    assert store.get("cmd-00003").status is CommandStatus.QUEUED  # type: ignore[union-attr]


def test_unanswered_commands_expire_and_a_final_answer_still_wins(store: CommandStore) -> None:
    store.create(DEVICE, _command("cmd-00004", ttl_s=10), "ops-1")
    store.create(DEVICE, _command("cmd-00005", ttl_s=10), "ops-1")
    store.create(DEVICE, _command("cmd-00006", ttl_s=600), "ops-1")
    store.mark_sent("cmd-00005", NOW)
    assert store.expire(NOW + timedelta(seconds=10)) == 2
    assert store.due(NOW + timedelta(seconds=10)) == [store.get("cmd-00006")]
    expired = store.get("cmd-00004")
    assert expired is not None and (expired.status, expired.sent_at) == ("expired", None)
    assert expired.detail == "no final answer before it expired"

    late = NOW + timedelta(seconds=12)
    assert store.record_ack(_ack("cmd-00005", "done"), late) is AckOutcome.RECORDED
    assert store.get("cmd-00005").status is CommandStatus.ACKNOWLEDGED  # type: ignore[union-attr]
    assert store.record_ack(_ack("cmd-00004", "expired"), late) is AckOutcome.RECORDED
    assert store.get("cmd-00004").ack_status == "expired"  # type: ignore[union-attr]
    assert [c.id for c in store.history(DEVICE)] == ["cmd-00006", "cmd-00005", "cmd-00004"]


def test_a_refused_publish_fails_the_command_with_the_reason(store: CommandStore) -> None:
    store.create(DEVICE, _command("cmd-00007"), "ops-1")
    assert store.mark_refused("cmd-00007", "the broker refused the publish (0x87)")
    record = store.get("cmd-00007")
    assert record is not None and record.status is CommandStatus.FAILED
    assert record.detail == "the broker refused the publish (0x87)"
