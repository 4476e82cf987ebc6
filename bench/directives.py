"""Directive benchmark (issue 14's targets): fan-out to every street, acks, status reads.

    python -m bench.directives [--repeats 3]

One embedded broker (Tansu) and one engine worker (``python -m engine.tools.cli worker``, RocksDB),
as ``make bench`` starts them. Each repeat:

1. **Fan-out**: a directive from the city centre to ``{"level": "street"}`` (1,031 streets).
   From the directive's record timestamp (its producer) to the timestamp of the last of the
   1,031 ``kind=directive`` orders on the dispatch topics (the worker's producer).
2. **Acks**: every target's ``ack`` produced at once (one producer, no wait between them);
   from the last ack produced to the last ``acknowledged`` event on ``directive.events``.
3. **Status**: ``GET /directives/{id}`` (1,031 tasks) ``--gets`` times over one keep-alive
   connection (answered from the worker's status cache after the first), and ``--cold`` times
   each right after a report changed the directive (uncached); client-side percentiles.
4. **Bytes per ack**: the records the acks added to the worker's changelog topic (key +
   value bytes) over the number of acks; the same for a directive to 3 streets, to show
   the cost does not grow with the fan-out.

Writes docs/benchmarks-directives.md (linked from docs/benchmarks.md); the figures are
medians over the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness import (
    ROOT,
    Failed,
    bench_parser,
    fresh_broker,
    generated,
    machine,
    page_text,
    percentiles,
    progress,
    run_bench,
    write_page,
)
from bench.run import Ctx
from bench.workers import EngineRun
from engine.data.topology import Topology

CITY = "500000"
OUT = ROOT / "docs" / "benchmarks-directives.md"


class Tail:
    """Reads some topics from their current end, keeping (topic, key, value, timestamp)."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.records: list[tuple[str, bytes | None, bytes, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                         enable_auto_commit=False, fetch_max_wait_ms=20)
        await self.consumer.start()
        await self.consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in self.topics
               for p in self.consumer.partitions_for_topic(t) or ()]
        self.consumer.assign(tps)
        for tp, offset in (await self.consumer.end_offsets(tps)).items():
            self.consumer.seek(tp, offset)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            for tp, recs in batch.items():
                self.records += [(tp.topic, r.key, r.value, r.timestamp / 1000) for r in recs]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


