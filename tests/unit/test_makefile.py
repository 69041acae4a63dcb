"""The two commands of the README, as ``make`` would run them on a fresh clone (dry run).

``make demo`` must install only what running needs (no Playwright, mypy, matplotlib: the dev
extras), ``make test`` everything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# make is what the README's two commands run: a machine without it cannot run `make test`.
assert shutil.which("make") is not None, "make is not installed"


def dry_run(target: str, venv: Path, *extra: str) -> str:
    # Run as on a fresh clone, not as a child of `make test` (whose flags would make the
    # child print "Entering directory" lines and pass its own variables down).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={venv}", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_make_demo_installs_only_the_runtime(tmp_path: Path) -> None:
    commands = dry_run("demo", tmp_path / "venv")
    assert "pip install --quiet -e '.[native]'" in commands  # the runtime and mypyc
    assert "[dev]" not in commands
    assert commands.rstrip().endswith("lifecycle demo")


def test_make_demo_and_test_compile_the_core_and_risk_which_only_ci_requires(
    tmp_path: Path,
) -> None:
    demo = dry_run("demo", tmp_path / "venv", "CI=")
    assert "-m engine.native.build\n" in demo.replace(" \n", "\n")  # no --require
    assert "-m engine.native.build --require" in dry_run("test", tmp_path / "venv", "CI=true")
    commands = dry_run("test", tmp_path / "venv")
    assert "LIFECYCLE_NATIVE=0" in commands and "tests/unit/engine/risk" in commands
    assert "tests/unit/engine/core" in commands  # the compiled core runs as Python too


def test_make_demo_can_keep_the_earlier_portfolio(tmp_path: Path) -> None:
    assert dry_run("demo", tmp_path / "venv", "DEMO_ARGS=--keep").rstrip().endswith("--keep")


def test_make_test_still_installs_the_dev_extras(tmp_path: Path) -> None:
    assert "-e '.[dev]'" in dry_run("test", tmp_path / "venv")
