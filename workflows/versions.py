"""The version of a workflow definition: its number, its fingerprint and its ``migrate`` map.

Read by :func:`workflows.loader.compile_definition` from the optional top-level keys
``version`` (a whole number from 1; default 1) and ``migrate`` (old stage -> new stage, for
features sitting in a stage the new version drops or renames). The fingerprint is a hash of
the parsed definition, so comments and layout do not count as a change but any change of
meaning does: an engine that ran version N refuses a file whose version is N and whose
fingerprint differs (see :mod:`engine.evolve.migration`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, NamedTuple

VERSION_KEYS = ("version", "migrate")
"""The top-level keys this module reads (for a loader that checks for unknown keys)."""


class Versioning(NamedTuple):
    """What a definition says about its version."""

    version: int
    fingerprint: str
    migrate: dict[str, str]


def fingerprint(doc: Any) -> str:
    """A short hash of a parsed definition: equal for equal meaning, whatever the layout."""
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def read_versioning(
    doc: dict[str, Any], stages: tuple[str, ...], fault: Callable[[str, str], None]
) -> Versioning:
    """The version fields of ``doc``, reporting each problem through ``fault(place, text)``.

    ``migrate`` targets must be stages of this definition; its keys are old stage names
    (they may no longer exist, which is the point), never the same as their target.
    """
    raw_version = doc.get("version", 1)
    version = 1
    if isinstance(raw_version, bool) or not isinstance(raw_version, int) or raw_version < 1:
        fault("version", f"must be a whole number from 1, not {raw_version!r}")
    else:
        version = raw_version
    migrate: dict[str, str] = {}
    raw_migrate = doc.get("migrate") or {}
    if not isinstance(raw_migrate, dict):
        fault("migrate", "must map old stages to new ones, e.g. {design: defined}")
        raw_migrate = {}
    for old, new in raw_migrate.items():
        if not isinstance(old, str) or not isinstance(new, str):
            fault(f"migrate.{old}", "old and new stages are names")
        elif new not in stages:
            fault(f"migrate.{old}", f"unknown stage {new!r} (the target must be a stage here)")
        elif old == new:
            fault(f"migrate.{old}", "maps a stage onto itself")
        else:
            migrate[old] = new
    return Versioning(version, fingerprint(doc), migrate)
