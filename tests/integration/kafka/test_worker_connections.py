"""A streaming worker's HTTP side holds to the same connection limits as the embedded engine
(issue 10, defect 9): both serve through :mod:`engine.http.serving`.

A real worker on the broker is held by a thousand half-sent requests: ``/healthz`` keeps
answering, its open file descriptors stay within ``LIFECYCLE_MAX_CONNECTIONS`` of what it
held before, and every held connection is closed after the timeouts (a half-sent body with
a 408), with a short log and no traceback.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from typing import Any

import pytest

from tests.services import closed_by_server

pytestmark = pytest.mark.integration

HEAD = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n"
BODY = HEAD + b"Content-Length: 500\r\n\r\n" + b'{"specversion":"1.0",'


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_worker_closes_held_connections_and_keeps_answering(make_worker: Any) -> None:
    limit = 100
    worker = make_worker(
        LIFECYCLE_MAX_CONNECTIONS=str(limit),
        LIFECYCLE_HTTP_HEAD_TIMEOUT="2",
        LIFECYCLE_HTTP_BODY_TIMEOUT="2",
    )
    worker.wait_ready()
    assert worker.proc is not None
    before = _fds(worker.proc.pid)
    bodies, heads = [], []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", worker.port), timeout=10)
        sock.sendall(BODY)
        bodies.append(sock)
    time.sleep(0.5)
    for _ in range(1000):
        sock = socket.create_connection(("127.0.0.1", worker.port), timeout=10)
        sock.sendall(HEAD)
        heads.append(sock)
    try:
        for _ in range(5):
            started = time.monotonic()
            with urllib.request.urlopen(f"{worker.url}/healthz", timeout=5) as resp:
                assert resp.status == 200
            assert time.monotonic() - started < 1.0
            assert _fds(worker.proc.pid) < before + limit + 20
        time.sleep(3.5)
        assert not [s for s in heads if not closed_by_server(s)[0]]
        for sock in bodies:
            closed, answer = closed_by_server(sock)
            assert closed and answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    finally:
        for sock in heads + bodies:
            sock.close()
    worker.check_alive()
    deadline = time.monotonic() + 12  # closures are summed up once per 10 s
    while "sent no complete request head within 2 s" not in worker.tail(400):
        assert time.monotonic() < deadline, worker.tail()
        time.sleep(0.5)
    assert "Traceback" not in worker.log_path.read_text(errors="replace"), worker.tail()
