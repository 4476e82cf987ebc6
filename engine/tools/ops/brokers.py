"""The brokers, as the operator tools reach them: a client bootstrapped within the connect
timeout (``BrokerUnreachable`` in one line otherwise, aiokafka's own complaints kept off
stderr), every topic's metadata, partitions' end offsets, and the engine's input topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata

from engine.runtime.kafka.offsets import fetched_ends
from engine.tools.ops.common import EXIT_USAGE, BrokerUnreachable, OpsError
from topics import SPECS

# the brokers' authentication arguments for every aiokafka client (SASL on a locked-down
# cluster, engine/runtime/settings.py); None or {} on a plaintext one
Auth = dict[str, Any] | None


class _LastError(logging.Handler):
    """Keeps aiokafka's last complaint (the cause) and keeps it off stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()


@contextlib.contextmanager
def quiet_aiokafka() -> Iterator[_LastError]:
    """aiokafka logs every failed connection (Python's last-resort handler prints them):
    the operator is to see one line, ours, so they are collected here instead."""
    logger = logging.getLogger("aiokafka")
    handler = _LastError()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _cause(text: str) -> str:
    """The useful end of aiokafka's message: 'Connect call failed …' → 'connection refused'."""
    if "Errno 111" in text or "Connect call failed" in text:
        return "connection refused"
    if "Name or service not known" in text or "Errno -2" in text or "Errno -3" in text:
        return "unknown host"
    if "]" in text:
        text = text.split("]", 1)[1]
    return text.strip().strip(":").strip()


async def connect(bootstrap: str, timeout: float, auth: Auth = None) -> AIOKafkaClient:
    """A bootstrapped client, retrying until ``timeout``: a broker still starting is waited
    for, one that never answers is named in a ``BrokerUnreachable`` (not ~30 s of retries
    and a traceback, as before)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with quiet_aiokafka() as last:
        while True:
            left = deadline - loop.time()
            client = AIOKafkaClient(bootstrap_servers=bootstrap,
                                    request_timeout_ms=max(int(left * 1000), 1000),
                                    **(auth or {}))
            try:
                await asyncio.wait_for(client.bootstrap(), max(left, 0.05))
                return client
            except Exception as e:  # refused, unknown host, no answer: all end the same
                await client.close()
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # Ctrl-C, whatever aiokafka made
                    raise asyncio.CancelledError from None  # of it: stop, do not retry
                cause = last.message or (f"{e}" if not isinstance(e, TimeoutError)
                                         else "no answer")
                if loop.time() + 0.25 >= deadline:
                    raise BrokerUnreachable(bootstrap, timeout, _cause(cause)) from None
                await asyncio.sleep(0.25)


async def check_broker(bootstrap: str, timeout: float, auth: Auth = None) -> None:
    """Fail fast and in one line when no broker answers (``zhida worker``/``simulate``)."""
    client = await connect(bootstrap, timeout, auth)
    await client.close()


async def cluster(bootstrap: str, timeout: float, auth: Auth = None) -> ClusterMetadata:
    """Metadata of every topic (partitions), from one bounded connection."""
    client = await connect(bootstrap, timeout, auth)
    try:
        with quiet_aiokafka():
            return await asyncio.wait_for(client.fetch_all_metadata(), timeout)
    except Exception as e:
        raise OpsError(f"no topic metadata from the brokers at {bootstrap}: {e or 'timeout'}",
                       code=EXIT_USAGE) from None
    finally:
        await client.close()


async def log_ends(consumer: AIOKafkaConsumer, tps: list[TopicPartition], timeout: float
                   ) -> dict[TopicPartition, int]:
    """The next offset to be written on each (assigned) partition: its high watermark.

    ListOffsets(latest) is the usual answer, but the embedded broker (Tansu 0.6) answers
    the last record batch's base offset + 1, short of the end by the rest of that batch
    (seen: a partition with records up to 8 reported 8, its fetch said 9). A fetch's high
    watermark is right on both (``engine.runtime.kafka.offsets.fetched_ends``); the consumer's
    positions are left anywhere: seek afterwards.
    """
    ends = await consumer.end_offsets(tps)
    ends.update(await fetched_ends(consumer, ends, min(timeout, 5.0)))
    return ends


def inbound_topics(prefix: str) -> set[str]:
    """The contract's input topics under ``prefix``: what the engine consumes from others."""
    return {prefix + s.suffix for s in SPECS if s.direction == "in"}
