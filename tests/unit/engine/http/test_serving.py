"""The one door to aiohttp's internals used by :mod:`engine.http.serving`.

:class:`LimitedSite` relies on ``BaseSite``'s subclassing contract (``_runner``,
``_backlog``, ``_server``, the runner's list of sites behind ``addresses`` and ``cleanup``).
This test fails loudly when an aiohttp upgrade changes any of it.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from engine.http.serving import ConnectionLimits, LimitedSite, connection_middleware


async def _hello(request: web.Request) -> web.Response:
    return web.json_response({"read": len(await request.read())})


def test_a_limited_site_serves_and_stops_like_a_tcp_site() -> None:
    async def scenario() -> None:
        app = web.Application(middlewares=[connection_middleware])
        app.router.add_post("/", _hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = LimitedSite(runner, "127.0.0.1", 0, ConnectionLimits(max_connections=5))
        await site.start()
        assert runner.sites == {site}
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://{host}:{port}/", data=b"x" * 10) as resp:
                assert await resp.json() == {"read": 10}
            await asyncio.sleep(0.05)
            assert site.connections.open == 1  # kept alive, waiting for its next head
            assert len(site.connections.waiting) == 1
        await runner.cleanup()
        assert runner.sites == set()
        assert site.connections.open == 0

    asyncio.run(scenario())
