"""bench/timers.py's load and what reads it back: issue 13's targets and the benchmark's
constants; ``case.events`` read after the fact (``Tracker``), the broker's cost of a reader,
the steady intake, the worker's counters and CPU polled, its histograms, and waiting on
them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import harness
from bench.harness import MIB, Failed, metric, percentiles, proc_cpu, progress
from bench.scale_steps import Ctx, ScaleWorker
from bench.workload import complaints
from engine.core.ids import case_id_for

# issue 13's targets
TARGET_N = 1_000_000
TARGET_P99_S = 1.0  # firing lateness p99 with 1M armed, under normal intake
TARGET_BURST_RATIO = 0.5  # intake during a 20k burst / intake without it
TARGET_BURST = 20_000
TARGET_FIRST_S = 5.0  # after a SIGKILL: /readyz to the first firing

SHORT_KIND = "manhole_cover"  # a sensed kind owned by the street: the whole ladder
WARN_FRACTION = 0.5
LONG = "P30D"
LADDER = ("warn", "due", "supervise", "supervise")  # the firings of one short case
HIST = "zhida_timer_lateness_seconds"


def wall_iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def ts(s: str | None) -> float | None:
    return None if s is None else datetime.fromisoformat(s).timestamp()


# ---------------------------------------------------------------- case events, read back

@dataclass(slots=True)
class Seen:
    type: str
    at: float  # the event's engine time (a firing's: the ticker's now)
    due: float | None
    supervise_due: float | None
    level: int
    top: bool | None
    arrival: float  # the record's timestamp: when the worker produced it (epoch s)


class Tracker:
    """Reads ``case.events`` after the fact and keeps, for the cases it watches, the first
    record of every event (by seq); a repeated event id is counted as a duplicate, the same seq
    with another type as a fork. An event's ``arrival`` is its record timestamp: the worker's
    producer sets it when the writer hands the event over.

    Nothing reads while a step is measured: on the embedded broker a consumer polling the end
    of a large topic costs the broker up to a core (see the page this writes), which would slow
    the engine it measures. ``mark_end`` notes where the topic ends; ``catch_up`` reads from
    there until nothing comes for ``idle`` s (end offsets undercount on Tansu 0.6.0)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.groups: dict[str, str] = {}  # case id → group
        self.cases: dict[str, dict[int, Seen]] = {}
        self.count: Counter[tuple[str, str]] = Counter()  # (group, type) → distinct events
        self.duplicates: Counter[str] = Counter()  # group → records repeating an event id
        self.forks: list[str] = []
        self.records = 0
        self.read_seconds = 0.0
        self.pos: dict[TopicPartition, int] = {}

    def watch(self, case_id: str, group: str) -> None:
        self.groups[case_id] = group

    def n(self, group: str, type_: str) -> int:
        return self.count[(group, type_)]

    def events(self, case_id: str) -> list[Seen]:
        per = self.cases.get(case_id, {})
        return [per[s] for s in sorted(per)]

    def arrivals(self, ids: list[str], type_: str) -> list[float]:
        return [e.arrival for c in ids for e in self.events(c) if e.type == type_]

    async def _consumer(self) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    fetch_max_wait_ms=50, max_partition_fetch_bytes=8 * MIB,
                                    fetch_max_bytes=64 * MIB)
        await consumer.start()
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(self.topic)
        if not parts:
            await consumer.stop()
            raise Failed(f"topic {self.topic} does not exist")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        return consumer, tps

    async def mark_end(self) -> None:
        """Read from the topic's end from now on (Tansu may answer a little short: the few
        older events read again are not watched, or are counted as duplicates)."""
        consumer, tps = await self._consumer()
        try:
            self.pos = dict(await consumer.end_offsets(tps))
        finally:
            await consumer.stop()

    async def catch_up(self, idle: float = 1.5) -> None:
        t = time.perf_counter()
        consumer, tps = await self._consumer()
        try:
            for tp in tps:
                if tp in self.pos:
                    consumer.seek(tp, self.pos[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            # to the end as it is now: with intake on, the topic never stops growing, so
            # "until nothing comes" never ends (that hung a 300k run); Tansu may report an
            # end a little short, hence the short idle wait after it
            target = dict(await consumer.end_offsets(tps))
            reached = time.perf_counter()
            last = time.perf_counter()
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=20000)
                for recs in batch.values():
                    self._take(recs)
                now = time.perf_counter()
                if batch:
                    last = now
                positions = [await consumer.position(tp) for tp in tps]
                done = all(pos >= target[tp] for pos, tp in zip(positions, tps, strict=True))
                if not done:
                    reached = now
                elif now - last >= idle or now - reached >= 2 * idle:
                    break
            for tp in tps:
                self.pos[tp] = await consumer.position(tp)
        finally:
            await consumer.stop()
        self.read_seconds += time.perf_counter() - t - idle

    def _take(self, recs: list[Any]) -> None:
        self.records += len(recs)
        for r in recs:
            key = r.key.decode() if r.key else ""
            group = self.groups.get(key)
            if group is None:
                continue
            v = orjson.loads(r.value)
            per = self.cases.setdefault(key, {})
            seq = v["seq"]
            if seq in per:
                if per[seq].type != v["type"]:
                    self.forks.append(f"{v['event_id']}: {per[seq].type} and {v['type']}")
                else:
                    self.duplicates[group] += 1
                continue
            per[seq] = Seen(v["type"], ts(v["at"]) or 0.0, ts(v.get("due")),
                            ts(v.get("supervise_due")), v.get("escalation_level", 0),
                            v.get("top"), r.timestamp / 1000)
            self.count[(group, v["type"])] += 1


async def reader_cost(bootstrap: str, topic: str, broker_pid: int, seconds: float = 8.0
                      ) -> dict[str, float]:
    """Cores the broker spends with nobody reading ``topic`` beyond the worker, then with one
    more consumer polling its end (fetch wait 20 ms, as a live reader of events would)."""
    def cores(c0: float | None, t0: float) -> float:
        c1 = proc_cpu(broker_pid)
        return round((c1 - c0) / (time.time() - t0), 2) if c0 is not None and c1 else 0.0

    c0, t0 = proc_cpu(broker_pid), time.time()
    await asyncio.sleep(seconds)
    quiet = cores(c0, t0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=20)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        for tp, offset in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, offset)
        await consumer.getmany(timeout_ms=200)
        c0, t0 = proc_cpu(broker_pid), time.time()
        while time.time() - t0 < seconds:
            await consumer.getmany(timeout_ms=100, max_records=10000)
        reading = cores(c0, t0)
    finally:
        await consumer.stop()
    return {"quiet": quiet, "reader": reading}


