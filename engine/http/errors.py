"""Every HTTP error in one shape: ``{"error": "...", "details": [{"field", "reason"}, ...]}``.

Handlers raise :func:`api_error`; the :func:`error_middleware` turns whatever aiohttp raises
on its own (unknown route, wrong method, body too large) and any unexpected exception into
the same shape, so a client never sees an HTML error page or a stack trace.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from engine.http import jsonbody
from engine.http.serving import SlowBody
from events.errors import Problem, Unavailable

log = logging.getLogger(__name__)


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
            text=jsonbody.encode(error_body(error, details)).decode(),
            content_type=jsonbody.CONTENT_TYPE,
            headers=headers,
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
    headers = {
        k: v
        for k, v in exc.headers.items()
        if k.lower() in ("allow", "www-authenticate", "retry-after")
    }
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


def _forget_frames(exc: BaseException) -> None:
    """Release the locals of the frames an error (and its causes) keeps alive.

    A refused request's body (up to 1 MiB) is a local of the frames its error passed
    through, and the error sits in a reference cycle with them (aiohttp keeps it as the
    response). With the collector's thresholds raised (:mod:`engine.config.tuning`) such cycles
    wait long for a collection: 1,200 refused 1 MiB bodies held 2 GB. Clearing the frames
    frees each body as soon as its answer is built.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current.__traceback__ is not None:
            traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


def _answer(error: web.HTTPException) -> web.Response:
    """A plain response with the error's status, headers and body, holding no frames."""
    headers = {k: v for k, v in error.headers.items() if k.lower() != "content-length"}
    return web.Response(status=error.status, body=error.body, headers=headers)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error in the error shape; log unexpected ones with their traceback.

    Errors are answered as plain responses, not re-raised: nothing keeps the failed
    request's frames (and its body) alive after the answer (:func:`_forget_frames`).
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        answer = _answer(exc if isinstance(exc, ApiError) else _reshaped(request, exc))
        _forget_frames(exc)
        return answer
    except SlowBody as exc:
        _forget_frames(exc)
        answer = _answer(api_error(408, "request timeout", [Problem("body", str(exc))]))
        answer.force_close()  # the rest of the body is not waited for
        return answer
    except Unavailable as exc:
        retry = {"Retry-After": str(exc.retry_after)}
        return _answer(api_error(503, "unavailable", [Problem("", str(exc))], retry))
    except Exception as exc:
        if isinstance(exc, ConnectionError) and _client_gone(request):
            # The client closed the connection mid-request (mid-body, typically): nobody
            # is left to answer and there is nothing to debug. One line, no traceback.
            log.info(
                "%s %s: the client closed the connection before its request was read",
                request.method,
                request.path,
            )
            _forget_frames(exc)
            return _answer(api_error(400, "client closed request"))
        # The exception's text may name tables, columns or values: the log gets it, the
        # client only a pointer to the log.
        log.exception("unexpected error on %s %s", request.method, request.path)
        _forget_frames(exc)
        details = [Problem("", "the engine failed; its log has the details")]
        return _answer(api_error(500, "internal error", details))
