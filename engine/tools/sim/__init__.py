"""The simulator: synthetic complaints and alarms, district centres that work the orders, and
citizens who rate the results (``zhida simulate``; ``zhida demo`` runs it against a worker).

- ``generator`` — pure, seedable generation of contract-valid inputs;
- ``centres`` — city/district/street centres acknowledging, progressing, resolving, verifying;
- ``citizens`` — complainants answering the request for a rating;
- ``recurring`` and ``disputes`` — places reported again and again (hotspots) and disputed
  streets (扯皮) with their rulings;
- ``watch`` — what the engine found: ``zhida.insights`` and precedent-routed cases;
- ``cli`` — ``run_simulation`` (the async core, reused by the demo) and ``main``.

This module holds what they share: the counters (``SimStats``), the one scheduler loop that
fires every delayed action (``Scheduler``), and consumer/producer helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

log = logging.getLogger("zhida.sim")
CHONGQING = timezone(timedelta(hours=8))
Action = Callable[[], Awaitable[None]]


def now_iso() -> str:
    return datetime.now(CHONGQING).isoformat(timespec="milliseconds")


@dataclass
class SimStats:
    """What the simulator sent and saw; the demo's summary reads it."""

    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    complaints: int = 0
    alarms: int = 0
    storms: list[tuple[str, int]] = field(default_factory=list)  # (district, alarms)
    orders: int = 0  # kind=case handler orders taken by a centre
    dispatched: int = 0  # inputs whose first order arrived
    orders_by_topic: Counter[str] = field(default_factory=Counter)  # district code or "city"
    other_orders: Counter[str] = field(default_factory=Counter)  # reminder, assist
    supervision: Counter[str] = field(default_factory=Counter)  # 督办 orders by target level
    silent: int = 0  # street orders never signed for
    supervised_acks: int = 0  # signed for by a supervising level
    assigns: int = 0
    acks: int = 0
    late_acks: int = 0
    progresses: int = 0
    resolves: int = 0
    verifies: int = 0
    returns: int = 0  # 退单 sent by streets
    district_assigns: int = 0  # returned cases placed on by the district
    disputed_returns: int = 0  # 退单 of the disputed streets and their neighbours (扯皮)
    rulings: int = 0  # assigns of disputed cases sent by their arbiter
    insights: Counter[str] = field(default_factory=Counter)  # zhida.insights by kind
    top_hotspot: dict[str, Any] | None = None  # the hotspot with the most reports seen
    precedent_cases: int = 0  # cases dispatched straight to a ruled unit (a precedent)
    assists: int = 0  # 吹哨报到 sent
    suspensions: int = 0
    forged: int = 0  # updates sent from a unit with no right to the case
    forged_signatures: int = 0  # updates signed with another unit's key
    ratings: Counter[str] = field(default_factory=Counter)
    unanswered: int = 0  # citizens who never rate
    notifications: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    directives: dict[str, Any] = field(default_factory=dict)  # id → sim.directives.Tracked
    directive_silent: int = 0  # directive tasks never signed for
    directive_updates: int = 0  # acks and reports sent for directive tasks
    latencies_ms: list[float] = field(default_factory=list)
    _sent_at: dict[str, float] = field(default_factory=dict, repr=False)

    def record_sent(self, case_id: str, at: float | None = None) -> None:
        self._sent_at.setdefault(case_id, time.monotonic() if at is None else at)

    def record_order(self, case_id: str, topic_key: str, at: float | None = None) -> None:
        """A handler order: the first one for an input we sent gives its intake→dispatch time."""
        self.orders += 1
        self.orders_by_topic[topic_key] += 1
        sent = self._sent_at.pop(case_id, None)
        if sent is not None:
            self.dispatched += 1
            self.latencies_ms.append(((time.monotonic() if at is None else at) - sent) * 1000)

    @property
    def undispatched(self) -> int:
        return len(self._sent_at)

    @property
    def rated(self) -> int:
        return sum(self.ratings.values())

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile of the intake→dispatch latencies, in ms."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
        return ordered[rank - 1]

    def busiest(self, n: int = 5) -> list[tuple[str, int]]:
        """Districts by handler orders received (the city topic left out)."""
        return [(k, c) for k, c in self.orders_by_topic.most_common() if k != "city"][:n]

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        return (f"[{elapsed:5.1f}s] sent {self.sent} | orders {self.orders} "
                f"(dispatched {self.dispatched}) | acks {self.acks} | resolves {self.resolves} "
                f"| verifies {self.verifies} | ratings {self.rated}")


