"""The repository carries the license its package declares."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TITLES = {"Apache-2.0": "Apache License\n                           Version 2.0, January 2004"}


def test_license_file_matches_the_declared_license() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "license"
    ]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert TITLES[declared] in text
