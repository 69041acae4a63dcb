"""A batch's table records reach the local RocksDB in one write batch per partition
(``checkpoint.write_local``), as the same bytes in the same partitions as Faust's own
key-by-key writes, and read back through Faust's store as before."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from engine.streaming.app import StreamingConfig, _Placed, create_app
from engine.streaming.checkpoint import make_current, read_any_partition, write_local
from engine.streaming.codec import key_partition
from workflows.loader import Workflows

KEYS = [f"F-{n}" for n in range(40)] + ["F-3/p.1"]


def _table(workflows: Workflows, where: Path) -> Any:
    return create_app(StreamingConfig(store="rocksdb://", data_dir=where), workflows).table


def _contents(data: Any) -> dict[int, dict[bytes, bytes]]:
    """Every key and value of each partition's RocksDB, as stored."""
    found: dict[int, dict[bytes, bytes]] = {}
    for partition, db in data._dbs.items():
        found[partition] = {k: v for k, v in db.items() if k != data.offset_key}
    return found


def test_batched_writes_store_what_faust_stores_key_by_key(
    workflows: Workflows, tmp_path: Path
) -> None:
    async def run() -> None:
        ours, faust = _table(workflows, tmp_path / "a"), _table(workflows, tmp_path / "b")
        writes: list[tuple[Any, str, bytes | None]] = [
            (_Placed("lifecycle.events", key_partition(k.split("/")[0], 8)), k, k.encode() * 9)
            for k in KEYS
        ]
        deleted = [(record, key, None) for record, key, _ in writes[:5]]
        for batch in (writes, deleted):
            write_local(ours.data, batch)
            for record, key, value in batch:  # what the worker did before
                make_current(record)
                if value is None:
                    faust.data.pop(key, None)
                else:
                    faust.data[key] = value
        assert _contents(ours.data) == _contents(faust.data)
        assert sum(map(len, _contents(ours.data).values())) == len(KEYS) - 5
        read = read_any_partition(ours)
        for _, key, value in writes[5:]:
            assert read(key) == value
        for _, key, _ in deleted:
            assert read(key) is None

    asyncio.run(run())


def test_a_read_looks_the_key_up_once(workflows: Workflows, tmp_path: Path) -> None:
    """Through the table's own ``get`` a read asked RocksDB whether it held the key, then
    read it: two look-ups a read (2% of the worker's thread)."""

    async def run() -> None:
        table = _table(workflows, tmp_path)
        write_local(table.data, [(_Placed("lifecycle.events", 1), "F-1", b"{}")])
        lookups: list[str] = []
        for name in ("_contains", "_get"):
            real = getattr(table.data, name)

            def counted(key: bytes, real: Any = real, name: str = name) -> Any:
                lookups.append(name)
                return real(key)

            setattr(table.data, name, counted)
        read = read_any_partition(table)
        assert read("F-1") == b"{}"
        assert read("F-2") is None
        assert lookups == ["_get", "_get"]

    asyncio.run(run())
