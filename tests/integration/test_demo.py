"""``lifecycle demo`` as a user runs it: a real process, real HTTP, real SQLite, Ctrl-C.

No outside service is needed: the demo starts its own embedded engine on a free port.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import pytest

from tests.services import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPEED = 15 * 86_400  # fifteen simulated days per second: the 180 days take about 12 s


def demo_env(port: int, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")}
    env.update(
        LIFECYCLE_HTTP_HOST="127.0.0.1",
        LIFECYCLE_HTTP_PORT=str(port),
        LIFECYCLE_DB=str(db),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    return env


def start_demo(port: int, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli.main", "demo", *args],
        env=demo_env(port, tmp_path / "var" / "demo.db"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines_of(stream: IO[str]) -> queue.Queue[str | None]:
    """Read ``stream`` in a thread, so the test can wait for a line with a deadline."""
    found: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            found.put(line)
        found.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return found


def wait_for_line(lines: queue.Queue[str | None], pattern: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if re.search(pattern, line):
            return line
    pytest.fail(f"no line matching {pattern!r} within {seconds} s; output: {''.join(seen)}")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def feature_count(url: str) -> int:
    return len(json.loads(get(url + "/features"))["features"])


def stages_in_metrics(url: str) -> dict[str, float]:
    """Features per stage, summed over products, from ``lifecycle_features`` in ``/metrics``."""
    per_stage: dict[str, float] = {}
    for line in get(url + "/metrics").decode().splitlines():
        match = re.match(r"lifecycle_features\{([^}]*)\} ([0-9.e+]+)$", line)
        if match:
            stage = re.search(r'stage="([^"]+)"', match.group(1))
            assert stage is not None
            per_stage[stage.group(1)] = per_stage.get(stage.group(1), 0) + float(match.group(2))
    return {stage: n for stage, n in per_stage.items() if n > 0}


@pytest.fixture
def stop_at_end() -> Iterator[list[subprocess.Popen[str]]]:
    """Kill any demo a failed test left running (only the processes this test started)."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_demo_sends_a_portfolio_over_http_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, stop_at_end: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    proc = start_demo(port, tmp_path, "--speed", str(SPEED), "--seed", "11", "--live", "90")
    stop_at_end.append(proc)
    assert proc.stdout is not None and proc.stderr is not None
    out = lines_of(proc.stdout)
    url = f"http://127.0.0.1:{port}"
    wait_for_line(out, re.escape(url), 30)
    wait_for_line(out, re.escape(f"{url}/metrics"), 5)

    # Events flow: the portfolio grows while the simulator runs.
    first = feature_count(url)
    time.sleep(2.0)
    second = feature_count(url)
    assert second > first
    # A live summary line of features per stage is printed.
    wait_for_line(out, r"idea \d+ .*development \d+ .*launched \d+", 15)

    deadline = time.monotonic() + 20
    stages = stages_in_metrics(url)
    while len(stages) < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
        stages = stages_in_metrics(url)
    assert len(stages) >= 4, stages
    assert (tmp_path / "var" / "demo.db").exists()

    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("lifecycle demo did not stop within 10 s of Ctrl-C")
    rest = []
    while (line := out.get(timeout=5)) is not None:
        rest.append(line)
    errors = proc.stderr.read()
    assert code == 0, errors
    assert "Traceback" not in errors and "Traceback" not in "".join(rest), errors
    assert "stopped" in "".join(rest)
    with pytest.raises(OSError):  # the port is free again: nothing answers
        get(url + "/healthz")


