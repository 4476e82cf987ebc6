"""Throughput and latency baseline on the embedded broker; writes docs/benchmarks.md.

    python -m bench.run [--n 20000] [--repeats 3] [--rate 200] [--latency-seconds 20]

(a) raw aiokafka consume→transform→produce, (b) a plain faust passthrough
(bench/faust_passthrough.py), (c) the engine (``python -m engine.tools.cli worker``), each
``--repeats`` times, interleaved; then intake→dispatch latency at a fixed rate on a fresh
engine worker. One embedded broker (Tansu) on a free port for the whole run, stopped at the end;
every child process runs in its own session and is stopped (SIGINT, bounded wait, SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import report
from bench.harness import (
    ROOT,
    SESSIONS,
    Failed,
    cancel_on_signals,
    elapsed,
    machine,
    metric_total,
    percentiles,
    progress,
    run_bench,
    stop_all_children,
    write_page,
)
from bench.workers import EngineRun
from bench.workload import complaints, transform
from engine.core.ids import case_id_for
from engine.data.topology import Topology
from engine.tools.broker import EmbeddedBroker
from engine.tools.process import Process

PARTITIONS = 4


# ---------------------------------------------------------------- kafka helpers

async def create_topics(bootstrap: str, names: list[str], partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1)
                                   for n in names])
    finally:
        await admin.close()


async def produce_all(bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]]) -> float:
    """Batched: enqueue everything, then await every delivery. Returns seconds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        t = time.perf_counter()
        futures = [await producer.send(topic, value, key=key) for key, value in msgs]
        await asyncio.gather(*futures)
        return time.perf_counter() - t
    finally:
        await producer.stop()


Ident = Callable[[str, Any], str | None]


