"""The image of deploy/Dockerfile carries every package the project installs.

The build context lets through only what deploy/Dockerfile.dockerignore names, and the
build copies each package by name; a package added to pyproject.toml but to neither (as
``connectors`` was) makes an image whose ``lifecycle`` fails at its first import. No Docker
here: these read the two files against pyproject.toml's package list.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def packages() -> list[str]:
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [p.rstrip("*") for p in found["tool"]["setuptools"]["packages"]["find"]["include"]]


def test_every_package_is_copied_into_the_build_stage() -> None:
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "deploy/Dockerfile").read_text(), re.M))
    assert set(packages()) <= copied, sorted(set(packages()) - copied)


def test_every_package_passes_the_build_context_filter() -> None:
    ignore = (ROOT / "deploy/Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything is left out unless let through by name
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert set(packages()) <= allowed, sorted(set(packages()) - allowed)