def test_the_first_look_shows_the_whole_portfolio_within_ten_seconds_then_moves(
    tmp_path: Path, stop_at_end: list[subprocess.Popen[str]]
) -> None:
    """Issue 11, point 9: the recent past is backfilled, so a newcomer sees every stage, the
    risks and a populated report at once, and the board keeps moving live after."""
    port = free_port()
    proc = start_demo(port, tmp_path, "--seed", "5")  # the defaults `make demo` uses
    stop_at_end.append(proc)
    assert proc.stdout is not None
    out = lines_of(proc.stdout)
    url = f"http://127.0.0.1:{port}"
    wait_for_line(out, re.escape(url), 30)
    answered = time.monotonic()

    def looks_whole() -> bool:
        features = json.loads(get(url + "/features"))["features"]
        stages = {f["stage"] for f in features}
        return len(features) >= 150 and len(stages) >= 8 and any(f["at_risk"] for f in features)

    while not looks_whole():
        assert time.monotonic() - answered < 10, (
            f"{feature_count(url)} features, stages {stages_in_metrics(url)} after 10 s"
        )
        time.sleep(0.25)
    report = json.loads(get(url + "/report?format=json&since=30d"))
    assert report, report
    launched = stages_in_metrics(url).get("launched", 0)
    assert launched > 0
    before = json.loads(get(url + "/features?limit=500"))["features"]
    time.sleep(4.0)  # four simulated days at the default pace
    after = json.loads(get(url + "/features?limit=500"))["features"]
    assert [(f["id"], f["version"]) for f in after] != [(f["id"], f["version"]) for f in before]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_demo_on_a_taken_port_says_so_in_one_line(
    tmp_path: Path, stop_at_end: list[subprocess.Popen[str]]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_demo(port, tmp_path)
        stop_at_end.append(proc)
        try:
            _, errors = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("lifecycle demo kept running on a port that is taken")
    assert proc.returncode != 0
    assert "Traceback" not in errors
    assert len(errors.strip().splitlines()) == 1, errors
    assert str(port) in errors


def lifecycle(port: int, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``lifecycle`` command as a user would beside the demo (same settings)."""
    return subprocess.run(
        [sys.executable, "-m", "engine.cli.main", *args],
        env=demo_env(port, tmp_path / "var" / "demo.db"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_events_sent_by_hand_during_the_demo_are_judged_on_the_demos_clock(
    tmp_path: Path, stop_at_end: list[subprocess.Popen[str]]
) -> None:
    """Issue 13: one clock per engine. While the demo replays, its engine's clock runs 30
    simulated days behind the wall clock (here an hour a second, so it stays behind for the
    whole test); an event sent from the CLI gets that clock's time, and every view measures
    it on the same clock: seconds old, not 30 days."""
    port = free_port()
    proc = start_demo(port, tmp_path, "--speed", "3600", "--features", "40", "--days", "60")
    stop_at_end.append(proc)
    assert proc.stdout is not None
    out = lines_of(proc.stdout)
    url = f"http://127.0.0.1:{port}"
    wait_for_line(out, "clock runs with the replay", 30)

    sent = lifecycle(port, tmp_path, "emit", "build.started", "HAND-1")
    assert sent.returncode == 0, sent.stderr
    with urllib.request.urlopen(url + "/features/HAND-1", timeout=5) as response:
        engine_now = datetime.fromisoformat(response.headers["Lifecycle-Now"])
        feature = json.loads(response.read())
    entered = datetime.fromisoformat(feature["entered_stage_at"])
    wall = datetime.now(UTC)
    assert wall - engine_now > timedelta(days=29), "the demo's clock is not behind: no test"
    assert timedelta(0) <= engine_now - entered < timedelta(days=1)  # 24 s of real time
    assert feature["risk_reasons"] == []

    status = lifecycle(port, tmp_path, "status", "HAND-1")
    assert status.returncode == 0, status.stderr
    age = re.search(r"since \S+ \(([^)]*)\)", status.stdout)
    assert age is not None and "d" not in age.group(1), status.stdout  # minutes, not days

    # Rule 10's window is the same clock: the wall clock's "now" lies 30 days ahead of it.
    late = lifecycle(port, tmp_path, "emit", "build.shipped", "HAND-1", "--time",
                     wall.strftime("%Y-%m-%dT%H:%M:%SZ"))  # fmt: skip
    assert late.returncode == 1 and "engine's clock" in late.stderr, late.stderr
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
