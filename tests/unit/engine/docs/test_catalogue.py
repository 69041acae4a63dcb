"""docs/events.md is what the code says: the catalogue, the moves and the rules cannot drift."""

from __future__ import annotations

from pathlib import Path

from engine.docs.catalogue import render
from events.catalogue import CATALOGUE

ROOT = Path(__file__).resolve().parents[4]
PAGE = ROOT / "docs" / "events.md"


def test_the_page_in_the_repository_is_the_generated_one() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/events.md is stale: run `python -m engine.docs.catalogue > docs/events.md`"
    )


def test_every_catalogue_type_is_on_the_page_with_its_move() -> None:
    page = render()
    for event_type in CATALOGUE:
        assert f"| `{event_type}` |" in page
    assert "| `uat.failed` | `uat` -> `development` (rework) | `reason`: string |" in page
    assert "`risk_id`: string (required)" in page


def test_the_readme_links_the_page_and_nothing_outside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/events.md)" in readme
    assert "../" not in readme