class Collector:
    """Reads topics from the beginning (assigned partitions, no group) and counts distinct
    ids returned by ``ident``; records when the first and the ``target``-th distinct id came."""

    def __init__(self, bootstrap: str, topics: list[str], ident: Ident, target: int,
                 on_hit: Callable[[str, float], None] | None = None) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.ident = ident
        self.target = target
        self.on_hit = on_hit
        self.seen: set[str] = set()
        self.records = 0
        self.by_topic: dict[str, int] = {}
        self.t_first: float | None = None
        self.t_done: float | None = None
        self.t_last_hit = time.perf_counter()
        self.done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                         enable_auto_commit=False, fetch_max_wait_ms=20,
                                         auto_offset_reset="earliest")
        await self.consumer.start()
        tps: list[TopicPartition] = []
        for t in self.topics:
            parts = self.consumer.partitions_for_topic(t)
            for _ in range(50):
                if parts:
                    break
                await self.consumer._client.force_metadata_update()
                parts = self.consumer.partitions_for_topic(t)
                if not parts:
                    await asyncio.sleep(0.1)
            if not parts:
                raise Failed(f"topic {t} does not exist")
            tps += [TopicPartition(t, p) for p in parts]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.perf_counter()
            for tp, recs in batch.items():
                self.by_topic[tp.topic] = self.by_topic.get(tp.topic, 0) + len(recs)
                self.records += len(recs)
                for r in recs:
                    ident = self.ident(tp.topic, r)
                    if ident is None or ident in self.seen:
                        continue
                    self.seen.add(ident)
                    self.t_last_hit = now
                    if self.t_first is None:
                        self.t_first = now
                    if self.on_hit:
                        self.on_hit(ident, now)
                    if len(self.seen) >= self.target and self.t_done is None:
                        self.t_done = now
                        self.done.set()

    async def wait(self, stall: float, child: Process | None = None,
                   give_up: Callable[[], str | None] | None = None) -> None:
        """Until ``target`` ids were seen; Failed on no progress for ``stall`` s (counted
        from the later of the call and the last hit), a dead child, or ``give_up``."""
        since = time.perf_counter()
        last_report = since
        while not self.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), 1.0)
            if self.done.is_set():
                break
            now = time.perf_counter()
            if self._task and self._task.done():
                raise Failed(f"collector failed: {self._task.exception()!r}")
            if child is not None and not child.alive():
                raise Failed(f"{child.name} exited with {child.returncode} after "
                             f"{len(self.seen)}/{self.target}")
            if give_up and (why := give_up()):
                raise Failed(why)
            if now - max(since, self.t_last_hit) > stall:
                raise Failed(f"stalled: {len(self.seen)}/{self.target} after {stall:.0f} s "
                             "without progress")
            if now - last_report >= 5.0:
                last_report = now
                progress(f"  … {len(self.seen)}/{self.target}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.consumer.stop()


def key_ident(_topic: str, r: Any) -> str | None:
    return r.key.decode() if r.key else None


async def written_messages(bootstrap: str, match: Callable[[str], bool], idle: float = 1.5
                           ) -> dict[str, int]:
    """Messages per topic for the topics ``match`` accepts, counted by reading them from the
    beginning until nothing came for ``idle`` s. (Not from end offsets: Tansu 0.6.0 answers
    ListOffsets(latest) with the last record batch's base offset + 1, which undercounts
    every partition written in batches of more than one record.)"""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        names = [t for t in await consumer.topics() if match(t)]
        tps = [TopicPartition(t, p) for t in names
               for p in (consumer.partitions_for_topic(t) or ())]
        out = dict.fromkeys(names, 0)
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        last = time.perf_counter()
        while time.perf_counter() - last < idle:
            batch = await consumer.getmany(timeout_ms=200, max_records=10000)
            for tp, recs in batch.items():
                out[tp.topic] += len(recs)
            if batch:
                last = time.perf_counter()
        return out
    finally:
        await consumer.stop()


# ---------------------------------------------------------------- scenarios

@dataclass
class Result:
    scenario: str
    repeat: int
    ok: bool = False
    rate: float | None = None  # messages/s
    seconds: float | None = None  # measured interval
    startup: float | None = None  # seconds from launch/join to first output
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def filled_topics(ctx: Ctx, name: str, res: Result) -> tuple[str, str]:
    """Fresh topics ``name``.in and ``name``.out, the run's complaints produced to the first."""
    tin, tout = f"{name}.in", f"{name}.out"
    await create_topics(ctx.bootstrap, [tin, tout])
    res.extra["produce_seconds"] = round(await produce_all(ctx.bootstrap, tin, ctx.msgs), 3)
    return tin, tout


async def scenario_raw(ctx: Ctx, r: int) -> Result:
    res = Result("raw", r)
    n = len(ctx.msgs)
    tin, tout = await filled_topics(ctx, f"{ctx.tag}a{r}", res)
    consumer = AIOKafkaConsumer(
        tin, bootstrap_servers=ctx.bootstrap, group_id=f"{ctx.tag}a{r}.group",
        auto_offset_reset="earliest", enable_auto_commit=True, auto_commit_interval_ms=1000,
        session_timeout_ms=6000, heartbeat_interval_ms=1000, rebalance_timeout_ms=4000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, linger_ms=5)
    await producer.start()
    t_launch = time.perf_counter()
    await consumer.start()
    try:
        futures = []
        count = 0
        t_first: float | None = None
        last = time.perf_counter()
        while count < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.perf_counter()
            if not batch:
                if now - last > ctx.stall:
                    raise Failed(f"raw consumer stalled at {count}/{n}")
                continue
            last = now
            if t_first is None:
                t_first = now
            for recs in batch.values():
                for m in recs:
                    futures.append(await producer.send(tout, transform(m.value), key=m.key))
                count += len(recs)
        await asyncio.gather(*futures)
        t_end = time.perf_counter()
        assert t_first is not None
        res.seconds = t_end - t_first
        res.rate = n / res.seconds
        res.startup = t_first - t_launch
        res.ok = True
    finally:
        await consumer.stop()
        await producer.stop()
    return res


async def scenario_faust(ctx: Ctx, r: int) -> Result:
    res = Result("faust", r)
    n = len(ctx.msgs)
    tin, tout = await filled_topics(ctx, f"{ctx.tag}b{r}", res)
    collector = Collector(ctx.bootstrap, [tout], key_ident, n)
    await collector.start()
    data_dir = ctx.workdir / f"faust-b{r}"
    child = Process([sys.executable, "-m", "bench.faust_passthrough"],
                    ctx.workdir / f"faust-b{r}.log", env={
                        "BENCH_BOOTSTRAP": ctx.bootstrap, "BENCH_APP_ID": f"{ctx.tag}b{r}",
                        "BENCH_IN": tin, "BENCH_OUT": tout, "BENCH_DATA_DIR": str(data_dir),
                        "BENCH_PARTITIONS": str(PARTITIONS),
                        "BENCH_TRANSPORT": ctx.faust_transport,
                    }, cwd=ROOT, name=f"faust passthrough #{r}", sessions=SESSIONS).spawn()
    try:
        await collector.wait(ctx.stall + 60, child)  # start-up included in the first wait
        assert collector.t_first is not None and collector.t_done is not None
        res.seconds = collector.t_done - collector.t_first
        res.rate = n / res.seconds
        res.startup = collector.t_first - child.started
        res.extra["outputs"] = collector.records
        res.ok = True
    except Failed as e:
        res.error = f"{e}\n--- faust log tail ---\n{child.log_tail()}"
    finally:
        res.extra.update(child.stop(10.0).figures())
        await collector.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return res


def order_ident(expected: set[str], deadletters: list[bytes]) -> Ident:
    def ident(topic: str, r: Any) -> str | None:
        if topic.endswith("deadletter"):
            deadletters.append(r.value)
            return None
        v = orjson.loads(r.value)
        cid = v.get("case_id")
        if v.get("kind") == "case" and cid in expected:
            return cid
        return None
    return ident


async def scenario_engine(ctx: Ctx, r: int) -> Result:
    res = Result("engine", r)
    msgs = ctx.msgs
    n = len(msgs)
    run = EngineRun(ctx, f"c{r}")
    expected = {case_id_for("complaint", k.decode()) for k, _ in msgs}
    deadletters: list[bytes] = []
    collector: Collector | None = None
    try:
        await run.start()
        res.startup = run.startup
        progress(f"  worker ready in {run.startup:.1f} s (prefix {run.prefix})")
        collector = Collector(ctx.bootstrap, [*run.dispatch_topics(), run.names.deadletter],
                              order_ident(expected, deadletters), n)
        await collector.start()
        t0 = time.perf_counter()
        res.extra["produce_seconds"] = round(
            await produce_all(ctx.bootstrap, run.names.complaints, msgs), 3)

        def refused() -> str | None:
            if deadletters and len(collector.seen) + len(deadletters) >= n:
                return (f"{len(deadletters)} complaints dead-lettered, e.g. "
                        f"{deadletters[0][:400]!r}")
            return None

        try:
            await collector.wait(ctx.stall, run.process, refused)
        except Failed as e:
            raise Failed(f"{e}\n--- worker log tail ---\n{run.tail()}") from None
        assert collector.t_first is not None and collector.t_done is not None
        res.seconds = collector.t_done - t0
        res.rate = n / res.seconds
        res.extra["first_order_after"] = round(collector.t_first - t0, 3)
        res.extra["steady_rate"] = round(n / (collector.t_done - collector.t_first), 1)
        res.extra["orders_seen"] = collector.records
        res.extra["deadletters"] = len(deadletters)
        m = run.process.metrics()
        res.extra["duplicates"] = metric_total(m, "zhida_duplicates_total")
        res.extra.update(run.stop())
        written = await written_messages(
            ctx.bootstrap, lambda t: t.startswith(run.prefix) or t.startswith(run.app_id))
        res.extra["written_per_complaint"] = round(
            (sum(written.values()) - written.get(run.names.complaints, 0)) / n, 2)
        res.extra["written"] = {
            k.removeprefix(run.prefix).removeprefix(run.app_id + "-"): v
            for k, v in written.items() if v and not k.startswith(run.prefix + "dispatch.")}
        res.extra["written"]["dispatch.*"] = sum(
            v for k, v in written.items() if k.startswith(run.prefix + "dispatch."))
        res.ok = True
    except Failed as e:
        res.error = str(e)
    finally:
        if collector is not None:
            await collector.stop()
        res.extra.update(run.stop())
    return res


async def paced(producer: AIOKafkaProducer, topic: str, msgs: list[tuple[bytes, bytes]],
                rate: float, sent: dict[str, float],
                each: Callable[[int], None] | None = None) -> tuple[float, float]:
    """Complaints one by one at ``rate`` a second, paced against the clock (the load generator
    of the latency run and of bench/capacity.py): when each was sent, by its case id, into
    ``sent``; ``each`` after each send. Returns the seconds taken and the largest lag behind
    the schedule."""
    start = time.perf_counter()
    lag_max = 0.0
    futures = []
    for i, (key, value) in enumerate(msgs):
        due = start + i / rate
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
            now = time.perf_counter()
        lag_max = max(lag_max, now - due)
        sent[case_id_for("complaint", key.decode())] = now
        futures.append(await producer.send(topic, value, key=key))
        if each is not None:
            each(i)
    await asyncio.gather(*futures)
    return time.perf_counter() - start, lag_max


async def latency(ctx: Ctx, rate: float, seconds: float, policy: Path | None = None,
                  label: str = "lat", stall: float = 30.0) -> dict[str, Any]:
    """Complaints at a fixed rate into a fresh worker; produce → its dispatch order, per id.

    With a ``policy`` that merges, a complaint that joins a neighbour's case has no order of
    its own: the percentiles are then over the complaints that opened a case."""
    total = max(1, int(rate * seconds))
    msgs = complaints(total, f"{ctx.tag}{label}", seed=7)
    run = EngineRun(ctx, label, policy=policy)
    sent: dict[str, float] = {}
    lat_ms: list[float] = []
    out: dict[str, Any] = {"rate": rate, "seconds": seconds, "sent": total}

    def on_hit(case_id: str, now: float) -> None:
        lat_ms.append((now - sent[case_id]) * 1000.0)

    expected = {case_id_for("complaint", k.decode()) for k, _ in msgs}
    deadletters: list[bytes] = []
    collector: Collector | None = None
    producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, linger_ms=0)
    try:
        await run.start()
        out["startup"] = run.startup
        progress(f"  worker ready in {run.startup:.1f} s; sending {total} complaints at "
                 f"{rate:g}/s for {seconds:g} s")
        collector = Collector(ctx.bootstrap, [*run.dispatch_topics(), run.names.deadletter],
                              order_ident(expected, deadletters), total, on_hit)
        await collector.start()
        await producer.start()
        seen = collector.seen

        def said(i: int) -> None:
            if i and i % int(rate * 5) == 0:
                progress(f"  … sent {i}, dispatched {len(seen)}")

        took, lag_max = await paced(producer, run.names.complaints, msgs, rate, sent, said)
        out["achieved_rate"] = round(total / took, 1)
        out["pacing_lag_max_ms"] = round(lag_max * 1000, 1)
        try:
            await collector.wait(stall, run.process)
        except Failed as e:
            out["error"] = f"{e}\n--- worker log tail ---\n{run.tail()}"
        out["received"] = len(lat_ms)
        out["deadletters"] = len(deadletters)
        out.update(percentiles(lat_ms))
        m = run.process.metrics()
        count = metric_total(m, "zhida_intake_to_dispatch_seconds_count")
        if count:
            out["engine_mean_ms"] = round(
                metric_total(m, "zhida_intake_to_dispatch_seconds_sum") / count * 1000, 1)
    except Failed as e:
        out["error"] = str(e)
    finally:
        await producer.stop()
        if collector is not None:
            await collector.stop()
        out.update({f"worker_{k}": v for k, v in run.stop().items()})
    return out