# ---------------------------------------------------------------- load and metrics

class Intake:
    """Complaints at an adjustable offered rate for the whole run (long deadlines: they add
    armed cases, no firings); remembers when each was sent."""

    def __init__(self, ctx: Ctx, w: ScaleWorker, tracker: Tracker, rate: float) -> None:
        self.ctx, self.w, self.tracker = ctx, w, tracker
        self.rate = rate
        self.sent: dict[str, float] = {}  # case id → wall clock of the produce call
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self.ctx.producer is not None
        topic = self.w.names.complaints
        buf: list[tuple[bytes, bytes]] = []
        chunk = 0
        credit = 0.0
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.02)
            now = time.perf_counter()
            credit += self.rate * (now - last)
            last = now
            k = int(credit)
            if k <= 0:
                continue
            credit -= k
            futures = []
            for _ in range(k):
                if not buf:
                    buf = complaints(1000, f"{self.ctx.tag}bg-{chunk:04d}", seed=10_000 + chunk)
                    buf.reverse()
                    chunk += 1
                key, value = buf.pop()
                cid = case_id_for("complaint", key.decode())
                self.tracker.watch(cid, "intake")
                t = time.time()
                futures.append(await self.ctx.producer.send(topic, value, key=key))
                self.sent[cid] = t
            await asyncio.gather(*futures)

    def check(self) -> None:
        if self._task is not None and self._task.done():
            raise Failed(f"intake producer failed: {self._task.exception()!r}")

    def window(self, t1: float, t2: float) -> dict[str, Any]:
        """Offered and dispatched in [t1, t2) (wall clock): rates, and produce → dispatched
        latency of the complaints sent in it."""
        sent = dispatched = missing = 0
        lat_ms: list[float] = []
        for cid, t in self.sent.items():
            d = next((e.arrival for e in self.tracker.events(cid) if e.type == "dispatched"),
                     None)
            if t1 <= t < t2:
                sent += 1
                if d is None:
                    missing += 1
                else:
                    lat_ms.append((d - t) * 1000)
            if d is not None and t1 <= d < t2:
                dispatched += 1
        span = max(t2 - t1, 1e-9)
        return {"seconds": round(span, 2), "offered": round(sent / span, 1),
                "dispatched": round(dispatched / span, 1), "sent": sent,
                "not_dispatched": missing, "latency": percentiles(lat_ms)}

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class Poller:
    """Once a second: ``/metrics`` (the oldest-due gauge, the armed count) and the CPU time
    of the worker, the broker and this script, to say who was busy in a window."""

    def __init__(self, w: ScaleWorker, broker_pid: int | None = None) -> None:
        self.w = w
        self.broker_pid = broker_pid
        self.samples: list[tuple[float, float | None, float | None]] = []
        # (wall, worker pid, worker CPU s, broker CPU s, this process's CPU s)
        self.cpu_samples: list[tuple[float, int | None, float | None, float | None, float]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            pid = self.w.pid if self.w.alive() else None
            t = os.times()
            self.cpu_samples.append((time.time(), pid, proc_cpu(pid), proc_cpu(self.broker_pid),
                                     t.user + t.system))
            if self.w.alive():
                text = await self.w.metrics()
                if text:
                    self.samples.append((time.time(),
                                         metric(text, "zhida_timer_oldest_due_seconds"),
                                         metric(text, "zhida_timers_armed")))
            await asyncio.sleep(1.0)

    def cpu(self, t1: float, t2: float) -> dict[str, float]:
        """Cores used on average in [t1, t2] by the worker, the broker and this script."""
        inside = [x for x in self.cpu_samples if t1 <= x[0] <= t2]
        if len(inside) < 2:
            return {}
        (ta, pa, wa, ba, sa), (tb, pb, wb, bb, sb) = inside[0], inside[-1]
        span = tb - ta
        out = {"bench": round((sb - sa) / span, 2)}
        if pa == pb and wa is not None and wb is not None:
            out["worker"] = round((wb - wa) / span, 2)
        if ba is not None and bb is not None:
            out["broker"] = round((bb - ba) / span, 2)
        return out

    def oldest_max(self, t1: float, t2: float) -> float | None:
        vals = [o for t, o, _ in self.samples if t1 <= t <= t2 and o is not None]
        return max(vals) if vals else None

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def histogram(text: str, name: str = HIST) -> dict[str, float]:
    """Cumulative bucket counts by ``le`` (strings as exported)."""
    return harness.histogram(text, name)


def hist_summary(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Counts between two scrapes, and the bucket bound under which 50/99/100 % fell."""
    diff = sorted(((float(le), after.get(le, 0.0) - before.get(le, 0.0)) for le in after),
                  key=lambda x: x[0])
    total = diff[-1][1] if diff else 0.0
    out: dict[str, Any] = {"count": total}
    for q, key in ((0.5, "p50_le"), (0.99, "p99_le"), (1.0, "max_le")):
        out[key] = next((le for le, c in diff if total and c >= q * total), None)
    return out


def le_text(le: float | None) -> str:
    if le is None:
        return "–"
    return "≤ +Inf (over the top bucket)" if le == float("inf") else f"≤ {le:g} s"


def dist(values_s: list[float]) -> dict[str, float]:
    """p50/p99/max etc. of seconds, via bench.run.percentiles (milliseconds)."""
    return percentiles([v * 1000 for v in values_s])


# ---------------------------------------------------------------- waiting

def cev(type_: str) -> Any:
    """Reads ``zhida_case_events_total{type}`` from a /metrics text."""
    return lambda text: metric(text, "zhida_case_events_total", type=type_) or 0.0


def fired(*kinds: str) -> Any:
    """Reads the sum of ``zhida_timer_firings_total{kind}`` (applied firings, each once)."""
    return lambda text: sum(metric(text, "zhida_timer_firings_total", kind=k) or 0.0
                            for k in kinds)


async def count(w: ScaleWorker, read: Any) -> float | None:
    text = await w.metrics()
    return read(text) if text else None


async def wait_count(w: ScaleWorker, what: str, read: Any, target: float,
                     checks: tuple[Any, ...] = (), timeout: float | None = None) -> float:
    """Poll the worker's /metrics every 0.25 s until ``read`` reaches ``target``; Failed
    after --stall s without a change or ``timeout`` s; progress every --progress s."""
    a = w.ctx.args
    t = last_report = last_change = time.perf_counter()
    last: float | None = None
    while True:
        for c in checks:
            c()
        v = await count(w, read)
        now = time.perf_counter()
        if v is not None and v >= target:
            return v
        if v != last:
            last, last_change = v, now
        if now - last_report >= a.progress:
            last_report = now
            progress(f"  … {what}: {v or 0:,.0f}/{target:,.0f}")
        if now - last_change > a.stall:
            raise Failed(f"{what}: no progress for {a.stall:.0f} s ({v or 0:,.0f}/"
                         f"{target:,.0f})")
        if timeout is not None and now - t > timeout:
            raise Failed(f"{what}: not done in {timeout:.0f} s ({v or 0:,.0f}/{target:,.0f})")
        await asyncio.sleep(0.25)


async def sleep_until(wall: float) -> None:
    while (left := wall - time.time()) > 0:
        await asyncio.sleep(min(left, 0.5))
