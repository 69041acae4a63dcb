"""The layout tells the architecture: tests mirror the packages, and no tool imports tests."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("events", "workflows", "connectors", "engine", "metrics")


def test_every_engine_package_has_its_unit_tests_in_the_mirrored_folder() -> None:
    packages = sorted(
        p.relative_to(ROOT) for p in (ROOT / "engine").iterdir() if (p / "__init__.py").exists()
    )
    assert len(packages) >= 10
    missing = [str(p) for p in packages if not any((ROOT / "tests/unit" / p).glob("test_*.py"))]
    assert missing == [], f"no tests/unit/<package>/test_*.py for {missing}"


def test_no_package_tool_or_benchmark_imports_the_tests() -> None:
    offenders = []
    for top in (*PACKAGES, "deploy", "bench"):
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                offenders += [
                    f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "tests"
                ]
    assert offenders == []
