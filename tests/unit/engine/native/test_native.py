"""The compiled risk package is used only while it matches the source (engine.native).

Each case imports the risk monitor in a fresh interpreter from a copy of the project's
packages, so what it loads is decided as a process starting up decides it.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine.native as native
import engine.risk.monitor
from engine.native import BUILT, COMPILED, MANIFEST, RISK, ROOT
from engine.native.build import dependencies

SUFFIX = ".cpython"  # every compiled module's file name has the interpreter's tag


def copy_tree(to: Path) -> Path:
    """The project's packages (without any build) copied under ``to``."""
    for package in ("engine", "events", "workflows", "metrics", "connectors"):
        shutil.copytree(
            ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__", "built")
        )
    return to


def imported(root: Path, **env: str) -> tuple[str, str, str]:
    """Import the risk monitor from ``root`` in a fresh interpreter: its file, what
    :func:`engine.native.load` decided, and what was logged."""
    code = (
        "import engine.risk.monitor as m, engine.native as n;"
        "print(m.__file__); print(n.status['engine_risk'])"
    )
    environment = {k: v for k, v in os.environ.items() if k != native.SWITCH}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**environment, "PYTHONPATH": str(root), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    file, status = done.stdout.split("\n")[:2]
    assert file.startswith(str(root)), "imported from the copy, not from the project"
    return file, status, done.stderr


def fake_build(root: Path) -> Path:
    """A build of ``root``'s sources whose libraries are not libraries: loading them fails."""
    built = root / "engine" / "native" / "built" / RISK.name
    built.mkdir(parents=True)
    modules = {module: f"{module}{SUFFIX}-fake.so" for module in (*RISK.modules, RISK.library)}
    for file in modules.values():
        (built / file).write_bytes(b"not a shared library")
    manifest = {
        "suffix": importlib.machinery.EXTENSION_SUFFIXES[0],
        "modules": modules,
        "sources": {
            str(path.relative_to(root)): native.source_hash(path)
            for path in dependencies(root, RISK.modules)
        },
    }
    (built / MANIFEST).write_text(json.dumps(manifest))
    return built


def test_the_compiled_modules_are_the_ones_imported_where_built() -> None:
    """Under CI the build must have happened (``make test`` builds it, ``--require``); with
    ``LIFECYCLE_NATIVE=0`` the pure Python runs; elsewhere what was decided is what runs."""
    status = native.status[RISK.name]
    file = engine.risk.monitor.__file__ or ""
    if native.switched_off():
        assert status == native.PURE_SWITCHED_OFF and file.endswith(".py")
        return
    if os.environ.get("CI") == "true":
        assert status == COMPILED, f"CI runs the compiled risk package, not: {status}"
    if status == COMPILED:
        assert file.startswith(str(BUILT)) and SUFFIX in file
        for module in RISK.modules:
            assert SUFFIX in (sys.modules[module].__file__ or ""), module
    else:
        assert file.endswith(".py")


def test_a_build_whose_sources_all_match_is_loaded(tmp_path: Path) -> None:
    """The fake build's hashes match, so it is loaded (and, not being one, fails to load:
    the pure Python runs, with one warning saying why)."""
    root = copy_tree(tmp_path)
    fake_build(root)
    file, status, logged = imported(root)
    assert status.startswith("pure: the build failed to load"), status
    assert file.endswith("monitor.py")
    assert logged.count("runs as pure Python") == 1


@pytest.mark.parametrize("edited", ["engine/risk/monitor.py", "engine/core/state.py"])
def test_a_build_older_than_its_sources_is_not_used(tmp_path: Path, edited: str) -> None:
    """A risk module, or a module it imports, edited after the build: the build is not even
    loaded (its libraries are never opened), the edited source runs, and one warning names
    the file."""
    root = copy_tree(tmp_path)
    fake_build(root)
    with (root / edited).open("a") as f:
        f.write("\nEDITED = True  # after the build\n")
    file, status, logged = imported(root)
    assert status == f"pure: {edited} changed since the build (rebuild: make native)"
    assert file.endswith("monitor.py")
    assert logged.count("runs as pure Python") == 1 and edited in logged
    if edited.endswith("monitor.py"):
        code = "import engine.risk.monitor as m; print(m.EDITED)"
        ran = subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            check=True,
        )
        assert ran.stdout.strip() == "True"


def test_switched_off_or_not_built_runs_the_pure_python_quietly(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    file, status, logged = imported(root)
    assert (status, logged) == (native.PURE_NOT_BUILT, "") and file.endswith(".py")
    fake_build(root)
    file, status, logged = imported(root, LIFECYCLE_NATIVE="0")
    assert (status, logged) == (native.PURE_SWITCHED_OFF, "") and file.endswith(".py")


def test_the_real_build_copied_is_used_and_an_edit_turns_it_off(tmp_path: Path) -> None:
    """The project's own build, copied with its sources, loads compiled; after an edit of
    the monitor it does not. Needs the build (CI requires it: see the first test)."""
    found = native.check(RISK)[0]  # whatever this process was told (LIFECYCLE_NATIVE)
    if found != COMPILED:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI builds the compiled risk package, but: {found}")
        pytest.skip(f"no fresh build here ({found}): run make native")
    root = copy_tree(tmp_path)
    shutil.copytree(BUILT / RISK.name, root / "engine" / "native" / "built" / RISK.name)
    file, status, logged = imported(root)
    assert status == COMPILED and SUFFIX in file and logged == ""
    with (root / "engine/risk/monitor.py").open("a") as f:
        f.write("\n# edited\n")
    file, status, _ = imported(root)
    assert status.startswith("pure: engine/risk/monitor.py changed") and file.endswith(".py")


def test_the_hashed_sources_are_what_the_compiled_modules_import() -> None:
    found = {str(path.relative_to(ROOT)) for path in dependencies(ROOT, RISK.modules)}
    assert {
        "engine/risk/monitor.py",
        "engine/risk/forecast.py",
        "engine/core/state.py",  # imported by the risk modules: its types are compiled in
        "engine/core/processor.py",
        "workflows/model.py",
        "engine/native/__init__.py",
    } <= found
    assert "engine/streaming/app.py" not in found  # not imported: edits there do not matter


def test_without_a_c_compiler_the_build_says_so_and_the_engine_runs_as_python(
    tmp_path: Path,
) -> None:
    """``make demo`` on a machine without gcc: the build fails, says why in one line, exits
    0, and leaves nothing that would be loaded."""
    root = copy_tree(tmp_path)
    build = [sys.executable, "-m", "engine.native.build"]
    env = {**os.environ, "PYTHONPATH": str(root), "CC": str(tmp_path / "no-such-gcc")}
    done = subprocess.run(build, cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1 and "no-such-gcc" in done.stderr
    assert "runs as pure Python" in done.stderr
    assert not list((root / "engine" / "native" / "built").glob("*/*"))
    file, status, _ = imported(root)
    assert status == native.PURE_NOT_BUILT and file.endswith(".py")
