"""The webhook payloads the connector tests map, from where each tool publishes them.

GitHub: the published npm package ``@octokit/webhooks-examples`` (MIT; repository
github:octokit/webhooks), installed by ``bash deploy/tools.sh webhooks`` into the tools cache
(``make test`` and ``.ci/run`` run it on a fresh machine). Read from there, never copied into
this repository: a test of a GitHub rule runs on what GitHub's own examples contain. Missing
cache: the test is skipped on a developer's machine and fails under ``CI=true``.

GitLab and Jira publish no such package: their payloads are in ``tests/fixtures/webhooks``,
shaped exactly as their documentation shows (its README says where each comes from).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from tests.services import missing_service

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "webhooks"
"""The vendored GitLab and Jira payloads."""

TOOLS = Path(os.environ.get("LIFECYCLE_TOOLS", Path.home() / ".cache" / "lifecycle-tools"))
GITHUB_EXAMPLES = (
    TOOLS / "webhooks-examples/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
)
"""The package's examples: ``[{"name": event, "examples": [payload, ...]}, ...]``."""

GITHUB_CHOICE: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    "deployment_status.created": (
        "deployment_status",
        {
            "action": "created",
            "deployment_status.state": "success",
            "deployment_status.environment": "production",
        },
    ),
}
"""Names that need more than ``<event>.<action>`` to pick their example. Any other name
``event.action`` is the first example of ``event`` whose ``action`` is ``action``."""


@cache
def _github_index() -> dict[str, list[Any]]:
    if not GITHUB_EXAMPLES.is_file():
        missing_service(
            f"GitHub's webhook examples are missing ({GITHUB_EXAMPLES}); install them: "
            "bash deploy/tools.sh webhooks"
        )
    index = json.loads(GITHUB_EXAMPLES.read_text(encoding="utf-8"))
    return {entry["name"]: entry["examples"] for entry in index}


def _field(payload: Any, path: str) -> Any:
    for part in path.split("."):
        payload = payload.get(part) if isinstance(payload, dict) else None
    return payload


def github_example(name: str) -> Any:
    """The published example named ``event.action`` (see :data:`GITHUB_CHOICE`)."""
    event, where = GITHUB_CHOICE.get(name) or (name.split(".")[0], {"action": name.split(".")[1]})
    examples = _github_index().get(event, [])
    for example in examples:
        if all(_field(example, path) == value for path, value in where.items()):
            return example
    raise LookupError(f"@octokit/webhooks-examples has no {event} example with {dict(where)}")


@cache
def _load(tool: str, name: str) -> Any:
    if tool == "github":
        return github_example(name)
    return json.loads((FIXTURES / tool / f"{name}.json").read_text(encoding="utf-8"))


def payload(tool: str, name: str) -> Any:
    """A fresh copy of one payload, free to edit."""
    return copy.deepcopy(_load(tool, name))


def raw(tool: str, name: str) -> bytes:
    """The payload as a tool would send it (GitHub: the example as JSON; others: the file)."""
    if tool == "github":
        return json.dumps(_load(tool, name)).encode()
    return (FIXTURES / tool / f"{name}.json").read_bytes()
