"""Memory stays bounded under a stream of refused 1 MiB bodies (issue 10, defect 8).

``lifecycle serve`` runs as a real process (its tuned garbage collector included); refused
bodies of every kind (over the limit announced, over the limit chunked, malformed just
under it) must not pile up in reference cycles the collector rarely visits.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.integration.http.test_serve import _serve

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
HEAD = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n"
MALFORMED = b"[" + b"1," * (MIB // 2 - 5) + b"x]"
BODIES = {
    "announced over the limit": HEAD + b"Content-Length: %d\r\n\r\n" % (MIB + 10)
    + b"a" * (MIB + 10),
    "chunked over the limit": HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    + b"%x\r\n" % (MIB + 10) + b"a" * (MIB + 10) + b"\r\n0\r\n\r\n",
    "malformed under the limit": HEAD + b"Content-Length: %d\r\n\r\n" % len(MALFORMED) + MALFORMED,
}  # fmt: skip
REQUESTS = 250
"""Per kind: before the fix, 250 refused bodies of one kind held 170-300 MiB."""


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("kind", BODIES)
def test_refused_bodies_do_not_pile_up(tmp_path: Path, kind: str) -> None:
    proc, url = _serve(tmp_path / "mem.db")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        statuses = set()
        for i in range(REQUESTS):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(BODIES[kind])
                statuses.add(s.recv(64).split(b" ")[1])
            if i == 20:
                start = _rss_mib(proc.pid)
        grown = _rss_mib(proc.pid) - start
        assert statuses <= {b"400", b"413"}, statuses
        assert grown < 60, f"{grown:.0f} MiB more after {REQUESTS} refused bodies"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