class Scheduler:
    """One loop over a heap of due times fires every delayed action of the simulation.

    ``pending`` holds at most one action per key (a case, a rating): scheduling a key again
    replaces its action, and the replaced heap entry is skipped when it comes up.
    """

    def __init__(self, stats: SimStats | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stats = stats
        self.clock = clock
        self.pending: dict[str, tuple[int, Action]] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._tokens = itertools.count()
        self._wake = asyncio.Event()
        self.fired = 0

    def __len__(self) -> int:
        return len(self.pending)

    def schedule(self, key: str, delay: float, action: Action) -> None:
        when = self.clock() + max(delay, 0.0)
        token = next(self._tokens)
        self.pending[key] = (token, action)
        heapq.heappush(self._heap, (when, token, key))
        if self._heap[0][1] == token:
            self._wake.set()

    def cancel(self, key: str) -> None:
        self.pending.pop(key, None)

    async def run(self) -> None:
        while True:
            while self._heap and self._heap[0][0] <= self.clock():
                _, token, key = heapq.heappop(self._heap)
                entry = self.pending.get(key)
                if entry is None or entry[0] != token:
                    continue  # replaced or cancelled
                del self.pending[key]
                self.fired += 1
                try:
                    await entry[1]()
                except Exception:
                    log.exception("scheduled action %s failed", key)
                    if self.stats is not None:
                        self.stats.errors += 1
            # drop stale heads so the wait below is for a live action
            while self._heap and (self.pending.get(self._heap[0][2], (None,))[0]
                                  != self._heap[0][1]):
                heapq.heappop(self._heap)
            self._wake.clear()
            timeout = self._heap[0][0] - self.clock() if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)


FORGED_SIGNATURE_SHARE = 0.01  # signed updates sent with another unit's key: refused


class Sender:
    """Produces JSON bodies without waiting for each delivery; failures are counted.

    Given the units' private keys (``keys_dir``, as ``zhida keys issue`` writes them), every
    update and directive is signed by its ``actor``/``issuer`` (CONTRACT.md "Signed
    messages"), and one in a hundred with another unit's key: the worker must refuse those.
    """

    def __init__(self, producer: AIOKafkaProducer, stats: SimStats,
                 keys_dir: Path | None = None, signed_topics: frozenset[str] = frozenset(),
                 seed: int = 0) -> None:
        self.producer = producer
        self.stats = stats
        self.keys_dir = keys_dir
        self.signed_topics = signed_topics
        self._signers: dict[str, Any] = {}
        self._rng = random.Random(f"signatures-{seed}")

    async def send(self, topic: str, key: str, value: dict[str, Any]) -> None:
        raw = orjson.dumps(value)
        headers = None
        if self.keys_dir is not None and topic in self.signed_topics:
            headers = [("zhida-signature", self._signature(value, raw).encode())]
        fut = await self.producer.send(topic, raw, key=key.encode(), headers=headers)
        fut.add_done_callback(self._done)

    def _signature(self, value: dict[str, Any], raw: bytes) -> str:
        unit = str(value.get("actor") or value.get("issuer") or "")
        if self._rng.random() < FORGED_SIGNATURE_SHARE and self._signers:
            others = [u for u in self._signers if u != unit]
            if others:
                self.stats.forged_signatures += 1
                unit = self._rng.choice(others)
        return self._signer(unit).sign(raw)

    def _signer(self, unit: str) -> Any:
        from engine.runtime.signing import Signer

        signer = self._signers.get(unit)
        if signer is None:
            assert self.keys_dir is not None
            signer = self._signers[unit] = Signer.from_file(self.keys_dir / f"{unit}.1.jwk")
        return signer

    def _done(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self.stats.errors += 1
            log.warning("send failed: %s", None if fut.cancelled() else fut.exception())


def client_kwargs() -> dict[str, Any]:
    """The simulator's Kafka authentication, from ``ZHIDA_SECURITY_PROTOCOL`` and
    ``ZHIDA_SASL_*`` (the compose file's ``zhida-sim`` user; nothing on the embedded broker)."""
    from engine.runtime.settings import Settings

    return Settings.from_env().client_kwargs()


async def open_consumer(bootstrap: str, topics: list[str]) -> AIOKafkaConsumer:
    """A group-less consumer on every partition of ``topics``, positioned at their end now.

    Positions are resolved before returning, so everything produced afterwards is seen.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                **client_kwargs(),
                                fetch_max_wait_ms=20)
    await consumer.start()
    try:
        tps: list[TopicPartition] = []
        for attempt in range(50):
            missing = [t for t in topics if not consumer.partitions_for_topic(t)]
            if not missing:
                break
            if attempt == 49:
                raise RuntimeError(f"topics not found: {', '.join(missing[:5])}")
            await consumer._client.force_metadata_update()
            if any(not consumer.partitions_for_topic(t) for t in topics):
                await asyncio.sleep(0.1)
        for t in topics:
            tps += [TopicPartition(t, p) for p in sorted(consumer.partitions_for_topic(t))]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp, offset in ends.items():
            consumer.seek(tp, offset)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


class Listener:
    """Reads the JSON messages of some topics from their end and hands each to ``on_message``;
    the simulated centres and citizens are listeners."""

    def __init__(self, bootstrap: str, topics: list[str], stats: SimStats) -> None:
        self.bootstrap = bootstrap
        self.listen_to = topics
        self.stats = stats
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.consumer = await open_consumer(self.bootstrap, self.listen_to)

    async def stop(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            self.consumer = None

    async def run(self) -> None:
        assert self.consumer is not None, "start() first"
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for tp, messages in batch.items():
                for m in messages:
                    try:
                        value = orjson.loads(m.value)
                    except orjson.JSONDecodeError:
                        self.stats.errors += 1
                        continue
                    self.on_message(tp.topic, value)

    def on_message(self, topic: str, value: dict[str, Any]) -> None:
        raise NotImplementedError
