"""schemathesis against a live engine: no 5xx, and every answer conforms to /openapi.json.

``lifecycle serve`` runs as a real process with a few features loaded; schemathesis reads
the document it serves and runs every check it has (``--checks all``) over every
operation: positive and negative data, status codes, content types, response schemas and
headers. ``schemathesis.toml`` beside this file lists the operations where a 400 is a
right answer to data that the document cannot rule out, and why.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.integration.http.test_serve import _serve

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def _load(url: str) -> None:
    events = [
        {"specversion": "1.0", "id": f"e{i}", "source": "st", "subject": f"F-{i}",
         "type": kind, "data": data}
        for i, (kind, data) in enumerate(
            [("idea.submitted", {"title": "a", "product": "p"}),
             ("build.started", {}),
             ("feature.prioritized", {"priority": 1, "target_launch": "9999-12-31"})]
        )
    ]  # fmt: skip
    request = urllib.request.Request(
        url + "/events",
        data=json.dumps(events).encode(),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 202


def test_every_operation_passes_every_schemathesis_check(tmp_path: Path) -> None:
    proc, url = _serve(tmp_path / "st.db")
    try:
        _load(url)
        run = subprocess.run(
            [str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run",
             f"{url}/openapi.json", "--checks", "all", "--max-examples", "40", "--seed", "1",
             "--generation-database", "none", "--workers", "1",
             "--suppress-health-check", "too_slow,filter_too_much"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=540,
        )  # fmt: skip
        assert proc.poll() is None, "the engine died under schemathesis"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
