"""Create the contract's topics idempotently before the worker starts consuming."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine import logs
from engine.settings import Settings
from topics import TopicNames

log = logs.get("zhida.admin")


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
            await admin.create_topics([
                NewTopic(n, num_partitions=settings.partitions,
                         replication_factor=settings.replication) for n in missing
            ])
        log.info("topics_ready", created=len(missing), total=len(names))
        return missing
    finally:
        await admin.close()
