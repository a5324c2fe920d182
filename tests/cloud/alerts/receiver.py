"""A real HTTP webhook receiver for the tests: http.server in a thread, scripted failures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = b"webhook-secret-for-tests-0001"


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it, and what it answered."""

    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int

    @property
    def document(self) -> dict[str, Any]:
        """The JSON body."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def key(self) -> str:
        """The idempotency key header."""
        return self.headers["idempotency-key"]


@dataclass
class WebhookReceiver:
    """Answers `fail_first` requests with `fail_status`, then 204."""

    fail_first: int = 0
    fail_status: int = 503
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        """Record a request and choose its status."""
        with self._lock:
            status = self.fail_status if len(self.requests) < self.fail_first else 204
            self.requests.append(Received(headers, body, status))
            return status

    @property
    def accepted(self) -> list[Received]:
        """Requests answered with success."""
        with self._lock:
            return [r for r in self.requests if r.status < 300]


@contextmanager
def serving(receiver: WebhookReceiver) -> Iterator[WebhookReceiver]:
    """Run the receiver on a free loopback port until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.answer({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/leasewatch?token=abc"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
