"""POSTs the engine's own CloudEvents to a webhook URL, off the event-processing path.

Used by the embedded mode for risk signals (``LIFECYCLE_WEBHOOK_URL``). :meth:`WebhookPoster.post`
only queues the event and returns at once, so a slow or dead receiver never stalls event
processing. One background task sends the queue in order, each event in structured mode
(``application/cloudevents+json``), retrying a failed delivery (connection error, timeout,
5xx or 429) :data:`ATTEMPTS` times in all with growing pauses, then dropping it with a
warning. When the queue is full (:data:`QUEUE_SIZE`), new events are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

ATTEMPTS = 4
"""Deliveries tried per event before it is dropped."""
BACKOFF = 0.5
"""Seconds before the first retry; doubled before each next one."""
TIMEOUT = aiohttp.ClientTimeout(total=5)
QUEUE_SIZE = 10_000
CONTENT_TYPE = "application/cloudevents+json"


class WebhookPoster:
    """Sends CloudEvents to ``url`` from a background task; start it in the running loop.

    Args:
        url: the receiver; each event is one ``POST``.
        attempts: deliveries tried per event.
        backoff: seconds before the first retry (doubling after).

    Attributes:
        delivered / dropped: events sent (2xx) / given up or refused by a full queue.
    """

    def __init__(self, url: str, *, attempts: int = ATTEMPTS, backoff: float = BACKOFF) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff = backoff
        self.delivered = 0
        self.dropped = 0
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        """Start the sending task (call from inside the event loop)."""
        if self._task is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
            self._task = asyncio.get_running_loop().create_task(self._run())

    def post(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for delivery; never blocks, never raises."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("webhook queue full: dropped %s %s", event.get("type"), event.get("id"))

    async def close(self) -> None:
        """Stop sending (queued events are dropped) and close the HTTP session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._deliver(event)
            finally:
                self._queue.task_done()

    async def _deliver(self, event: dict[str, Any]) -> None:
        assert self._session is not None
        body = json.dumps(event).encode()
        pause = self.backoff
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                async with self._session.post(
                    self.url, data=body, headers={"Content-Type": CONTENT_TYPE}
                ) as response:
                    if response.status < 300:
                        self.delivered += 1
                        return
                    problem = f"HTTP {response.status}"
                    if response.status < 500 and response.status != 429:
                        break  # The receiver refuses it: retrying would not help.
            except (aiohttp.ClientError, TimeoutError) as err:
                problem = f"{type(err).__name__}: {err}"
            if attempt < self.attempts:
                await asyncio.sleep(pause)
                pause *= 2
        self.dropped += 1
        log.warning(
            "webhook %s: gave up on %s %s (%s)",
            self.url,
            event.get("type"),
            event.get("id"),
            problem,
        )
