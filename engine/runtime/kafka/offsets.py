"""Partition ends from fetch responses, for every client of the engine (no faust here).

Used by the worker's table recovery (``engine/runtime/kafka/transport.py``) and the operator tools
(``engine/tools/ops/brokers.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiokafka
from aiokafka import TopicPartition

BEYOND = 2**62  # an offset past the end of any partition


async def fetched_ends(consumer: aiokafka.AIOKafkaConsumer, reported: Mapping[TopicPartition, int],
                       deadline_s: float) -> dict[TopicPartition, int]:
    """The high watermark each (assigned) partition's fetch response gives, never below the
    reported end; partitions not answered by the deadline are left out. Positions are left
    anywhere: seek afterwards.

    Every fetch response carries the partition's high watermark, and Tansu's is right (its
    watermark record) where its ListOffsets is not. A fetch inside a partition makes Tansu
    list every batch stored in it, which at a million cases took longer than 30 s (faust then
    found its persisted offset above the stale end and raised ConsistencyError: the earlier
    probe read from the reported end - 1); a fetch at or past the end is answered without
    reading the partition. So the fetch goes past the end. A broker that checks the range
    (Apache Kafka, whose reported ends are right) answers OFFSET_OUT_OF_RANGE: the consumer
    resets by its policy, or with none the fetch goes to the reported end instead, and both
    answers carry the high watermark too.
    """
    for tp in reported:
        consumer.seek(tp, BEYOND)
    ends: dict[TopicPartition, int] = {}
    pending = set(reported)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while pending and loop.time() < give_up:
        try:
            await consumer.getmany(*pending, timeout_ms=200)
        except aiokafka.errors.OffsetOutOfRangeError as e:
            out = e.args[0] if e.args and isinstance(e.args[0], dict) else pending
            for tp in out:
                consumer.seek(tp, max(reported[tp], 0))
            continue
        for tp in list(pending):
            high = consumer.highwater(tp)  # set by a fetch answered without error
            if high is not None:
                ends[tp] = max(reported[tp], high)
                pending.discard(tp)
    return ends
