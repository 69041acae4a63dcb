"""``lifecycle schema --asyncapi`` validated by the AsyncAPI CLI (``@asyncapi/cli``).

The CLI comes from ``bash deploy/tools.sh asyncapi`` (npm, cached; ``make test`` runs it).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.cli.main import main
from tests.services import missing_service

pytestmark = pytest.mark.integration


def test_the_asyncapi_document_validates(tmp_path: Path) -> None:
    tools = Path(os.environ.get("LIFECYCLE_TOOLS", Path.home() / ".cache/lifecycle-tools"))
    cached = tools / "npm/node_modules/.bin/asyncapi"
    cli = str(cached) if cached.is_file() else shutil.which("asyncapi")
    if cli is None:
        missing_service("the AsyncAPI CLI is missing; install it: bash deploy/tools.sh asyncapi")
    out = io.StringIO()
    assert main(["schema", "--asyncapi"], out=out) == 0
    document = tmp_path / "asyncapi.json"
    document.write_text(out.getvalue())
    # No usage reports: the CLI would otherwise send them over the network.
    quiet = tmp_path / "analytics.json"
    quiet.write_text('{"analyticsEnabled":"false","infoMessageShown":"true","userID":"t"}')
    done = subprocess.run(
        [cli, "validate", str(document), "--fail-severity", "warn"],
        env={**os.environ, "ASYNCAPI_METRICS_CONFIG_PATH": str(quiet)},
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid" in done.stdout, done.stdout
