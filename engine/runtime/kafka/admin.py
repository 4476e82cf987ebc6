"""Create the contract's topics idempotently before the worker starts consuming."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine.runtime import logs
from engine.runtime.settings import Settings
from topics import SPECS, TopicNames

log = logs.get("zhida.admin")

# With three replicas or more, a write needs two of them in sync: with the producers'
# acks=all, an acknowledged record is on two brokers, and one broker may be down (or
# restarting) without stopping writes. Below three replicas the broker's default applies.
MIN_INSYNC_REPLICAS = 2
TOPIC_EXISTS = 36  # Kafka's TOPIC_ALREADY_EXISTS error code
DAY_MS = 86_400_000
# the recorded inputs ``zhida replay`` decides again (docs/replay.md): the contract's input
# topics and the one command log; outputs and the changelog keep the broker's defaults
REPLAYED = frozenset({s.suffix for s in SPECS if s.direction == "in"} | {"case.commands"})


def topic_configs(replication: int) -> dict[str, str]:
    """Per-topic settings of the topics the worker creates, for its replication factor."""
    if replication >= 3:
        return {"min.insync.replicas": str(MIN_INSYNC_REPLICAS)}
    return {}


def retained(prefix: str) -> set[str]:
    """The topics created with ``input_retention``: what replay reads back."""
    return {prefix + suffix for suffix in REPLAYED}


def retention_configs(days: int) -> dict[str, str]:
    """``retention.ms`` of the replayed topics: ``input_retention`` days."""
    return {"retention.ms": str(days * DAY_MS)}


async def ensure_topics(settings: Settings, districts: list[str], timeout: float = 30.0
                        ) -> list[str]:
    """Return the names created now; existing topics are left as they are."""
    names = TopicNames(settings.prefix).all(districts)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap,
                                **settings.client_kwargs())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await admin.start()
            break
        except Exception:  # broker not up yet
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.25)
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            configs = topic_configs(settings.replication)
            kept = {**configs, **retention_configs(settings.input_retention)}
            long_lived = retained(settings.prefix)
            # a ruling is read back by ``zhida precedents revoke`` as long as its precedent
            # lives: insights are few (a handful a day), so they are kept
            forever = {**configs, "retention.ms": "-1"}
            insights = TopicNames(settings.prefix).insights

            def config(n: str) -> dict[str, str]:
                return forever if n == insights else kept if n in long_lived else configs

            response = await admin.create_topics([
                NewTopic(n, num_partitions=settings.partitions,
                         replication_factor=settings.replication,
                         topic_configs=config(n) or None)
                for n in missing
            ])
            # e.g. a replication factor above the brokers available (38); another worker
            # creating the same topic at the same time (36, exists) is no error
            refused = [(e[0], e[1]) for e in getattr(response, "topic_errors", ())
                       if e[1] not in (0, TOPIC_EXISTS)]
            if refused:
                log.warning("topics_refused", topics=refused, replication=settings.replication)
        log.info("topics_ready", created=len(missing), total=len(names))
        return missing
    finally:
        await admin.close()
