"""The vendored webhook payloads of tests/fixtures/webhooks (see its README for origins)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "webhooks"


@cache
def _load(tool: str, name: str) -> Any:
    return json.loads((FIXTURES / tool / f"{name}.json").read_text(encoding="utf-8"))


def payload(tool: str, name: str) -> Any:
    """A fresh copy of one payload, free to edit."""
    return copy.deepcopy(_load(tool, name))


def raw(tool: str, name: str) -> bytes:
    """The payload file's bytes, as a tool would send them."""
    return (FIXTURES / tool / f"{name}.json").read_bytes()
