"""``lifecycle demo`` starts from an empty database by default; ``--keep`` keeps what is there.

A second ``make demo`` used to add another 180 features to the first ones.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from engine.cli.main import build_parser
from engine.config.settings import Settings
from engine.core.processor import process
from engine.demo.run import DEMO_DB, Progress, _summary, demo, demo_settings, start_fresh
from engine.stores.sqlite import SqliteStore
from tests.embedded_server import EmbeddedServer, cloud_event
from tests.factories import T0, make_event
from workflows.loader import Workflows


def _store_with(db: Path, workflows: Workflows, *ids: str) -> None:
    store = SqliteStore(db)
    try:
        for i, fid in enumerate(ids):
            event = make_event("idea.submitted", fid, id=f"e{i}")
            store.commit(process(workflows, None, event, T0))
    finally:
        store.close()


def _ids(db: Path) -> list[str]:
    store = SqliteStore(db)
    try:
        return sorted(s.id for s in store.features())
    finally:
        store.close()


def test_an_earlier_demo_is_wiped(tmp_path: Path, workflows: Workflows) -> None:
    db = tmp_path / "demo.db"
    _store_with(db, workflows, "PAY-101", "SRCH-102")
    assert start_fresh(db) is None
    assert not db.exists()
    assert _ids(db) == []


def test_a_database_with_real_features_is_never_wiped(tmp_path: Path, workflows: Workflows) -> None:
    db = tmp_path / "prod.db"
    _store_with(db, workflows, "PAY-101", "checkout-v2")
    refused = start_fresh(db)
    assert refused is not None and "checkout-v2" in refused and "--keep" in refused
    assert _ids(db) == ["PAY-101", "checkout-v2"]


def test_the_demo_refuses_in_one_line_before_starting(
    tmp_path: Path, workflows: Workflows, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "prod.db"
    _store_with(db, workflows, "checkout-v2")
    settings = Settings(db=db, http_host="127.0.0.1", http_port=0)
    assert asyncio.run(demo(settings)) == 1
    assert "did not make (e.g. checkout-v2)" in capsys.readouterr().err


def test_keep_is_an_option_and_fresh_the_default() -> None:
    parser = build_parser()
    assert parser.parse_args(["demo"]).keep is False
    assert parser.parse_args(["demo", "--keep"]).keep is True


def test_the_live_summary_counts_every_feature_past_one_page(tmp_path: Path) -> None:
    """After a few ``--keep`` runs the engine holds more features than one page of
    ``GET /features``: the demo's summary line counted only the first 500."""
    events = [
        cloud_event("idea.submitted", f"PAY-{n}", f"e-{n}", data={"title": f"F {n}"})
        for n in range(101, 801)
    ]
    with EmbeddedServer(tmp_path / "many.db") as server:
        for start in range(0, len(events), 350):
            assert server.post_batch(events[start : start + 350]).status == 202
        stages = ("idea", "defined")

        async def line() -> str:
            async with aiohttp.ClientSession() as session:
                return await _summary(session, server.url, stages, Progress(total=1, days=1))

        assert "idea 700  defined 0" in server.run(line())


def test_without_lifecycle_db_the_demo_keeps_to_its_own_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LIFECYCLE_DB", raising=False)
    settings, own = demo_settings(Settings())
    assert (settings.db, own) == (DEMO_DB, True)
    assert settings.db != Settings().db  # never the file `lifecycle serve` uses
    monkeypatch.setenv("LIFECYCLE_DB", "/tmp/mine.db")
    settings, own = demo_settings(Settings())
    assert (settings.db, own) == (Path("/tmp/mine.db"), False)


def test_the_demos_own_file_starts_fresh_even_after_events_sent_by_hand(
    tmp_path: Path, workflows: Workflows
) -> None:
    db = tmp_path / "demo.db"
    _store_with(db, workflows, "PAY-101", "my-own-try")
    assert start_fresh(db) is not None  # a file the user named: left alone
    assert start_fresh(db, own=True) is None
    assert not db.exists()


def test_the_demos_own_file_is_not_wiped_under_a_running_demo(
    tmp_path: Path, workflows: Workflows
) -> None:
    db = tmp_path / "demo.db"
    _store_with(db, workflows, "PAY-101")
    running = SqliteStore(db)
    try:
        refused = start_fresh(db, own=True)
    finally:
        running.close()
    assert refused is not None and "in use" in refused
    assert _ids(db) == ["PAY-101"]
