"""Compile the engine's hot modules with mypyc into ``engine/native/built/`` (see
:mod:`engine.native` for how and when they are used).

Run: ``python -m engine.native.build`` (``make native``). A build whose manifest still
matches the sources is kept (a no-op of about a millisecond, so every ``make`` target that
runs code calls it). Needs mypy (its mypyc), setuptools, a C compiler and the Python
headers; without them it says why in one line and exits 0, and the engine runs as pure
Python (``--require``: the compiler's last lines and exit 1 instead, for CI and the Docker
image). The C code and the
compiler's objects go to a temporary directory; only the shared libraries and the manifest
are kept, written aside and moved into place at once.
"""

from __future__ import annotations

import argparse
import ast
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from engine.native import BUILT, COMPILED, HOT, MANIFEST, ROOT, Group, check, source_hash

PACKAGES = ("engine", "events", "workflows", "metrics", "connectors")
"""The project's top-level packages: the sources whose hashes a build depends on."""

_SETUP = """
import json
import sys
from setuptools import Extension, setup
from mypyc.build import mypycify

out, config, group, extensions, *files = sys.argv[1:]
setup(
    name="lifecycle-native",
    script_args=["build_ext", "--build-lib", out],
    ext_modules=[
        *mypycify([*(["--config-file", config] if config else []), *files], group_name=group,
                  opt_level="3"),
        *(Extension(module, [source], extra_compile_args=["-O3"])
          for module, source in json.loads(extensions)),
    ],
)
"""


def module_path(root: Path, module: str) -> Path | None:
    """The source file of project ``module`` under ``root`` (a package's ``__init__``; the
    stub of a module written in C)."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py", base.with_suffix(".pyi")):
        if path.is_file():
            return path
    return None


def dependencies(root: Path, modules: tuple[str, ...]) -> list[Path]:
    """The sources of ``modules``, of their packages, and of every project module they
    import, directly or not (what mypy reads to compile them), sorted."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen or module.split(".")[0] not in PACKAGES:
            continue
        path = module_path(root, module)
        if path is None:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # its packages
        package = module if path.name == "__init__.py" else ".".join(parts[:-1])
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                todo.append(base)
                todo += [f"{base}.{alias.name}" for alias in node.names]  # submodules
    found = (module_path(root, module) for module in seen)
    return sorted(path for path in found if path is not None)


def build(group: Group, root: Path = ROOT, built: Path = BUILT, *, force: bool = False) -> str:
    """Build ``group`` unless its build is fresh; returns what happened (one line). Raises
    :class:`RuntimeError` with the compiler's last lines when the build fails."""
    if not force and check(group, built, root)[0] == COMPILED:
        return f"{group.name}: up to date"
    sources = [*dependencies(root, group.modules), *(root / c for _, c in group.extensions)]
    digests = {str(path.relative_to(root)): source_hash(path) for path in sources}
    files = [str(root.joinpath(*m.split(".")).with_suffix(".py")) for m in group.modules]
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    built.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{group.name}-", dir=built) as tmp:
        work = Path(tmp)
        (work / "setup.py").write_text(_SETUP)
        out = work / "lib"
        env = {**os.environ, "MYPYPATH": str(root)}
        config = root / "pyproject.toml"
        # The project's mypy settings where they are (a source tree); mypy's defaults else.
        extensions = json.dumps([(module, str(root / c)) for module, c in group.extensions])
        args = [str(out), str(config) if config.is_file() else "", group.name, extensions, *files]
        done = subprocess.run(
            [sys.executable, "setup.py", *args],
            cwd=work,  # C files and objects stay here; setuptools reads no pyproject.toml
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"mypyc build of {group.name} failed:\n{tail}")
        # Keep each module as <dotted name><suffix>, beside the manifest.
        target = work / "result"
        target.mkdir()
        modules: dict[str, str] = {}
        for module in group.built:
            made = out.joinpath(*module.split(".")).with_name(module.split(".")[-1] + suffix)
            shutil.copy2(made, target / (module + suffix))
            modules[module] = module + suffix
        manifest = {"suffix": suffix, "modules": modules, "sources": digests}
        (target / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        final = built / group.name
        old = work / "old"
        if final.exists():
            final.rename(old)
        target.rename(final)
    count = len(group.modules) + len(group.extensions)
    return f"{group.name}: built {count} modules ({len(digests)} sources hashed)"


def prune(keep: Group, built: Path = BUILT) -> None:
    """Remove the builds of groups no longer built (``engine_risk`` before the core joined
    it), so a wheel made after ``make native`` carries only what can be loaded."""
    for path in built.glob(f"*/{MANIFEST}"):
        if path.parent.name != keep.name:
            shutil.rmtree(path.parent)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--require", action="store_true", help="fail when the build fails")
    ap.add_argument("--force", action="store_true", help="build even when up to date")
    args = ap.parse_args()
    try:
        print(build(HOT, force=args.force))
        prune(HOT)
    except (RuntimeError, OSError) as err:
        if args.require:
            print(f"native build: {err}", file=sys.stderr)
            return 1
        why = str(err).strip().splitlines()[-1]
        print(
            f"native build: not built ({why}); the engine runs as pure Python, the same "
            "behaviour, slower",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
