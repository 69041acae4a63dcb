"""The compiled core and risk package are used only while they match the source
(engine.native).

Each case imports a compiled module (the risk monitor, or the core's processor) in a fresh
interpreter from a copy of the project's packages, so what it loads is decided as a process
starting up decides it.
"""

from __future__ import annotations

import gc
import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine.core.timemath as timemath
import engine.native as native
import engine.risk.forecast as forecast
from engine.native import BUILT, COMPILED, HOT, MANIFEST, ROOT
from engine.native.build import dependencies, prune
from tests.services import missing_service

SUFFIX = ".cpython"  # every compiled module's file name has the interpreter's tag


def copy_tree(to: Path) -> Path:
    """The project's packages (without any build) copied under ``to``."""
    for package in ("engine", "events", "workflows", "metrics", "connectors"):
        shutil.copytree(
            ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__", "built")
        )
    return to


def imported(root: Path, module: str = "engine.risk.monitor", **env: str) -> tuple[str, str, str]:
    """Import ``module`` from ``root`` in a fresh interpreter: its file, what
    :func:`engine.native.load` decided, and what was logged."""
    code = (
        f"import {module} as m, engine.native as n;print(m.__file__); print(n.status[{HOT.name!r}])"
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
    built = root / "engine" / "native" / "built" / HOT.name
    built.mkdir(parents=True)
    modules = {module: f"{module}{SUFFIX}-fake.so" for module in HOT.built}
    for file in modules.values():
        (built / file).write_bytes(b"not a shared library")
    manifest = {
        "suffix": importlib.machinery.EXTENSION_SUFFIXES[0],
        "modules": modules,
        "sources": {
            str(path.relative_to(root)): native.source_hash(path)
            for path in [*dependencies(root, HOT.modules), *(root / c for _, c in HOT.extensions)]
        },
    }
    (built / MANIFEST).write_text(json.dumps(manifest))
    return built


def test_the_compiled_modules_are_the_ones_imported_where_built() -> None:
    """Under CI the build must have happened (``make test`` builds it, ``--require``); with
    ``LIFECYCLE_NATIVE=0`` the pure Python runs; elsewhere what was decided is what runs.
    Every module of the build is checked, the core's as well as risk's."""
    files = {module: importlib.import_module(module).__file__ or "" for module in HOT.modules}
    status = native.status[HOT.name]
    assert {m.split(".")[1] for m in files} == {"core", "risk"}
    if native.switched_off():
        assert status == native.PURE_SWITCHED_OFF
        assert all(file.endswith(".py") for file in files.values()), files
        return
    if os.environ.get("CI") == "true":
        assert status == COMPILED, f"CI runs the compiled core and risk package, not: {status}"
    for module, file in files.items():
        if status == COMPILED:
            assert file.startswith(str(BUILT)) and SUFFIX in file, module
        else:
            assert file.endswith(".py"), module
    # Risk's C functions run exactly when the compiled modules run.
    chosen = [
        forecast.draw_walks,
        forecast.to_microseconds,
        forecast.elapsed_seconds,
        forecast.suffix_quantiles,
        forecast.outlasted,
        forecast.survival_quantiles,
        forecast.utc_microseconds,
        forecast.leading,
    ]
    if status == COMPILED:
        assert all(f.__module__ == "engine.risk._speedups" for f in chosen)
        assert str(BUILT) in (sys.modules["engine.risk._speedups"].__file__ or "")
    else:
        assert chosen == [
            forecast._walks,
            timemath.microseconds,
            forecast.seconds_between,
            forecast.paired_quantiles,
            forecast._outlasted,
            forecast.product_limit,
            forecast._utc_microseconds,
            forecast._leading,
        ]


def test_the_objects_risk_keeps_per_feature_are_not_walked_by_the_collector() -> None:
    """Compiled, the monitor's record of a feature, its deadline heap's entries and a
    cohort's record of a stay are ``acyclic``: the cyclic garbage collector neither tracks
    nor walks them (a live engine holds one per feature, one per armed deadline and one per
    kept stay). As pure Python they are tracked, as any object with slots is."""
    from engine.core.state import FeatureState
    from engine.risk.forecast import _Stay
    from engine.risk.monitor import NEVER, _Armed, _Watch
    from tests.factories import T0

    state = FeatureState(id="F-1", workflow="feature", stage="idea", created_at=T0,
                         entered_stage_at=T0)  # fmt: skip
    watch = _Watch(state, (), None, None, 0, "low", T0, NEVER, None, 0)
    compiled = native.status[HOT.name] == COMPILED
    for record in (_Stay(), watch, _Armed(0, "F-1")):
        assert gc.is_tracked(record) is not compiled, record


def test_a_build_whose_sources_all_match_is_loaded(tmp_path: Path) -> None:
    """The fake build's hashes match, so it is loaded (and, not being one, fails to load:
    the pure Python runs, with one warning saying why)."""
    root = copy_tree(tmp_path)
    fake_build(root)
    file, status, logged = imported(root)
    assert status.startswith("pure: the build failed to load"), status
    assert file.endswith("monitor.py")
    assert logged.count("runs as pure Python") == 1


@pytest.mark.parametrize(
    ("module", "edited"),
    [
        ("engine.risk.monitor", "engine/risk/monitor.py"),
        ("engine.risk.monitor", "engine/core/state.py"),
        ("engine.core.processor", "engine/core/processor.py"),
        ("engine.core.processor", "engine/risk/forecast.py"),
        ("engine.core.timemath", "workflows/model.py"),
    ],
)
def test_a_build_older_than_its_sources_is_not_used(
    tmp_path: Path, module: str, edited: str
) -> None:
    """A compiled module, or a module one of them imports, edited after the build: the
    build is not even loaded (its libraries are never opened), the core and risk both run
    as Python (risk's compiled code assumes the core's compiled classes, and the reverse),
    the edited source runs, and one warning names the file."""
    root = copy_tree(tmp_path)
    fake_build(root)
    with (root / edited).open("a") as f:
        f.write("\nEDITED = True  # after the build\n")
    file, status, logged = imported(root, module)
    assert status == f"pure: {edited} changed since the build (rebuild: make native)"
    assert file.endswith(module.rsplit(".", 1)[1] + ".py")
    assert logged.count("runs as pure Python") == 1 and edited in logged
    if edited.startswith("engine/"):
        name = edited.removesuffix(".py").replace("/", ".")
        code = f"import engine.core.processor, {name} as m; print(m.EDITED)"
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


@pytest.mark.parametrize(
    "edited",
    [
        "engine/risk/monitor.py",
        "engine/core/effects.py",
        "engine/core/timemath.py",
        "engine/risk/_speedups.c",  # what risk runs in C, built with them
    ],
)
def test_the_real_build_copied_is_used_and_an_edit_turns_it_off(
    tmp_path: Path, edited: str
) -> None:
    """The project's own build, copied with its sources, loads compiled (the core's modules
    and risk's); after an edit of one source it does not. Needs the build (CI requires it:
    see the first test)."""
    found = native.check(HOT)[0]  # whatever this process was told (LIFECYCLE_NATIVE)
    if found != COMPILED:
        missing_service(f"no fresh build of the core and risk here ({found}): run make native")
    root = copy_tree(tmp_path)
    shutil.copytree(BUILT / HOT.name, root / "engine" / "native" / "built" / HOT.name)
    for module in ("engine.risk.monitor", "engine.core.processor", "engine.core.timemath"):
        file, status, logged = imported(root, module)
        assert status == COMPILED and SUFFIX in file and logged == "", module
    with (root / edited).open("a") as f:
        f.write("\n# edited\n")
    for module in ("engine.risk.monitor", "engine.core.processor"):
        file, status, _ = imported(root, module)
        assert status.startswith(f"pure: {edited} changed") and file.endswith(".py"), module


def test_the_hashed_sources_are_what_the_compiled_modules_import() -> None:
    found = {str(path.relative_to(ROOT)) for path in dependencies(ROOT, HOT.modules)}
    assert {
        "engine/risk/monitor.py",
        "engine/risk/forecast.py",
        "engine/core/state.py",
        "engine/core/processor.py",
        "engine/core/effects.py",
        "engine/core/timemath.py",
        "events/envelope.py",  # imported by the core: its types are compiled in
        "events/catalogue.py",
        "workflows/model.py",
        "engine/native/__init__.py",
        "engine/risk/_speedups.pyi",  # the C functions' stub: their types are compiled in
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


def test_a_build_of_a_group_no_longer_built_is_removed(tmp_path: Path) -> None:
    """``engine_risk`` (built before the core joined the risk package) is removed by the
    next build, so a wheel made after ``make native`` carries only what can be loaded."""
    for group in ("engine_risk", HOT.name):
        (tmp_path / group).mkdir()
        (tmp_path / group / MANIFEST).write_text("{}")
    (tmp_path / "engine_hot-tmp").mkdir()  # a build under way: no manifest, left alone
    prune(HOT, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine_hot", "engine_hot-tmp"]
