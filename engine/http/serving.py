"""Serving the HTTP API so that held connections cannot take the engine down.

Both modes serve their aiohttp application through :class:`LimitedSite` (the embedded root
and the streaming worker), so both hold to the same :class:`ConnectionLimits`:

- **Head timeout.** A connection must deliver a complete request head (request line and
  headers) within ``head_timeout`` seconds of opening, or of the answer to its previous
  request (so an idle kept-alive connection is closed after it too). Otherwise it is closed:
  a client sending its head a byte at a time (slowloris) holds a file descriptor that long.
- **Body timeout.** The body must have arrived in full within ``body_timeout`` seconds of the
  head. A slower one is answered 408 in the error shape and the connection is closed.
- **Connection limit.** At most ``max_connections`` are open at once. A new connection
  beyond it closes the one that has waited longest for a request head (an idle or dribbling
  one: the one that does the least for its file descriptor); when every open connection is
  busy with a request, the newcomer is answered 503 with ``Retry-After`` and closed. So a
  flood of held connections costs bounded file descriptors and ``/healthz`` keeps answering.
- **Bounded log.** Connections closed for these reasons, and failures of ``accept()`` when
  the process is out of file descriptors (asyncio logs one per attempt, hundreds a second,
  with a traceback), are summed up in one line per ``log_interval`` with their counts.

Which request a connection is busy with is told by :func:`connection_middleware` (the
outermost middleware of the application, :func:`engine.http.api.build_app`): the wrapper of
each connection is the transport's protocol, found with ``transport.get_protocol()``.

This module is the only one that touches aiohttp's internals (the site's ``_runner`` and
``_server``, the subclassing contract of ``BaseSite``); ``tests/unit/engine/http/
test_serving.py`` fails when the installed aiohttp changes them.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler

from engine.http import jsonbody

log = logging.getLogger(__name__)

ACCEPT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""``accept()`` failures that mean the process (or system) is out of resources."""
RESERVED_FDS = 64
"""File descriptors left for the rest of the process (database, Kafka, logs) when the
connection limit is compared with the open-file limit at start."""


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take and how many connections are held (the module's rules).

    Attributes:
        max_connections: connections open at once (``LIFECYCLE_MAX_CONNECTIONS``).
        head_timeout: seconds for a complete request head (``LIFECYCLE_HTTP_HEAD_TIMEOUT``).
        body_timeout: seconds for the body after the head (``LIFECYCLE_HTTP_BODY_TIMEOUT``).
        log_interval: seconds between two summary lines of closed connections or failed
            ``accept()`` calls.
    """

    max_connections: int = 1000
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    log_interval: float = 10.0


class SlowBody(TimeoutError):
    """The request body did not arrive within the body timeout (answered 408).

    A :class:`TimeoutError`, so that aiohttp's draining of an unread body after the answer
    ends at once instead of reading on.
    """


class Tally:
    """Counts of things that happen in floods, logged as one line per ``interval``.

    The first occurrence after a quiet interval is logged on the next loop iteration (with
    whatever else happened in it); later ones wait for the interval to pass.
    """

    def __init__(
        self, interval: float, line: Callable[[Counter[str], str], str], level: int
    ) -> None:
        self.interval = interval
        self.line = line
        self.level = level
        self.counts: Counter[str] = Counter()
        self._last = float("-inf")
        self._handle: asyncio.TimerHandle | None = None

    def add(self, what: str) -> None:
        self.counts[what] += 1
        if self._handle is None:
            loop = asyncio.get_running_loop()
            at = max(loop.time(), self._last + self.interval)
            self._handle = loop.call_at(at, self.flush)

    def flush(self) -> None:
        """Log what was counted since the last line (nothing when nothing was)."""
        self._handle = None
        if self.counts:
            now = asyncio.get_running_loop().time()
            first = self._last == float("-inf")
            when = "just now" if first else f"in the last {now - self._last:.0f} s"
            log.log(self.level, "%s", self.line(self.counts, when))
            self.counts = Counter()
            self._last = now

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self.flush()


REFUSED_BODY = jsonbody.encode(
    {
        "error": "too many connections",
        "details": [{"field": "", "reason": "every connection is busy; try again in a second"}],
    }
)
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
    + str(len(REFUSED_BODY)).encode()
    + b"\r\n\r\n"
    + REFUSED_BODY
)
"""The whole answer to a connection over the limit when none can make room."""

HEAD = "head_timeout"
BODY = "body_timeout"
EVICTED = "evicted"
OVER_LIMIT = "over_limit"


class Connections:
    """The open connections of one site and the rules of :class:`ConnectionLimits`."""

    def __init__(self, limits: ConnectionLimits, make: Callable[[], asyncio.Protocol]) -> None:
        self.limits = limits
        self.make = make
        self.open = 0
        self.waiting: dict[GuardedConnection, None] = {}
        """Connections waiting for a request head, longest-waiting first."""
        self.closed = Tally(limits.log_interval, self._closed_line, logging.INFO)

    def _closed_line(self, counts: Counter[str], when: str) -> str:
        lim = self.limits
        parts = {
            HEAD: f"{counts[HEAD]} sent no complete request head within {lim.head_timeout:g} s",
            BODY: f"{counts[BODY]} sent no complete body within {lim.body_timeout:g} s (408)",
            EVICTED: f"{counts[EVICTED]} waiting longest for a request made room for new ones",
            OVER_LIMIT: f"{counts[OVER_LIMIT]} were refused (503): all "
            f"{lim.max_connections} connections were busy",
        }
        shown = "; ".join(text for reason, text in parts.items() if counts[reason])
        return f"closed {sum(counts.values())} connections {when}: {shown}"

    def admit(self) -> bool:
        """Whether a new connection may be served, making room when it must."""
        if self.open >= self.limits.max_connections:
            if not self.waiting:
                self.closed.add(OVER_LIMIT)
                return False
            victim = next(iter(self.waiting))
            self.closed.add(EVICTED)
            victim.close()
        self.open += 1
        return True


class GuardedConnection(asyncio.Protocol):
    """One connection: aiohttp's request handler inside, the deadlines around it.

    The transport's protocol, forwarding every call to the handler it wraps; the handler is
    made only once the connection is admitted.
    """

    def __init__(self, connections: Connections) -> None:
        self.connections = connections
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.request: web.BaseRequest | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._counted = False

    # -- asyncio.Protocol, forwarded ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if not self.connections.admit():
            self.transport.write(REFUSED)
            self.transport.close()
            return
        self._counted = True
        self.inner = self.connections.make()
        self.inner.connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- the deadlines -----------------------------------------------------------------------

    def _arm(self, delay: float, then: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, then)

    def _await_head(self) -> None:
        self.request = None
        self.connections.waiting.pop(self, None)
        self.connections.waiting[self] = None
        self._arm(self.connections.limits.head_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._timer = None
        self.connections.closed.add(HEAD)
        self.close()

    def _body_expired(self) -> None:
        self._timer = None
        request = self.request
        if request is None or request.content.is_eof():
            return
        self.connections.closed.add(BODY)
        limit = self.connections.limits.body_timeout
        request.content.set_exception(SlowBody(f"the body did not arrive within {limit:g} s"))

    def started(self, request: web.BaseRequest) -> None:
        """A request's head arrived: no head deadline while it is served; its body's."""
        self.connections.waiting.pop(self, None)
        self.request = request
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if request.body_exists and not request.content.is_eof():
            self._arm(self.connections.limits.body_timeout, self._body_expired)

    def ended(self) -> None:
        """The request's handler returned: the next head is awaited."""
        if self._counted:
            self._await_head()

    def close(self) -> None:
        """Close the connection now (the handler learns of it in ``connection_lost``)."""
        self._release()
        if self.transport is not None:
            self.transport.close()

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.connections.waiting.pop(self, None)
        if self._counted:
            self._counted = False
            self.connections.open -= 1


def _guard_of(request: web.BaseRequest) -> GuardedConnection | None:
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, GuardedConnection) else None


