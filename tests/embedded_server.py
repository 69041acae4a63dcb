"""A real embedded engine on an ephemeral loopback port, for tests that speak HTTP to it.

The server runs on its own event loop in a background thread, so tests stay plain
synchronous code and talk to it with ``urllib`` like any client would. Nothing external is
needed: the store is a SQLite file in the test's temporary folder.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from engine.config.settings import Settings
from engine.embedded.root import EmbeddedEngine, start_embedded


class Answer:
    """An HTTP answer: status, headers and body (decoded as JSON by :attr:`json`)."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class EmbeddedServer:
    """``with EmbeddedServer(db) as server:`` serves until the block ends.

    ``clock`` replaces the engine's real UTC clock (e.g. the demo's simulated one).
    """

    def __init__(
        self, db: Path, *, clock: Callable[[], datetime] | None = None, **settings: Any
    ) -> None:
        self.settings = Settings(db=db, http_host="127.0.0.1", http_port=0, **settings)
        self.clock = clock
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.handle: EmbeddedEngine | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        extra = {"clock": self.clock} if self.clock is not None else {}
        future = asyncio.run_coroutine_threadsafe(
            start_embedded(self.settings, **extra), self._loop
        )
        self.handle = future.result(timeout=30)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.handle is not None:
            asyncio.run_coroutine_threadsafe(self.handle.close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def submit(self, coroutine: Any) -> concurrent.futures.Future[Any]:
        """Start ``coroutine`` on the server's own event loop; its future result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def run(self, coroutine: Any, timeout: float = 120) -> Any:
        """Run ``coroutine`` on the server's own event loop and wait for its result."""
        return self.submit(coroutine).result(timeout=timeout)

    @property
    def url(self) -> str:
        assert self.handle is not None
        return self.handle.url

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Answer(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return Answer(err.code, dict(err.headers), err.read())

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post_event(self, event: dict[str, Any], **headers: str) -> Answer:
        """POST one event in structured mode."""
        return self.request(
            "POST",
            "/events",
            json.dumps(event),
            {"Content-Type": "application/cloudevents+json", **headers},
        )

    def post_batch(self, events: list[dict[str, Any]]) -> Answer:
        return self.request(
            "POST",
            "/events",
            json.dumps(events),
            {"Content-Type": "application/cloudevents-batch+json"},
        )


def cloud_event(type: str, subject: str | None, id: str, **extra: Any) -> dict[str, Any]:
    """A structured CloudEvent (``extra`` adds or overrides attributes, e.g. ``data``)."""
    event: dict[str, Any] = {"specversion": "1.0", "id": id, "source": "test/http", "type": type}
    if subject is not None:
        event["subject"] = subject
    event.update(extra)
    return event