# ---------------------------------------------------------------- the run

@dataclass
class Ctx:
    bootstrap: str
    tag: str
    workdir: Path
    msgs: list[tuple[bytes, bytes]]
    topology: Topology
    stall: float
    faust_transport: str


SCENARIOS = {"a": scenario_raw, "b": scenario_faust, "c": scenario_engine}
async def run(args: argparse.Namespace) -> int:
    tag = "b" + datetime.now(UTC).strftime("%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="zhida-bench-"))
    progress(f"work dir {workdir}; generating {args.n} complaints")
    msgs = complaints(args.n, tag)
    broker = EmbeddedBroker(log_path=workdir / "broker.log")
    results: list[Result] = []
    lat: dict[str, Any] | None = None
    failed = False
    started = datetime.now(UTC)
    cancel_on_signals()  # SIGTERM/SIGHUP like Ctrl-C: unwind, stop children and broker
    try:
        broker.start()
        progress(f"embedded broker (Tansu) on {broker.bootstrap}")
        ctx = Ctx(broker.bootstrap, tag, workdir, msgs, Topology.load(), args.stall,
                  args.faust_transport)
        for r in range(1, args.repeats + 1):
            for key in args.only:
                name = SCENARIOS[key].__name__.removeprefix("scenario_")
                progress(f"{report.LABELS[name]}: repeat {r}/{args.repeats}, N={args.n}")
                try:
                    res = await SCENARIOS[key](ctx, r)
                except Failed as e:
                    res = Result(name, r, error=str(e))
                results.append(res)
                if res.ok:
                    progress(f"  {res.rate:,.0f} msg/s ({res.seconds:.2f} s; start-up "
                             f"{res.startup:.1f} s) {res.extra}")
                else:
                    failed = True
                    progress(f"  FAILED: {res.error}")
        if args.latency_seconds > 0:
            progress(f"latency: fresh engine worker, {args.rate:g} complaints/s for "
                     f"{args.latency_seconds:g} s")
            lat = await latency(ctx, args.rate, args.latency_seconds)
            failed = failed or bool(lat.get("error"))
            progress(f"  {({k: v for k, v in lat.items() if k != 'error'})}")
            if lat.get("error"):
                progress(f"  ERROR: {lat['error']}")
    except BaseException:
        progress(f"logs kept in {workdir}")
        raise
    finally:
        stop_all_children()
        proc = broker.proc
        broker.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()
        progress("broker stopped")
    summary = report.summarize(results)
    report.print_table(summary, lat)
    if args.write:
        data = {
            "date": started, "duration_s": round(elapsed()),
            "machine": machine(), "args": vars(args), "summary": summary, "latency": lat,
            "failed": failed,
        }
        write_page(args.out, report.render(data))
    if failed and args.keep_logs is False:
        progress(f"a scenario failed: logs kept in {workdir}")
    elif args.keep_logs:
        progress(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20000, help="complaints per throughput run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rate", type=float, default=200.0, help="complaints/s in the latency run")
    p.add_argument("--latency-seconds", type=float, default=20.0,
                   help="length of the latency run (0 skips it)")
    p.add_argument("--only", default="abc",
                   help="scenarios to run: any of a (raw), b (faust), c (engine)")
    p.add_argument("--stall", type=float, default=60.0,
                   help="fail a scenario after this many seconds without progress")
    p.add_argument("--faust-transport", choices=("zhida", "kafka"), default="zhida",
                   help="transport of the plain faust passthrough: the engine's (50 ms fetch "
                        "wait) or faust's own")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--no-write", dest="write", action="store_false",
                   help="do not write the report")
    p.add_argument("--keep-logs", action="store_true", help="keep the work dir with the logs")
    args = p.parse_args(argv)
    args.only = [c for c in args.only if c in SCENARIOS]
    return args


def main(argv: list[str] | None = None) -> int:
    return run_bench(run, parse(argv))


if __name__ == "__main__":
    sys.exit(main())