async def wait(cond: Any, timeout: float, what: str) -> None:
    t = time.perf_counter()
    while not cond():
        if time.perf_counter() - t > timeout:
            raise Failed(f"{what}: not done in {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def changelog_bytes(bootstrap: str, topic: str, start: dict[int, int], since_ms: int
                          ) -> tuple[int, int, dict[str, list[int]]]:
    """Records and bytes written to ``topic`` from ``start`` offsets on, stamped at or after
    ``since_ms``, by key prefix (Tansu reports an end short of the last batch: the
    timestamp keeps the fan-out's own records out)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(start)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        n = size = 0
        kinds: dict[str, list[int]] = {}
        idle = time.perf_counter()
        while time.perf_counter() - idle < 1.0:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                for r in recs:
                    if r.timestamp < since_ms:
                        continue
                    n += 1
                    size += len(r.key or b"") + len(r.value or b"")
                    kind = (r.key or b"?")[:2].decode("utf-8", "replace")
                    k = kinds.setdefault(kind, [0, 0])
                    k[0] += 1
                    k[1] += len(r.key or b"") + len(r.value or b"")
            if batch:
                idle = time.perf_counter()
        return n, size, kinds
    finally:
        await consumer.stop()


async def settled(bootstrap: str, topic: str, quiet: float = 0.5) -> dict[int, int]:
    """End offsets of ``topic`` once they have not moved for ``quiet`` seconds."""
    last = await ends(bootstrap, topic)
    while True:
        await asyncio.sleep(quiet)  # the condition is "unchanged over this interval"
        now = await ends(bootstrap, topic)
        if now == last:
            return now
        last = now


async def ends(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def directive(targets: dict[str, Any]) -> dict[str, Any]:
    return {"directive_id": f"BENCH-{uuid.uuid4().hex[:12]}", "issuer": CITY,
            "title": "汛期城市安全隐患大排查", "body": "请各街道立即组织排查，按时签收。",
            "targets": targets, "ack_within": "PT2H",
            "issued_at": datetime.now(UTC).isoformat()}


async def one(run: EngineRun, producer: AIOKafkaProducer, topo: Topology, targets: dict,
              gets: int, cold_gets: int = 0) -> dict[str, Any]:
    names = run.names
    bootstrap = run.ctx.bootstrap
    tail = Tail(bootstrap, [names.directive_events, *run.dispatch_topics()])
    await tail.start()
    d = directive(targets)
    did = d["directive_id"]
    md = await producer.send_and_wait(names.directives, orjson.dumps(d), key=did.encode())
    t_in = md.timestamp / 1000

    def orders() -> list[float]:
        return [ts for topic, _k, v, ts in tail.records if topic != names.directive_events
                and b'"kind":"directive"' in v and did.encode() in v]

    expected = len(topo.streets) if targets.get("level") == "street" \
        else len(targets["units"])
    await wait(lambda: len(orders()) >= expected, 60, "fan-out")
    out: dict[str, Any] = {"targets": expected,
                           "fanout_last_s": round(max(orders()) - t_in, 3),
                           "fanout_first_s": round(min(orders()) - t_in, 3)}
    changelog = f"{run.app_id}-cases-changelog"
    start = await settled(bootstrap, changelog)  # the fan-out's state records are written
    # after its orders: start counting once the changelog has stopped growing
    targets_list = topo.streets if targets.get("level") == "street" else targets["units"]
    futures = []
    for t in targets_list:
        body = {"update_id": uuid.uuid4().hex, "actor": t, "action": "ack",
                "directive_id": did, "at": datetime.now(UTC).isoformat()}
        futures.append(await producer.send(names.unit_updates, orjson.dumps(body),
                                           key=did.encode()))
    sent = await asyncio.gather(*futures)
    first_ack, last_ack = (min(m.timestamp for m in sent) / 1000,
                           max(m.timestamp for m in sent) / 1000)

    def acked() -> list[float]:
        return [ts for topic, k, v, ts in tail.records if topic == names.directive_events
                and k == did.encode() and b'"type":"acknowledged"' in v]

    await wait(lambda: len(acked()) >= expected, 60, "acks")
    out["acks_after_last_produced_s"] = round(max(acked()) - last_ack, 3)
    out["acks_after_first_produced_s"] = round(max(acked()) - first_ack, 3)
    out["acks_produce_spread_s"] = round(last_ack - first_ack, 3)
    n, size, kinds = await changelog_bytes(bootstrap, changelog, start,
                                           min(m.timestamp for m in sent))
    out["changelog_records_per_ack"] = round(n / expected, 2)
    out["changelog_bytes_per_ack"] = round(size / expected, 1)
    out["changelog_records_by_kind"] = kinds
    await tail.stop()
    lat: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{run.port}") as client:
        for i in range(gets + 5):
            t = time.perf_counter()
            r = await client.get(f"/directives/{did}")
            if i >= 5:  # warm-up
                lat.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200 or r.json()["acknowledged"] != expected:
                raise Failed(f"GET /directives/{did}: {r.status_code} {r.text[:200]}")
    out["get_ms"] = percentiles(lat)
    out["get_bytes"] = len(r.content)
    # cold: each GET the first after the directive changed (a report), so nothing is cached
    def reported() -> float:
        text = run.process.metrics()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('zhida_directive_events_total{type="reported"}'))

    cold: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{run.port}") as client:
        await client.get("/healthz")  # a connection to reuse
        for t in list(targets_list)[:cold_gets]:
            base = await asyncio.to_thread(reported)
            body = {"update_id": uuid.uuid4().hex, "actor": t, "action": "report",
                    "directive_id": did, "note": "已落实", "at": datetime.now(UTC).isoformat()}
            await producer.send_and_wait(names.unit_updates, orjson.dumps(body),
                                         key=did.encode())
            while await asyncio.to_thread(reported) <= base:
                await asyncio.sleep(0.02)
            t0 = time.perf_counter()
            r = await client.get(f"/directives/{did}")
            cold.append((time.perf_counter() - t0) * 1000)
    out["cold_get_ms"] = percentiles(cold)
    return out


async def run(args: argparse.Namespace) -> int:
    topo = Topology.load()
    workdir = Path(tempfile.mkdtemp(prefix="zhida-directives-"))
    results: list[dict[str, Any]] = []
    small: list[dict[str, Any]] = []
    with fresh_broker(workdir) as broker:
        ctx = Ctx(broker.bootstrap, "dir", workdir, [], topo, 60.0, "")
        engine = EngineRun(ctx, "e")
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        try:
            await engine.start()
            progress(f"worker ready in {engine.startup:.1f} s")
            await producer.start()
            for i in range(args.repeats):
                r = await one(engine, producer, topo, {"level": "street"}, args.gets, args.cold)
                results.append(r)
                progress(f"repeat {i + 1}: fan-out {r['fanout_last_s']:.3f} s, acks "
                         f"{r['acks_after_last_produced_s']:.3f} s after the last, GET p99 "
                         f"{r['get_ms']['p99_ms']:.1f} ms, "
                         f"{r['changelog_bytes_per_ack']:.0f} B/ack")
                s = await one(engine, producer, topo,
                              {"units": topo.streets_of("500103")[:3]}, 20)
                small.append(s)
                progress(f"  3 targets: {s['changelog_bytes_per_ack']:.0f} B/ack, "
                         f"{s['changelog_records_per_ack']} records/ack")
        finally:
            await producer.stop()
            engine.stop()
    write(results, small, args)
    return 0


def med(rs: list[dict[str, Any]], key: str, sub: str | None = None) -> float:
    return statistics.median(r[key][sub] if sub else r[key] for r in rs)


def kinds_text(r: dict[str, Any]) -> str:
    return ", ".join(f"`{k}` {n:,} × {b / n:.0f} B"
                     for k, (n, b) in sorted(r["changelog_records_by_kind"].items()))


def same_sizes(big: dict[str, Any], small: dict[str, Any], slack: float = 32.0) -> bool:
    """Each record kind an ack writes is the same size whatever the fan-out (within a few
    digits and, on `d:`, the completion instants a finished small directive adds)."""
    a, b = big["changelog_records_by_kind"], small["changelog_records_by_kind"]
    return set(a) == set(b) and all(abs(a[k][1] / a[k][0] - b[k][1] / b[k][0]) <= slack
                                    for k in a)


def write(rs: list[dict[str, Any]], small: list[dict[str, Any]], args: argparse.Namespace
          ) -> None:
    write_page(OUT, render({"date": datetime.now(UTC), "machine": machine(), "gets": args.gets,
                            "cold": args.cold, "results": rs, "small": small}))


def render(data: dict[str, Any]) -> str:
    """The page from the figures alone (no I/O), so a test can render it from a sample."""
    rs, small, m = data["results"], data["small"], data["machine"]
    fan, acks = med(rs, "fanout_last_s"), med(rs, "acks_after_last_produced_s")
    p99 = med(rs, "get_ms", "p99_ms")
    cold99 = med(rs, "cold_get_ms", "p99_ms")
    lines = [
        "# Directives: fan-out, acks, status",
        "",
        *generated("bench.directives"),
        "",
        f"Measured {data['date']:%Y-%m-%d %H:%M} UTC on {m['cores']} cores "
        f"({m['cpu']}), Python {m['python']}, faust-streaming {m['faust']}, commit "
        f"{m['commit']}; embedded broker (Tansu), one worker, RocksDB store. "
        f"Medians of {len(rs)} repeats.",
        "",
        "| target (issue 14) | measured (median) | |",
        "|---|---|---|",
        f"| all 1,031 streets: last task on its dispatch topic < 1 s after intake | "
        f"**{fan:.3f} s** (first task {med(rs, 'fanout_first_s'):.3f} s) | "
        f"{'✅' if fan < 1 else '❌'} |",
        f"| 1,031 acks applied < 2 s after they are produced | **{acks:.3f} s** after the "
        f"last ack produced ({med(rs, 'acks_after_first_produced_s'):.3f} s after the first; "
        f"the producer spread them over {med(rs, 'acks_produce_spread_s'):.3f} s) | "
        f"{'✅' if acks < 2 else '❌'} |",
        f"| `GET /directives/{{id}}` p99 < 20 ms for 1,031 targets | **{p99:.1f} ms** polled "
        f"(p50 {med(rs, 'get_ms', 'p50_ms'):.1f} ms; {data['gets']} GETs per repeat, answered "
        f"from the status cache); **{cold99:.1f} ms** right after a change (p50 "
        f"{med(rs, 'cold_get_ms', 'p50_ms'):.1f} ms; {data['cold']} per repeat: the answer "
        f"rebuilt, `late` over 1,031 tasks and {rs[0]['get_bytes']:,} B of JSON) | "
        f"{'✅' if max(p99, cold99) < 20 else '❌'} |",
        f"| changelog bytes per ack, independent of the fan-out | **"
        f"{med(rs, 'changelog_bytes_per_ack'):.0f} B** per ack with 1,031 targets, "
        f"{med(small, 'changelog_bytes_per_ack'):.0f} B with 3 (the directive's counts and "
        f"the marks are written once per batch of acks: 3 acks share them less); records: "
        f"{kinds_text(rs[0])} with 1,031 targets, {kinds_text(small[0])} with 3 | "
        f"{'✅' if same_sizes(rs[0], small[0]) else '❌'} |",
        "",
        "## Per repeat",
        "",
        "| repeat | fan-out last (s) | acks after last produced (s) | GET p50 / p99 (ms) | "
        "B per ack |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(rs, 1):
        lines.append(f"| {i} | {r['fanout_last_s']:.3f} | {r['acks_after_last_produced_s']:.3f}"
                     f" | {r['get_ms']['p50_ms']:.1f} / {r['get_ms']['p99_ms']:.1f} | "
                     f"{r['changelog_bytes_per_ack']:.0f} |")
    lines += [
        "",
    ]
    return page_text(lines, __doc__, *(
        "Times are Kafka record timestamps set by each producer (the benchmark's for inputs, "
        "the worker's for outputs) on the same machine. Changelog records per ack: the task "
        "(`k:`), the directive's counts (`d:`), the task's timer removed (`t:` tombstone) and "
        "the partition marks (`m:`, once per batch of commands, shared by the acks in it).",
        "",
    ))


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("bench.directives", __doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gets", type=int, default=200, help="GETs per repeat (default 200)")
    p.add_argument("--cold", type=int, default=30,
                   help="GETs per repeat each right after a change, uncached (default 30)")
    return run_bench(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
