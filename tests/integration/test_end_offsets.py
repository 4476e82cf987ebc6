"""The end-offset probe against the embedded broker: the true end, cheaply.

Tansu 0.6.0 reports a partition's end as its newest batch's base offset + 1; faust's table
recovery trusts that end, so ``engine.runtime.kafka.transport.true_end_offsets`` must correct it
from a
fetch response's high watermark, whatever the reported end was.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine.runtime.kafka.transport import true_end_offsets
from engine.tools.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


async def test_the_probe_finds_the_end_inside_a_multi_record_batch(
        broker: EmbeddedBroker) -> None:
    topic = f"probe-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20)
    await producer.start()
    try:  # partition 0: one batch of 50 records; 1: 50 batches of one; 2: nothing
        await asyncio.gather(*[await producer.send(topic, b"x", partition=0)
                               for _ in range(50)])
        for _ in range(50):
            await producer.send_and_wait(topic, b"y", partition=1)
    finally:
        await producer.stop()
    tps = [TopicPartition(topic, p) for p in range(3)]
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        reported = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    ends = await true_end_offsets(broker.bootstrap, reported, deadline_s=20)
    assert ends == {tps[0]: 50, tps[1]: 50, tps[2]: 0}, (reported, ends)
    # the probe never lowers an end it was given
    higher = {tp: n + 5 for tp, n in ends.items()}
    assert await true_end_offsets(broker.bootstrap, higher, deadline_s=20) == higher
