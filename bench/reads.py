"""Read latency of the embedded engine at 10,000 features (issue 10's read targets).

Starts ``lifecycle serve`` on a fresh database, loads N features in batches, then times
``GET /features`` (first page), ``GET /features/{id}`` and ``GET /report``. Prints p50/p99
in milliseconds. Run: ``.venv/bin/python bench/reads.py [N]``.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _serve(db: Path) -> tuple[subprocess.Popen[str], str]:
    """``lifecycle serve`` on an ephemeral port: the process and its base URL."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LIFECYCLE_API_TOKEN": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli.main", "serve", "--port", "0", "--db", str(db)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"at (http://\S+),", line)
        if found:
            return proc, found.group(1)
    raise SystemExit(f"lifecycle serve did not start (exit {proc.wait()})")


def _post(url: str, batch: list[dict[str, object]]) -> None:
    req = urllib.request.Request(
        url + "/events",
        data=json.dumps(batch).encode(),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        assert resp.status == 202


def _idea(i: int) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"i{i}",
        "source": "bench",
        "subject": f"F-{i:05d}",
        "type": "idea.submitted",
        "data": {"title": f"feature {i}", "product": f"p{i % 20}", "owner": f"o{i % 7}"},
    }


def _time(url: str, path: str, n: int) -> tuple[float, float, int]:
    took, size = [], 0
    for _ in range(n):
        start = time.perf_counter()
        with urllib.request.urlopen(url + path, timeout=120) as resp:
            size = len(resp.read())
        took.append((time.perf_counter() - start) * 1000)
    took.sort()
    return statistics.median(took), took[min(len(took) - 1, int(len(took) * 0.99))], size


def main(n: int = 10_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _serve(Path(tmp) / "bench.db")
        try:
            started = time.perf_counter()
            for b in range(0, n, 1000):
                _post(url, [_idea(i) for i in range(b, min(n, b + 1000))])
            load = time.perf_counter() - started
            print(
                f"{n} features loaded in {load:.1f} s ({n / load:.0f} events/s in batches of 1000)"
            )
            for path, reps in (
                ("/features", 50),
                ("/features?q=feature%20123", 50),
                (f"/features/F-{n // 2:05d}", 200),
                ("/report", 5),
            ):
                p50, p99, size = _time(url, path, reps)
                print(f"GET {path:28} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  {size / 1024:8.1f} KiB")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