@web.middleware
async def connection_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection's guard that a request is being served, and when it was.

    The outermost middleware; requests on connections not served by :class:`LimitedSite`
    (aiohttp's test client) pass through untouched.
    """
    guard = _guard_of(request)
    if guard is None:
        return await handler(request)
    guard.started(request)
    try:
        return await handler(request)
    finally:
        guard.ended()


class AcceptErrors:
    """The loop's exception handler while a site serves: ``accept()`` running out of file
    descriptors is counted and logged once per interval; anything else goes on to the
    handler that was there before."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: ConnectionLimits) -> None:
        self.loop = loop
        self.limits = limits
        self.previous = loop.get_exception_handler()
        self.tally = Tally(limits.log_interval, self._line, logging.WARNING)
        loop.set_exception_handler(self)

    def _line(self, counts: Counter[str], when: str) -> str:
        shown = ", ".join(f"{n} x {why}" for why, n in counts.items())
        return (
            f"accept() failed {sum(counts.values())} times {when} ({shown}): the "
            f"process is out of file descriptors; raise `ulimit -n` or lower "
            f"LIFECYCLE_MAX_CONNECTIONS (now {self.limits.max_connections})"
        )

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in ACCEPT_ERRNOS:
            self.tally.add(exc.strerror or str(exc))
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def remove(self) -> None:
        self.tally.cancel()
        if self.loop.get_exception_handler() is self:
            self.loop.set_exception_handler(self.previous)


class LimitedSite(web.BaseSite):
    """A TCP site of ``runner`` whose connections keep to ``limits`` (see the module)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        limits: ConnectionLimits,
        *,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self.host = host
        self.port = port
        self.limits = limits
        server = runner.server
        assert server is not None  # BaseSite refuses a runner that is not set up
        self.connections = Connections(limits, server)
        self._accept_errors: AcceptErrors | None = None

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen; warn in one line when the open-file limit is below the connection limit."""
        await super().start()
        loop = asyncio.get_running_loop()
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = self.limits.max_connections + RESERVED_FDS
        if soft != resource.RLIM_INFINITY and soft < wanted:
            log.warning(
                "LIFECYCLE_MAX_CONNECTIONS=%d needs about %d file descriptors and the "
                "open-file limit is %d: accept() will fail first (raise `ulimit -n`)",
                self.limits.max_connections,
                wanted,
                soft,
            )
        self._accept_errors = AcceptErrors(loop, self.limits)
        self._server = await loop.create_server(
            lambda: GuardedConnection(self.connections),
            self.host,
            self.port,
            backlog=self._backlog,
        )

    async def stop(self) -> None:
        await super().stop()
        self.connections.closed.cancel()
        if self._accept_errors is not None:
            self._accept_errors.remove()
            self._accept_errors = None
