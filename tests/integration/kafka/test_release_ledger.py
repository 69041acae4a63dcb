"""The streaming mode's release ledger on the real broker: the ledger contract, a release
recorded by one worker read by another, and everything read back by a ledger started anew."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from connectors.mapping import ledger_key
from engine.streaming.ledger import KafkaLedger, ledger_topic
from tests.unit.connectors.ledger_contract import SOURCE, check_ledger

pytestmark = pytest.mark.integration


def test_the_kafka_ledger_keeps_the_contract_across_workers_and_restarts(
    kafka_bootstrap: str,
) -> None:
    topic = ledger_topic(f"test-ledger-{uuid.uuid4().hex[:10]}")
    key = ledger_key(SOURCE, "v9.9.9")

    async def scenario() -> None:
        one = KafkaLedger(kafka_bootstrap, topic)
        other = KafkaLedger(kafka_bootstrap, topic)
        await one.start()
        await other.start()
        try:
            await check_ledger(one)
            await one.record([(key, ("PAY-7",))])
            assert other(key) == ()  # not read yet ...
            await other.refresh()  # ... until it reads to the end
            assert other(key) == ("PAY-7",)
        finally:
            await one.stop()
            await other.stop()
        restarted = KafkaLedger(kafka_bootstrap, topic)
        await restarted.start()  # a new worker, nothing local: the topic is the ledger
        try:
            assert restarted(key) == ("PAY-7",)
            assert restarted(ledger_key(SOURCE, "v1.0.0")) == ("PAY-1", "PAY-2", "PAY-3")
            assert len(restarted) == 3
        finally:
            await restarted.stop()

    try:
        asyncio.run(scenario())
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        finally:
            admin.close()
        policy = described["topic"][topic]["cleanup.policy"]["value"]
        assert policy == "compact"  # every (release, feature) pair kept, not aged out
    finally:
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        with contextlib.suppress(Exception):  # cleanup only
            admin.delete_topics([topic])
        admin.close()
