"""The README's first screen tells a newcomer what the engine is, for whom, how to try it and
what they will see; its links within the page lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FIRST_SCREEN = 30
"""Lines a newcomer reads before scrolling (a laptop's browser window, rendered)."""


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_first_screen_says_what_it_is_for_whom_how_to_try_it_and_shows_it() -> None:
    first = "\n".join(README.splitlines()[:FIRST_SCREEN])
    assert first.startswith("# Lifecycle engine\n")
    assert "**Who it is for:**" in first
    assert "make demo   #" in first and "make test   #" in first
    assert "](docs/board.png)" in first
    for section in ("connect-your-tools", "deploy-on-kubernetes", "send-an-event-and-see-it"):
        assert f"(#{section})" in first  # where to go next


def test_every_link_within_the_readme_leads_to_a_heading() -> None:
    headings = {anchor(h) for h in re.findall(r"^#{1,6} (.+)$", README, flags=re.MULTILINE)}
    links = re.findall(r"\]\(#([^)]+)\)", README)
    assert links
    assert sorted(set(links) - headings) == []


def test_the_board_picture_is_in_the_repository() -> None:
    assert (ROOT / "docs" / "board.png").stat().st_size > 50_000
    assert (ROOT / "docs" / "board_picture.py").exists()  # and can be redrawn
