"""The error middleware: every failure in the error shape, no internals in a body."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from engine.http.errors import error_middleware


async def _failing(request: web.Request) -> web.Response:
    raise sqlite3.IntegrityError("NOT NULL constraint failed: features.state")


async def _get(path: str) -> tuple[int, dict[str, object]]:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/boom", _failing)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get(path)
        return resp.status, await resp.json()


def test_a_500_body_names_no_internals_and_the_log_has_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        status, body = asyncio.run(_get("/boom"))
    assert status == 500
    assert set(body) == {"error", "details"}
    assert "NOT NULL" not in str(body) and "IntegrityError" not in str(body)
    assert "NOT NULL constraint failed" in caplog.text
