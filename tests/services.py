"""What tests share about the real services they need (broker, Prometheus, browser, ports).

A missing service skips a test on a developer's machine and fails it under ``CI=true``,
where ``make test`` installs and starts everything: CI never passes by skipping.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from types import ModuleType
from typing import NoReturn

import pytest

from engine import native


def missing_service(message: str) -> NoReturn:
    """Skip the calling test, or fail it under ``CI=true``, saying what is missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (required under CI=true; make test installs and starts it)")
    pytest.skip(message)


def native_module(name: str) -> ModuleType:
    """Module ``name`` of the project's native build (``make native``) loaded from its file,
    whether or not this process runs the build (``LIFECYCLE_NATIVE=0``); a missing or stale
    build is a missing service."""
    found, files = native.check(native.HOT)
    if found != native.COMPILED:
        missing_service(f"no fresh native build here ({found}): run make native")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, files[name])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
