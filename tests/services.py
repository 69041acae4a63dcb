"""What tests share about the real services they need (broker, Prometheus, browser, ports).

A missing service skips a test on a developer's machine and fails it under ``CI=true``,
where ``make test`` installs and starts everything: CI never passes by skipping.
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest


def missing_service(message: str) -> NoReturn:
    """Skip the calling test, or fail it under ``CI=true``, saying what is missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (required under CI=true; make test installs and starts it)")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_by_server(sock: socket.socket) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` (EOF or reset), and what it had sent before."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False, received
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
