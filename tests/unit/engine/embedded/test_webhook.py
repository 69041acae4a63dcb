"""The outbound webhook poster: in order, retried on 5xx and 429, never retried on 4xx."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from engine.embedded.webhook import CONTENT_TYPE, WebhookPoster


async def _receiver(answers: list[int]) -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    """A loopback receiver answering ``answers`` in turn (then 204); records what it got."""
    got: list[dict[str, Any]] = []
    queue = list(answers)

    async def handle(request: web.Request) -> web.Response:
        assert request.content_type == CONTENT_TYPE
        got.append(json.loads(await request.read()))
        return web.Response(status=queue.pop(0) if queue else 204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook", got


async def _settle(poster: WebhookPoster, done: int) -> None:
    for _ in range(500):
        if poster.delivered + poster.dropped >= done:
            return
        await asyncio.sleep(0.01)


def test_events_arrive_in_order_and_a_5xx_or_429_is_retried() -> None:
    asyncio.run(_test_events_arrive_in_order_and_a_5xx_or_429_is_retried())


async def _test_events_arrive_in_order_and_a_5xx_or_429_is_retried() -> None:
    runner, url, got = await _receiver([503, 429])
    poster = WebhookPoster(url, attempts=3, backoff=0.01)
    poster.start()
    try:
        for n in range(3):
            poster.post({"id": str(n), "type": "feature.at_risk"})
        await _settle(poster, 3)
    finally:
        await poster.close()
        await runner.cleanup()
    assert [e["id"] for e in got] == ["0", "0", "0", "1", "2"]
    assert (poster.delivered, poster.dropped) == (3, 0)


def test_a_refusal_is_not_retried_and_exhausted_attempts_drop_the_event() -> None:
    asyncio.run(_test_a_refusal_is_not_retried_and_exhausted_attempts_drop_the_event())


async def _test_a_refusal_is_not_retried_and_exhausted_attempts_drop_the_event() -> None:
    runner, url, got = await _receiver([400, 500, 500])
    poster = WebhookPoster(url, attempts=2, backoff=0.01)
    poster.start()
    try:
        poster.post({"id": "refused", "type": "feature.at_risk"})
        poster.post({"id": "failing", "type": "feature.at_risk"})
        poster.post({"id": "fine", "type": "feature.risk_cleared"})
        await _settle(poster, 3)
    finally:
        await poster.close()
        await runner.cleanup()
    assert [e["id"] for e in got] == ["refused", "failing", "failing", "fine"]
    assert (poster.delivered, poster.dropped) == (1, 2)


def test_a_dead_receiver_costs_the_caller_nothing() -> None:
    asyncio.run(_test_a_dead_receiver_costs_the_caller_nothing())


async def _test_a_dead_receiver_costs_the_caller_nothing() -> None:
    poster = WebhookPoster("http://127.0.0.1:9/hook", attempts=1, backoff=0.01)
    poster.start()
    try:
        poster.post({"id": "x", "type": "feature.at_risk"})  # returns at once
        await _settle(poster, 1)
    finally:
        await poster.close()
    assert (poster.delivered, poster.dropped) == (0, 1)
