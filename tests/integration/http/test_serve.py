"""``lifecycle serve`` as a process: it serves, and SIGTERM/SIGINT stop it cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def _serve(db: Path) -> tuple[subprocess.Popen[str], str]:
    """Start ``lifecycle serve`` on an ephemeral port; the process and its base URL."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LIFECYCLE_API_TOKEN": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli.main", "serve", "--port", "0", "--db", str(db)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        found = re.search(r"at (http://\S+),", line)
        if found:
            return proc, found.group(1)
    proc.kill()
    raise AssertionError(f"lifecycle serve did not start: {proc.stderr.read()}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_until_a_signal_then_exit_0_keeping_the_data(
    tmp_path: Path, sig: signal.Signals
) -> None:
    db = tmp_path / "serve.db"
    proc, url = _serve(db)
    try:
        event = {
            "specversion": "1.0",
            "id": "1",
            "source": "test",
            "type": "idea.submitted",
            "subject": "srv-1",
        }
        req = urllib.request.Request(
            url + "/events",
            data=json.dumps(event).encode(),
            headers={"Content-Type": "application/cloudevents+json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 202
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    proc, url = _serve(db)
    try:
        with urllib.request.urlopen(url + "/features/srv-1", timeout=10) as resp:
            assert json.loads(resp.read())["stage"] == "idea"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
