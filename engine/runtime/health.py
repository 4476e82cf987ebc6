"""Honest readiness: is this worker connected to the brokers and consuming?

``/readyz`` (and ``zhida_ready``) is 200/1 only while
- the case table is recovered (``Engine.ready``, set once at start),
- the brokers answer: every ``ZHIDA_HEALTH_INTERVAL`` seconds (2) the worker sends a Metadata
  request naming no topic (the cheapest request that needs a working broker) over its
  producer's own Kafka client, which any known broker may answer within 5 s; after
  ``ZHIDA_BROKER_DOWN_SECONDS`` (6) of failed probes the worker is not ready,
- the consumer group is not rebalancing (faust's ``app.rebalancing``: from partitions
  revoked until the new assignment's tables are recovered; after the brokers come back the
  worker rejoins its group, so it is ready again once it consumes),
- the consumer is not stalled: if records wait on the assigned partitions of the engine's
  topics (highwater above the committed offset) and no offset has moved for
  ``ZHIDA_STALL_SECONDS`` (20) while brokers answer and no rebalance runs, the worker is not
  ready, until it consumes again; and at once while a consumer has stopped at an input
  whose dead letter the brokers would not take (engine/runtime/deadletter.py): that stop holds
  until a restart or a rebalance reads the input again.

Why these sources: the aiokafka consumer runs in faust's consumer thread, so nothing here
calls into it; its highwaters (from the last fetch responses) and faust's own committed and
read offsets are plain reads. ``Consumer.highwaters()`` would ask the brokers (and our
transport then reads the partitions' tails), far too dear for a probe. The producer's client
lives on the worker's event loop and keeps its connections open, so a probe costs one round
trip. Losing the brokers is seen after one failed probe plus ``ZHIDA_BROKER_DOWN_SECONDS``:
about 8 s when connections are refused, at most ~15 s when they hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from engine.runtime import logs
from engine.runtime.metrics import CONSUMED_TOPICS

log = logs.get("zhida.health")


@dataclass(frozen=True, slots=True)
class Partition:
    topic: str  # the engine's name for it (a key of ``topics.SPECS``): a bounded label
    partition: int
    highwater: int | None  # next offset to be written, as of the last fetch
    committed: int | None  # next offset to read, as faust last committed it
    read: int | None  # last offset faust handed to a stream

    @property
    def lag(self) -> int:
        if self.highwater is None:
            return 0
        if self.committed is not None:
            done = self.committed
        elif self.read is not None:
            done = self.read + 1
        else:
            done = 0  # nothing committed yet (faust keeps a committed 0 as None)
        return max(self.highwater - done, 0)


Probe = Callable[[], Awaitable[bool | None]]
Snapshot = Callable[[], Iterable[Partition]]


class Health:
    """Readiness from the last checks; ``install`` runs them in a faust task."""

    def __init__(self, engine: Any, *, interval: float = 2.0, broker_down_after: float = 6.0,
                 stall_after: float = 20.0,
                 probe_timeout: float = 5.0, probe: Probe | None = None,
                 snapshot: Snapshot | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.metrics = engine.metrics
        self.interval = interval
        self.broker_down_after = broker_down_after
        self.stall_after = stall_after
        self.probe_timeout = probe_timeout
        self.probe = probe or self.probe_brokers
        self.snapshot = snapshot or self.consumer_partitions
        self.clock = clock
        self.topic_keys = {engine.topics[k].get_topic_name(): k
                           for k in CONSUMED_TOPICS if k in engine.topics}
        self.healthy = True  # until a check says otherwise: start-up is Engine.ready's
        self.kind = ""  # why not: "brokers", "rebalancing" or "stalled"
        self.reason = ""
        self._down_since: float | None = None
        self._progress_at: float | None = None
        self._positions: dict[tuple[str, int], tuple[int | None, int | None]] = {}

    @classmethod
    def install(cls, engine: Any, **kwargs: Any) -> Health:
        """Check from the moment faust starts its tasks (after the first recovery)."""
        s = engine.settings  # ZHIDA_HEALTH_INTERVAL, _BROKER_DOWN_SECONDS, _STALL_SECONDS
        kwargs = {"interval": s.health_interval, "broker_down_after": s.broker_down_seconds,
                  "stall_after": s.stall_seconds, **kwargs}
        health = cls(engine, **kwargs)
        engine.app.task(health.run)
        return health

    async def run(self) -> None:
        while True:  # a faust task: cancelled when the app stops
            await self.check()
            await asyncio.sleep(self.interval)

    # ---- answers ----

    @property
    def ready(self) -> bool:
        return bool(self.engine.ready) and self.healthy

    def status(self) -> tuple[int, dict[str, str]]:
        """HTTP status and body for ``/readyz``."""
        if not self.engine.ready:
            return 503, {"status": "starting", "reason": "recovering the case table"}
        if not self.healthy:
            return 503, {"status": "unavailable", "reason": self.reason}
        return 200, {"status": "ready"}

    # ---- checking ----

    async def check(self) -> None:
        try:
            brokers = await self.probe()
            partitions = list(self.snapshot())
            rebalancing = bool(getattr(self.engine.app, "rebalancing", False))
            stops = self.engine.outputs.letter_stops
            stopped = [s.describe() for s in stops.active(self.engine.app)]
        except Exception:  # a bug here must not stop the checks
            log.exception("health_check_failed")
            return
        self.observe(self.clock(), brokers, partitions, rebalancing, stopped)

    def observe(self, now: float, brokers: bool | None, partitions: list[Partition],
                rebalancing: bool = False, stopped: Sequence[str] = ()) -> None:
        """Fold one probe (None: could not tell), one look at the consumer and the consumers
        stopped on a dead letter not sent (each described)."""
        if brokers is not None:
            self.metrics.brokers_reachable.set(int(brokers))
            if brokers:
                self._down_since = None
            elif self._down_since is None:
                self._down_since = now
        lags = dict.fromkeys(self.topic_keys.values(), 0)
        positions: dict[tuple[str, int], tuple[int | None, int | None]] = {}
        for p in partitions:
            lags[p.topic] = lags.get(p.topic, 0) + p.lag
            positions[(p.topic, p.partition)] = (p.committed, p.read)
        for topic, lag in lags.items():
            self.metrics.consumer_lag.labels(topic).set(lag)
        waiting = sum(lags.values())
        # a stall counts only while the consumer could move: brokers answer, no rebalance
        could_move = self._down_since is None and not rebalancing
        if (positions != self._positions or not waiting or not could_move
                or self._progress_at is None):
            self._progress_at = now
            self._positions = positions
        kind, reason = "", ""
        if self._down_since is not None and now - self._down_since >= self.broker_down_after:
            kind, reason = "brokers", f"brokers unreachable for {now - self._down_since:.0f} s"
        elif rebalancing:
            kind, reason = "rebalancing", "rebalancing: partitions being reassigned"
        elif stopped:
            kind, reason = "stalled", f"consumer stalled: {'; '.join(stopped)}"
        elif waiting and now - self._progress_at >= self.stall_after:
            kind, reason = "stalled", (f"consumer stalled: {waiting} records waiting, none "
                                       f"consumed for {now - self._progress_at:.0f} s")
        if kind != self.kind:
            if kind:  # a rebalance is routine; the others need someone to look
                (log.info if kind == "rebalancing" else log.warning)(
                    "not_ready", cause=kind, reason=reason)
            else:
                log.info("ready_again", was=self.kind)
        self.healthy, self.kind, self.reason = not kind, kind, reason
        self.metrics.ready.set(int(self.ready))

    # ---- sources ----

    async def probe_brokers(self) -> bool | None:
        """A Metadata request for no topic over the producer's client; any broker may answer."""
        producer = getattr(self.engine.app.producer, "_producer", None)
        client = getattr(producer, "client", None)
        if client is None:
            return None  # producer not started: nothing to tell
        nodes = [b.nodeId for b in client.cluster.brokers()]
        deadline = asyncio.get_running_loop().time() + self.probe_timeout
        for node in nodes:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(client.send(node, MetadataRequest([])), left)
                return True
            except (TimeoutError, KafkaError, OSError):
                continue
        return False

    def consumer_partitions(self) -> list[Partition]:
        """The engine's assigned partitions, read without calling into the consumer thread."""
        consumer = self.engine.app.consumer
        try:
            assigned = consumer.assignment()
        except Exception:  # not started, or between generations
            return []
        committed = getattr(consumer, "_committed_offset", {})
        read = getattr(consumer, "_read_offset", {})
        out = []
        for tp in assigned:
            key = self.topic_keys.get(tp.topic)
            if key is None:  # the table's changelog: read only at recovery
                continue
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # revoked meanwhile
                highwater = None
            out.append(Partition(key, tp.partition, highwater, committed.get(tp),
                                 read.get(tp)))
        return out
