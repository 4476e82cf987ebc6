"""The real broker's test tools: a worker process, a collector of the output topics, a
module's own broker.

No mock Kafka: a ``Worker`` is the ``zhida worker`` command against Tansu on a free port, a
``Collector`` reads every output topic from the beginning. The session's broker, worker and
collector fixtures built from them are in tests/support/fixtures.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine.data.topology import Topology
from engine.tools.broker import EmbeddedBroker
from engine.tools.process import Stopped, WorkerProcess, metric_sum
from tests.support.helpers import POLL, POLL_PROCESS
from topics import TopicNames

ROOT = Path(__file__).resolve().parents[2]
NO_MERGE = ROOT / "tests" / "data" / "no-merge.toml"  # the default of a test worker
STOP_GRACE = 15.0  # seconds a stopped test worker has to exit before SIGKILL
NAMES = TopicNames("zhida.")
TOPO = Topology.load()


class Worker(WorkerProcess):
    """A ``zhida worker`` process on ``bootstrap`` (the no-merge policy unless ``env`` says
    otherwise), its HTTP on ``http_port``, its state in ``data_dir``: engine/tools/process.py's
    ``WorkerProcess``, run from the repository root, polled every ``POLL_PROCESS`` s until ready
    and given 15 s to stop."""

    def __init__(self, bootstrap: str, http_port: int, data_dir: Path, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(bootstrap, http_port, data_dir, log_path, cwd=ROOT,
                         env={"ZHIDA_POLICY": str(NO_MERGE), **(env or {})})

    def start(self, timeout: float = 60.0, poll: float = POLL_PROCESS) -> Self:
        """Spawn and wait for ``/readyz`` 200; WorkerExited (a RuntimeError) if the process
        ends first, WorkerNotReady (a TimeoutError) after ``timeout`` s."""
        return super().start(timeout, poll)

    def stop(self, grace: float = STOP_GRACE, sig: int = signal.SIGINT) -> Stopped:
        return super().stop(grace, sig)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 if none); OSError
        when the worker does not answer (a test must not read that as 0)."""
        return metric_sum(self.get("/metrics")[1].decode(), name, **labels) or 0.0


@dataclass
class Record:
    """One output record as the collector read it: the value decoded, headers as bytes."""

    topic: str
    key: str | None
    value: dict[str, Any]
    headers: dict[str, bytes]


class Collector:
    """Reads every output topic from the beginning; tests wait on conditions over it."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.records: list[Record] = []
        self._task: asyncio.Task[None] | None = None
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)

    async def start(self) -> None:
        await self.producer.start()
        topics = [NAMES.case_events, NAMES.deadletter, NAMES.notifications,
                  NAMES.directive_events, NAMES.insights,
                  *(NAMES.dispatch(d) for d in (*TOPO.districts, "city"))]
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, fetch_max_wait_ms=20,
                                         enable_auto_commit=False)
        await self.consumer.start()
        tps = []
        for t in topics:
            parts = self.consumer.partitions_for_topic(t)
            if parts is None:
                await self.consumer._client.force_metadata_update()
                parts = self.consumer.partitions_for_topic(t) or set()
            tps += [TopicPartition(t, p) for p in parts]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for tp, msgs in batch.items():
                for m in msgs:
                    self.records.append(Record(
                        tp.topic, m.key.decode() if m.key else None, orjson.loads(m.value),
                        {k: v for k, v in m.headers}))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()
        await self.producer.stop()

    async def send(self, topic: str, value: dict[str, Any] | bytes, key: str | None = None
                   ) -> None:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        await self.producer.send_and_wait(topic, raw, key=key.encode() if key else None)

    def where(self, topic: str | None = None, **fields: Any) -> list[Record]:
        return [r for r in self.records
                if (topic is None or r.topic == topic)
                and all(r.value.get(k) == v for k, v in fields.items())]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(POLL)

    async def events(self, case_id: str, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        recs = await self.wait_for(
            lambda: (r := self.where(NAMES.case_events, case_id=case_id)) and len(r) >= n and r,
            timeout)
        return [r.value for r in recs]


# ---- a module's own broker (tests that kill, rebalance or reconfigure workers) ----


@contextlib.contextmanager
def own_broker(tmp_path_factory: pytest.TempPathFactory, name: str
               ) -> Iterator[EmbeddedBroker]:
    """A broker of one module's own, stopped on leaving."""
    b = EmbeddedBroker(log_path=tmp_path_factory.mktemp(name) / "broker.log").start()
    try:
        yield b
    finally:
        b.stop()


@contextlib.asynccontextmanager
async def collecting(bootstrap: str) -> AsyncIterator[Collector]:
    """The contract's topics first (a worker would create them too), then read from 0."""
    from engine.runtime.kafka.admin import ensure_topics
    from engine.runtime.settings import Settings

    await ensure_topics(Settings(bootstrap=bootstrap), TOPO.districts)
    c = Collector(bootstrap)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()

