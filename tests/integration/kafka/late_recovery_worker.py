"""A streaming worker whose table recovery ends only once changelog records are queued.

Faust's recovery resumes the standby partitions' fetching and then, after awaiting the
tables' recovery callbacks and a seek, ends. On a loaded machine standby records are
queued by then (the CI run that lost them); on a quiet one the recovery usually ends
first. This worker adds one recovery callback that waits (at most 3 s) until the table
manager's changelog queue holds records, so the end of recovery meets them every time.
Everything else is the real worker (``python -m tests.integration.kafka.late_recovery_worker``
with the worker's settings).
"""

from __future__ import annotations

import asyncio
from typing import Any

from engine.config.settings import Settings
from engine.streaming import worker

_build_worker = worker.build_worker


def _build_late(settings: Settings, *, app_id: str | None = None) -> Any:
    parts = _build_worker(settings, app_id=app_id)
    app = parts.lapp.app

    async def until_changelog_records_are_queued() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while app.tables.changelog_queue.empty() and loop.time() < deadline:
            await asyncio.sleep(0.001)

    parts.lapp.table.on_recover(until_changelog_records_are_queued)
    return parts


worker.build_worker = _build_late

if __name__ == "__main__":
    worker.run_worker(Settings())
