"""Connector files are checked at load time: file, place and fault named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from connectors.loader import compile_connector, load_folder
from connectors.model import Kind
from events.catalogue import CATALOGUE
from events.errors import ConnectorError

TYPES = frozenset(CATALOGUE)


def test_the_shipped_connectors_load() -> None:
    found = load_folder(None, TYPES)
    assert {"github", "gitlab", "jira"} <= set(found)
    assert found["github"].kind is Kind.GITHUB


def _faults(text: str) -> str:
    with pytest.raises(ConnectorError) as err:
        compile_connector(yaml.safe_load(text), "ci.yaml", TYPES)
    return str(err.value)


def test_every_fault_is_named_with_file_and_place() -> None:
    text = _faults(
        """
name: ci
kind: generic
auth: {scheme: hmac, header: X-Sig, secret_env: LIFECYCLE_CI_SECRET}
event: {header: X-Event}
rules:
  - event: build
    emit: build.exploded
    feature: [{field: ref, pattern: '(unclosed'}]
  - event: build
    emit: build.shipped
"""
    )
    assert "ci.yaml: rules[0].emit: unknown event type 'build.exploded'" in text
    assert "ci.yaml: rules[0].feature[0].pattern: not a regular expression" in text
    assert "ci.yaml: rules[1].feature: missing" in text


def test_unknown_kind_and_missing_generic_auth() -> None:
    assert "kind: one of" in _faults("name: x\nkind: bitbucket\nrules: []")
    text = _faults("name: x\nkind: generic\nrules: [{event: a, emit: uat.passed, feature: k}]")
    assert "ci.yaml: auth:" in text


def test_a_folder_overrides_a_shipped_connector(tmp_path: Path) -> None:
    (tmp_path / "gh.yaml").write_text(
        "name: github\nkind: github\nrules:\n"
        "  - {event: push, emit: build.started, feature: [{field: ref}]}\n"
    )
    found = load_folder(tmp_path, TYPES)
    assert [r.name for r in found["github"].rules] == ["rules[0]"]
    assert "jira" in found


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="LIFECYCLE_CONNECTORS is not a folder"):
        load_folder(tmp_path / "nope", TYPES)
