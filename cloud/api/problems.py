"""Errors as RFC 9457 problem details with a stable `code`, for every error the API answers.

Codes: `Problem(status, code, ...)` raised by routes and dependencies; `invalid_request` (422,
each error names its `field`, e.g. `query.limit` or `body.device`); `not_found` and
`method_not_allowed` for unknown routes; `http_<status>` for other framework errors;
`internal_error` (500, no details leaked) for anything unexpected.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
_LOGGER = logging.getLogger(__name__)
_FRAMEWORK_CODES = {404: "not_found", 405: "method_not_allowed"}


class Problem(Exception):  # noqa: N818 - it is a response, named as the RFC names it
    """An error the API answers with a problem document (extra members allowed)."""

    def __init__(self, status: int, code: str, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra


def _document(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> JSONResponse:
    body = {
        "type": f"https://leasewatch.dev/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
        **(extra or {}),
    }
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def _on_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)  # noqa: S101 - registered for Problem only
    return _document(exc.status, exc.code, exc.detail, extra=exc.extra)


def field_name(location: tuple[int | str, ...]) -> str:
    """`body.device`, `query.limit`, `path.alert_id`: where a request error is."""
    return ".".join(str(part) for part in location) or "request"


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
    errors = [{"field": field_name(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
    first = errors[0] if errors else {"field": "request", "message": "invalid"}
    detail = f"invalid value for {first['field']}: {first['message']}"
    return _document(422, "invalid_request", detail, extra={"errors": errors})


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it only
    code = _FRAMEWORK_CODES.get(exc.status_code, f"http_{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return _document(exc.status_code, code, detail, headers=dict(exc.headers or {}))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    _LOGGER.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _document(500, "internal_error", "The server failed; the error is logged.")


def install(app: FastAPI) -> None:
    """Answer every error (ours, validation, framework, unexpected) as a problem document."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
