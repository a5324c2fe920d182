"""`GET /v1/ingest/rejections` while rejections are being recorded: no count without its letter."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from cloud.api.main import create_app
from cloud.state import Rejection
from leasewatch.wire import RejectReason
from tests.cloud.access.conftest import BOOTSTRAP_KEY, make_services

RECORDED = 400


def test_a_counted_rejection_always_has_its_dead_letter_in_the_same_answer(tmp_path: Path) -> None:
    services = make_services(tmp_path)
    state = services.state
    answers: list[dict[str, Any]] = []

    def record() -> None:
        for n in range(RECORDED):
            rejection = Rejection(
                datetime.now(UTC), RejectReason.MALFORMED, "lw/v1/gw-0001/telemetry", f"#{n}", b"{"
            )
            state.record_rejections([rejection])

    def read(client: TestClient) -> dict[str, Any]:
        response = client.get(
            "/v1/ingest/rejections", params={"limit": 1000}, headers={"X-API-Key": BOOTSTRAP_KEY}
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    writer = threading.Thread(target=record)
    with TestClient(create_app(services)) as client:
        writer.start()
        while writer.is_alive():
            answers.append(read(client))
        writer.join()
        answers.append(read(client))
    state.close()

    assert len(answers) > 2, "the reads ran while rejections were recorded"
    for answer in answers:
        counted = answer["counts"].get("malformed_json", 0)
        letters = [r for r in answer["recent"] if r["reason"] == "malformed_json"]
        assert counted <= len(letters), f"{counted} counted, {len(letters)} letters shown"
    assert answers[-1]["counts"] == {"malformed_json": RECORDED}
    assert len(answers[-1]["recent"]) == RECORDED
