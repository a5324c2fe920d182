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


def _fail_holding(password: str) -> None:
    raise RuntimeError("the detector broke")


def test_a_logged_exception_shows_its_traceback_but_no_frame_locals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO")
    secret = "hunter2-not-for-logs"  # a local the traceback must not print
    try:
        _fail_holding(secret)
    except RuntimeError:
        structlog.get_logger("detect").exception("detection failed", batch=3)
    err = capsys.readouterr().err
    assert "detection failed" in err and "batch=3" in err
    assert "RuntimeError: the detector broke" in err and "_fail_holding" in err
    assert secret not in err, "frame locals are not logged"
