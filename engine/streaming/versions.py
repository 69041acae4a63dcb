"""The workflow versions a streaming group has run, kept in a compacted topic.

The embedded mode keeps them in its SQLite file (:mod:`engine.stores.sqlite_log`); a group of
workers keeps them in ``<app id>-workflow-versions`` (one partition, compacted, never
expiring): one record per workflow name and version, keyed ``name:version``, holding its
fingerprint and definition. A worker reads them before it starts
(:func:`read_versions`) to refuse a file changed without a new version, or older than a
version the group already ran (the same check as the embedded mode,
:func:`engine.evolve.apply.version_problems`), and records its own once the features of its
partitions passed the start-up checks (:class:`engine.streaming.migrate.VersionSweep`), so a
refused start records nothing.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from engine.config.kafka_security import KafkaSecurity
from engine.stores.sqlite_log import RecordedVersion
from events.errors import KafkaUnreachable
from workflows.model import Workflow

log = logging.getLogger(__name__)

READ_TIMEOUT = 30.0
"""Seconds to read the topic to its end before giving up."""


def versions_topic(app_id: str) -> str:
    """The name of the group's versions topic (beside its table changelog)."""
    return f"{app_id}-workflow-versions"


def version_record(workflow: Workflow) -> tuple[bytes, bytes]:
    """The key and value recording that the group runs ``workflow``."""
    key = f"{workflow.name}:{workflow.version}".encode()
    value = {
        "name": workflow.name,
        "version": workflow.version,
        "fingerprint": workflow.fingerprint,
        "definition": workflow.definition,
    }
    return key, json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def parse_record(value: bytes | None) -> RecordedVersion | None:
    """A record of the topic (``None``: a tombstone or not ours)."""
    if not value:
        return None
    try:
        doc: dict[str, Any] = json.loads(value)
        return RecordedVersion(
            str(doc["name"]), int(doc["version"]), str(doc["fingerprint"]), doc["definition"]
        )
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a record of the workflow versions topic that is not one")
        return None


def read_versions(
    bootstrap: str, topic: str, security: KafkaSecurity, timeout: float = READ_TIMEOUT
) -> dict[tuple[str, int], RecordedVersion]:
    """Every version recorded in ``topic`` (empty when it does not exist yet); called before
    the worker's event loop runs, so it blocks.

    Raises:
        KafkaUnreachable: the topic could not be read to its end within ``timeout`` seconds.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **security.kafka_python()
    )
    found: dict[tuple[str, int], RecordedVersion] = {}
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            return found
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise KafkaUnreachable(
                    f"could not read the workflow versions in {topic} within {timeout:.0f}s"
                )
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    recorded = parse_record(record.value)
                    if recorded is not None:
                        found[(recorded.name, recorded.version)] = recorded
    finally:
        consumer.close()
    return found


__all__ = ["parse_record", "read_versions", "version_record", "versions_topic"]
