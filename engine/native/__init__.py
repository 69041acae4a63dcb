"""Compiled (mypyc) builds of the engine's hot modules, used only while they match the source.

The core's processor, effects and time math (``engine.core``) and the risk package
(``engine.risk``: reasons, signals, deadlines, forecasts and the monitor) run on every event
a live engine applies. Compiled with mypyc, risk costs about half of what it costs as
Python (``bench/risk_split.py``), and the core without risk runs about a tenth faster
(``bench/core.py``); compiled together, risk's reads of the core's states stay native too.
:mod:`engine.native.build` (``make native``, run by ``make demo``, ``make test`` and the
Docker image's build) compiles them into ``engine/native/built/``, a directory of its own,
with a manifest of what it was built from: the SHA-256 of each compiled module's source and
of every project module those import (mypyc bakes their types and constants into the
compiled code).

Never stale. A compiled module next to its ``.py`` would shadow it silently: a developer who
edits ``engine/risk/monitor.py`` would go on running the old build. So :func:`load`, called
by ``engine/core/__init__.py`` and ``engine/risk/__init__.py`` before any of their modules is
imported, hashes those sources again (about a millisecond) and hands the compiled modules to
the import system only when every hash matches; otherwise the pure Python runs, with one
warning naming the changed file. Rebuilding is ``make native`` (the ``make`` targets that
run code do it first).

Pure Python is a supported fallback with the same behaviour (the unit tests run the core's
and risk's tests both ways): it runs when nothing was built (no C compiler: the build says
so and ``make demo`` goes on), when ``LIFECYCLE_NATIVE=0`` (read here, at import, before any
setting can be: the choice is made once per process), when the build is stale, or when it
fails to load (another Python, a damaged file).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

log = logging.getLogger(__name__)

ROOT: Final = Path(__file__).resolve().parents[2]
"""The directory holding the ``engine`` package (the repository, or site-packages)."""
BUILT: Final = Path(__file__).resolve().parent / "built"
"""Where :mod:`engine.native.build` puts the compiled modules and their manifest."""
MANIFEST: Final = "manifest.json"
SWITCH: Final = "LIFECYCLE_NATIVE"
"""``0`` (or ``false``, ``no``, ``off``) runs the pure Python even where a build is fresh."""
COMPILED: Final = "compiled"
PURE_SWITCHED_OFF: Final = "pure: switched off (LIFECYCLE_NATIVE=0)"
PURE_NOT_BUILT: Final = "pure: not built"


@dataclass(frozen=True)
class Group:
    """Modules compiled together into one shared library (calls between them stay native)."""

    name: str
    modules: tuple[str, ...]
    extensions: tuple[tuple[str, str], ...] = ()
    """Modules written in C, built beside them: (module, its source under :data:`ROOT`)."""

    @property
    def library(self) -> str:
        """The shared library's module name, as mypyc names it."""
        return f"{self.name}__mypyc"

    @property
    def built(self) -> tuple[str, ...]:
        """Every module a build holds: the compiled ones, the C ones, the library."""
        return (*self.modules, *(module for module, _ in self.extensions), self.library)


HOT: Final = Group(
    "engine_hot",
    (
        "engine.core.effects",
        "engine.core.processor",
        "engine.core.timemath",
        "engine.risk.deadlines",
        "engine.risk.forecast",
        "engine.risk.monitor",
        "engine.risk.reasons",
        "engine.risk.signals",
    ),
    (("engine.risk._speedups", "engine/risk/_speedups.c"),),
)
"""The core and the risk package, compiled as one library: the risk modules call the core's
time math and read its outcomes on every event, and calls stay native only inside one
library. So the two are one build, used or not as a whole: an edit to any source either of
them imports runs both as Python. What risk runs in C (``engine/risk/_speedups.c``: the
forecast model's Monte Carlo walks, the quantiles of its stays, two conversions of instants)
is built with them, and used only with them.

``engine.core.state`` and ``engine.core.outcomes`` stay interpreted: compiled, a class of
theirs becomes one mypyc checks the types of (reading a ``FeatureState`` field of another
type than declared, a ``HistoryEntry`` outcome given as a plain string, an ``ExternalKeys``
given a list raise ``TypeError``), where the Python takes them as they come, and the stores
and tests rely on that; their named tuples and enum gain little from it anyway."""

status: dict[str, str] = {}
"""Per group name, what :func:`load` decided: :data:`COMPILED`, or ``pure: <why>``."""


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def switched_off() -> bool:
    return os.environ.get(SWITCH, "1").strip().lower() in {"0", "false", "no", "off"}


class _Finder(importlib.abc.MetaPathFinder):
    """Answers the imports of one build's modules with their compiled files."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def check(group: Group, built: Path = BUILT, root: Path = ROOT) -> tuple[str, dict[str, Path]]:
    """Whether ``group``'s build in ``built`` may be used for the sources under ``root``:
    :data:`COMPILED` and the files of its modules (the library's among them), or why not
    (``pure: ...``) and nothing."""
    try:
        manifest = json.loads((built / group.name / MANIFEST).read_text())
    except FileNotFoundError:
        return PURE_NOT_BUILT, {}
    except (OSError, ValueError) as err:
        return f"pure: unreadable manifest ({err})", {}
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    if manifest.get("suffix") != suffix:
        return f"pure: built for another Python ({manifest.get('suffix')}, not {suffix})", {}
    if tuple(manifest.get("modules", {})) != group.built:
        return "pure: built for other modules", {}
    for name, digest in manifest.get("sources", {}).items():
        try:
            now = source_hash(root / name)
        except OSError:
            now = None
        if now != digest:
            return f"pure: {name} changed since the build (rebuild: make native)", {}
    files = {module: built / group.name / file for module, file in manifest["modules"].items()}
    return COMPILED, files


def load(group: Group, built: Path = BUILT, root: Path = ROOT) -> str:
    """Make ``group``'s modules import compiled where its build is fresh; returns (and keeps
    in :data:`status`) what was decided. Called by the group's package before any of its
    modules is imported; a stale or broken build logs one warning."""
    if group.name in status:
        return status[group.name]
    files: dict[str, Path] = {}
    if switched_off():
        found = PURE_SWITCHED_OFF
    else:
        found, files = check(group, built, root)
    if files:
        finder = _Finder(files)
        sys.meta_path.insert(0, finder)
        try:  # The library holds all the code: loading it checks the build loads at all.
            importlib.import_module(group.library)
        except ImportError as err:
            sys.meta_path.remove(finder)
            found = f"pure: the build failed to load ({err})"
    if found not in (COMPILED, PURE_NOT_BUILT, PURE_SWITCHED_OFF):
        log.warning("%s runs as pure Python: %s", ", ".join(group.modules), found[6:])
    status[group.name] = found
    return found
