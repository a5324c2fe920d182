"""Logging writes to the stderr of the moment, so a stream replaced and closed breaks nothing."""

from __future__ import annotations

import io
import sys

import pytest
import structlog

from leasewatch.logs import configure_logging


def test_logging_survives_the_stream_it_was_configured_with_being_closed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    temporary = io.StringIO()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", temporary)  # e.g. a CLI run in-process by a test runner
        configure_logging("INFO")
        structlog.get_logger("during").warning("while replaced", n=1)
    assert "while replaced" in temporary.getvalue()
    temporary.close()

    structlog.get_logger("during").error("after the stream closed", n=2)  # no ValueError

    err = capsys.readouterr().err
    assert "after the stream closed" in err and "n=2" in err
