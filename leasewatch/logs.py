"""Logging setup shared by every LeaseWatch process: structlog, key=value to stderr."""

from __future__ import annotations

import logging
import sys

import structlog


class StderrLogger:
    """A structlog logger writing each line to whatever `sys.stderr` is when it logs.

    structlog's PrintLogger keeps the stream it was given; a process that configures logging
    while stderr is temporarily replaced (a CLI run in-process under a test runner) would later
    write into a closed stream, and a logging call would raise inside the agent.
    """

    def msg(self, message: str) -> None:
        """Write one rendered line."""
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = failure = err = msg


def _stderr_logger(*_args: object) -> StderrLogger:
    return StderrLogger()


def configure_logging(level: str = "INFO") -> None:
    """Route structlog and stdlib logging to stderr at the given level."""
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(
        stream=sys.stderr, level=numeric, format="%(levelname)s %(name)s %(message)s"
    )
    for noisy in ("amqtt", "transitions", "pymodbus", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Plain tracebacks: the default (rich, with every frame's locals) prints the locals'
            # values (payloads, credentials held in plain strings) and cost an ingest worker
            # 88% of its CPU while a failing detector logged one traceback per batch.
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            ),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )
