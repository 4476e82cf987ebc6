"""bench/failover.py's load: N open cases built fast, a trickle of complaints through intake
on every partition in turn, and their dispatch orders read back."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness import Failed, loadavg, progress
from bench.workers import Group
from bench.workload import complaints
from engine.core.ids import case_id_for
from engine.core.model import Origin
from engine.data.catalogue import Catalogue
from engine.runtime.store import partition_of
from handlers.complaints import to_command as complaint_command
from schemas.codec import encode
from topics import TopicNames

CHUNK = 5000  # open-case commands produced at a time


@functools.cache
def _catalogue() -> Catalogue:
    return Catalogue.load()


def open_commands(names: TopicNames, msgs: list[tuple[bytes, bytes]]
                  ) -> list[tuple[bytes, bytes]]:
    """(case id, open-case command) as the intake agent forwards them (merging off)."""
    now = datetime.now(UTC)
    out = []
    for key, value in msgs:
        origin = Origin(topic=names.complaints, key=key.decode(), original=value.decode())
        cmd = complaint_command(_catalogue(), value, origin, now)
        out.append((cmd.aggregate.encode(), encode(cmd)))
    return out


async def build(group: Group, producer: AIOKafkaProducer, n: int, window: int,
                stall: float = 120.0) -> dict[str, Any]:
    """N open cases through ``case.commands`` in large batches; seconds and cases/s."""
    sent = chunk = 0
    done = 0.0
    t0 = last_change = time.perf_counter()
    last_report = t0
    while done < n:
        if sent < n and sent - done < window:
            k = min(CHUNK, n - sent)
            msgs = open_commands(group.names,
                                 complaints(k, f"{group.tag}-b{chunk:04d}", seed=chunk))
            futures = [await producer.send(group.names.case_commands, v, key=key)
                       for key, v in msgs]
            await asyncio.gather(*futures)
            sent, chunk = sent + k, chunk + 1
            continue
        await asyncio.sleep(0.25)
        now = await group.opened()
        t = time.perf_counter()
        if now > done:
            done, last_change = now, t
        if t - last_change > stall:
            raise Failed(f"{group.tag}: build stalled at {done:,.0f}/{n:,}")
        if len(group.up()) < len(group.members):
            raise Failed(f"{group.tag}: a worker died during the build")
        if t - last_report > 15:
            last_report = t
            progress(f"  build {done:,.0f}/{n:,} ({done / (t - t0):,.0f}/s), "
                     f"load {loadavg()}")
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 1), "rate": round(n / seconds, 1) if seconds else None}


class Trickle:
    """Complaints at ``rate`` a second through intake, their case ids' partitions in turn."""

    def __init__(self, group: Group, producer: AIOKafkaProducer, rate: float) -> None:
        self.group = group
        self.producer = producer
        self.rate = rate
        self.sent: dict[str, tuple[float, int]] = {}  # case id -> (perf time sent, partition)
        self._task: asyncio.Task[None] | None = None
        self._i = 0

    @functools.cached_property
    def _bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _k, v in complaints(997, f"{self.group.tag}-t", seed=23)]

    def _next(self, partition: int) -> tuple[str, bytes, bytes]:
        """A complaint whose case lands on ``partition`` (ids tried in order)."""
        while True:
            self._i += 1
            cid = f"{self.group.tag}-t{self._i:07d}"
            case_id = case_id_for("complaint", cid)
            if partition_of(case_id, self.group.partitions) == partition:
                body = dict(self._bodies[self._i % len(self._bodies)])
                body["complaint_id"] = cid
                body["reported_at"] = datetime.now(UTC).isoformat()
                return case_id, cid.encode(), orjson.dumps(body)

    async def _run(self) -> None:
        start = time.perf_counter()
        k = 0
        while True:
            due = start + k / self.rate
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            partition = k % self.group.partitions
            case_id, key, value = self._next(partition)
            self.sent[case_id] = (time.perf_counter(), partition)
            await self.producer.send(self.group.names.complaints, value, key=key)
            k += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.producer.flush()


class Orders:
    """Dispatch orders of the trickle's cases, read from the end of every dispatch topic:
    case id -> perf time its first order was read."""

    def __init__(self, group: Group, trickle: Trickle) -> None:
        self.group = group
        self.trickle = trickle
        self.seen: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.group.bootstrap,
                                         enable_auto_commit=False, fetch_max_wait_ms=20)
        await self.consumer.start()
        await self.consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in self.group.dispatch_topics()
               for p in (self.consumer.partitions_for_topic(t) or ())]
        if not tps:
            raise Failed("no dispatch topics")
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        sent = self.trickle.sent
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.perf_counter()
            for recs in batch.values():
                for r in recs:
                    with contextlib.suppress(ValueError, AttributeError):
                        v = orjson.loads(r.value)
                        cid = v.get("case_id")
                        if v.get("kind") == "case" and cid in sent and cid not in self.seen:
                            self.seen[cid] = now

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.consumer.stop()
