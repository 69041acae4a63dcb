"""Every HTTP error in one shape: ``{"error": "...", "details": [{"field", "reason"}, ...]}``.

Handlers raise :func:`api_error`; the :func:`error_middleware` turns whatever aiohttp raises
on its own (unknown route, wrong method, body too large) and any unexpected exception into
the same shape, so a client never sees an HTML error page or a stack trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from events.errors import Problem

log = logging.getLogger(__name__)

JSON = "application/json"


def error_body(error: str, details: Iterable[Problem] = ()) -> dict[str, Any]:
    """The error shape; each problem becomes ``{"field": ..., "reason": ...}``."""
    return {"error": error, "details": [{"field": p.field, "reason": p.reason} for p in details]}


class ApiError(web.HTTPException):
    """An HTTP error answered in the error shape, with any status."""

    def __init__(
        self,
        status: int,
        error: str,
        details: Iterable[Problem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status
        super().__init__(
            text=json.dumps(error_body(error, details)), content_type=JSON, headers=headers
        )
        self.error = error


def api_error(
    status: int,
    error: str,
    details: Iterable[Problem] = (),
    headers: Mapping[str, str] | None = None,
) -> ApiError:
    """An exception for a handler to raise: answers ``status`` with the error shape."""
    return ApiError(status, error, details, headers)


def _reshaped(request: web.Request, exc: web.HTTPException) -> ApiError:
    """aiohttp's own error (plain text) in the error shape, keeping its status and headers."""
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
    if isinstance(exc, web.HTTPNotFound):
        details = [Problem("path", f"no route for {request.method} {request.path}")]
        return api_error(404, "not found", details, headers)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        details = [Problem("method", f"{exc.method} is not allowed here; allowed: {allowed}")]
        return api_error(405, "method not allowed", details, headers)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return api_error(413, "request body too large", [Problem("body", exc.text or "")], headers)
    reason = exc.text or exc.reason
    return api_error(exc.status, exc.reason.lower(), [Problem("", reason)], headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error in the error shape; log unexpected ones with their traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or isinstance(exc, ApiError):
            raise
        raise _reshaped(request, exc) from exc
    except Exception as exc:
        # The exception's text may name tables, columns or values: the log gets it, the
        # client only a pointer to the log.
        log.exception("unexpected error on %s %s", request.method, request.path)
        raise api_error(
            500, "internal error", [Problem("", "the engine failed; its log has the details")]
        ) from exc
