"""Intake benchmark (issue 15's targets): an alarm storm, placement cost, address accuracy.

    python -m bench.storm [--repeats 3]

One embedded broker and one engine worker with merging on (``merge_window`` PT2H, the
default). Each repeat: 500 alarms of one kind from 300 sensors spread over one district's
streets (480 distinct event ids, 20 sent twice), produced as fast as one producer goes.
Measured from the worker's own counters and the outputs: every alarm accounted (joined + cases
+ duplicates = 500), dispatch orders = cases, and the drain: from the first alarm produced to
the last case event the storm caused (record timestamps). Then ``bench.placement`` (placement
p50/p99 per report) and the address set's accuracy (tests/core/data/addresses.tsv). Writes
docs/benchmarks-intake.md (linked from docs/benchmarks.md); medians over the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bench.directives import Tail
from bench.harness import (
    ROOT,
    Failed,
    bench_parser,
    fresh_broker,
    generated,
    machine,
    metric_total,
    page_text,
    progress,
    run_bench,
    write_page,
)
from bench.run import Ctx
from bench.workers import EngineRun
from engine.core.ids import case_id_for
from engine.data.topology import Topology

OUT = ROOT / "docs" / "benchmarks-intake.md"
DISTRICTS = ("500103", "500106", "500107", "500108", "500112")  # one per repeat


def counters(run: EngineRun) -> dict[str, float]:
    text = run.process.get("/metrics")[1].decode()
    return {"joined": metric_total(text, "zhida_merges_total", outcome="joined"),
            "opened": metric_total(text, "zhida_merges_total", outcome="opened"),
            "duplicates": metric_total(text, "zhida_duplicates_total"),
            "storms": metric_total(text, "zhida_alarm_storms_total")}


async def storm(run: EngineRun, producer: AIOKafkaProducer, topo: Topology, district: str
                ) -> dict[str, Any]:
    names = run.names
    streets = topo.streets_of(district)
    tail = Tail(run.ctx.bootstrap, [names.case_events, names.dispatch(district)])
    await tail.start()
    before = counters(run)
    now = datetime.now(UTC).isoformat()
    sensors = [(f"ws-{uuid.uuid4().hex[:6]}-{i}", streets[i % len(streets)]) for i in range(300)]
    bodies = [{"event_id": f"ev-{uuid.uuid4().hex}", "sensor_id": s, "kind": "waterlogging",
               "severity": "critical" if i % 50 == 0 else "warning", "location": {"unit": u},
               "observed_at": now, "value": 20 + i % 30, "unit": "cm"}
              for i, (s, u) in enumerate(sensors[i % 300] for i in range(480))]
    bodies += bodies[:20]
    futures = [await producer.send(names.sensed, orjson.dumps(b), key=b["sensor_id"].encode())
               for b in bodies]
    sent = await asyncio.gather(*futures)
    first = min(m.timestamp for m in sent) / 1000
    ids = {case_id_for("sensed", b["event_id"]) for b in bodies}

    def accounted() -> float:
        c = counters(run)
        return sum(c[k] - before[k] for k in ("joined", "opened", "duplicates"))

    t = time.perf_counter()
    while accounted() < 500:
        if time.perf_counter() - t > 60:
            raise Failed(f"storm in {district}: {accounted():.0f}/500 accounted after 60 s")
        await asyncio.sleep(0.05)
    c = counters(run)
    out = {k: c[k] - before[k] for k in c}
    opened = {orjson.loads(v)["case_id"] for tp, k, v, ts in tail.records
              if tp == names.case_events and b'"created"' in v
              and orjson.loads(v)["case_id"] in ids}
    t = time.perf_counter()
    while True:
        orders = {orjson.loads(v)["order_id"] for tp, _k, v, _ts in tail.records
                  if tp == names.dispatch(district) and orjson.loads(v).get("case_id") in opened
                  and orjson.loads(v)["kind"] == "case"}
        if len(orders) >= len(opened) or time.perf_counter() - t > 10:
            break
        await asyncio.sleep(0.05)
    mine = [ts for tp, k, v, ts in tail.records if tp == names.case_events
            and k and k.decode() in opened]
    out["cases"] = len(opened)
    out["orders"] = len(orders)
    out["streets"] = len(streets)
    out["drain_s"] = round(max(mine) - first, 3) if mine else None
    out["accounted"] = out["joined"] + out["opened"] + out["duplicates"]
    await tail.stop()
    return out


def placement_table() -> tuple[str, float | None]:
    """bench.placement's table, and the address set's accuracy."""
    from bench import placement
    from engine.runtime.world import address_matcher

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        placement.main(["--samples", "20000"])
    rows = (ROOT / "tests" / "core" / "data" / "addresses.tsv").read_text("utf-8")
    matcher = address_matcher()
    total = right = 0
    for line in rows.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        text, _, want = line.partition("\t")
        total += 1
        right += (matcher.place_address(text).unit or "") == want.strip()
    return buf.getvalue(), (right / total if total else None)


async def run(args: argparse.Namespace) -> int:
    topo = Topology.load()
    workdir = Path(tempfile.mkdtemp(prefix="zhida-storm-"))
    policy = workdir / "policy.toml"
    policy.write_text('[policy]\nmerge_window = "PT2H"\n', encoding="utf-8")
    results = []
    with fresh_broker(workdir) as broker:
        ctx = Ctx(broker.bootstrap, "storm", workdir, [], topo, 60.0, "")
        engine = EngineRun(ctx, "e", policy=policy)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        try:
            await engine.start()
            progress(f"worker ready in {engine.startup:.1f} s")
            await producer.start()
            for i in range(args.repeats):
                r = await storm(engine, producer, topo, DISTRICTS[i % len(DISTRICTS)])
                results.append(r)
                progress(f"storm {i + 1}: {r['accounted']:.0f}/500 accounted (joined "
                         f"{r['joined']:.0f}, cases {r['opened']:.0f}, duplicates "
                         f"{r['duplicates']:.0f}); orders {r['orders']} for {r['cases']} cases; "
                         f"drained in {r['drain_s']} s")
        finally:
            await producer.stop()
            engine.stop()
    table, accuracy = placement_table()
    write(results, table, accuracy)
    return 0


def write(rs: list[dict[str, Any]], table: str, accuracy: float | None) -> None:
    write_page(OUT, render({"date": datetime.now(UTC), "machine": machine(), "results": rs,
                            "table": table, "accuracy": accuracy}))


def render(data: dict[str, Any]) -> str:
    """The page from the figures alone (no I/O), so a test can render it from a sample."""
    rs, table, accuracy, m = data["results"], data["table"], data["accuracy"], data["machine"]
    drain = statistics.median(r["drain_s"] for r in rs if r["drain_s"] is not None)
    ok_all = all(r["accounted"] == 500 for r in rs)
    ok_orders = all(r["orders"] == r["cases"] == r["opened"] for r in rs)
    lines = [
        "# Intake: an alarm storm, placement, addresses",
        "",
        *generated("bench.storm"),
        "",
        f"Measured {data['date']:%Y-%m-%d %H:%M} UTC on {m['cores']} cores ({m['cpu']}), "
        f"commit {m['commit']}; embedded broker (Tansu), one worker, merging on "
        f"(`merge_window` PT2H). {len(rs)} storms, each in another district.",
        "",
        "| target (issue 15) | measured | |",
        "|---|---|---|",
        "| 500 alarms from 300 sensors in one district: every alarm accounted (joined + cases "
        "+ duplicates = 500) | "
        + "; ".join(f"{r['joined']:.0f} + {r['opened']:.0f} + {r['duplicates']:.0f} = "
                    f"{r['accounted']:.0f}" for r in rs) + f" | {'✅' if ok_all else '❌'} |",
        "| … dispatch orders = cases | "
        + "; ".join(f"{r['orders']} orders, {r['cases']} cases ({r['streets']} streets)"
                    for r in rs) + f" | {'✅' if ok_orders else '❌'} |",
        f"| … drained in < 5 s | **{drain:.2f} s** median (first alarm produced → last case "
        f"event of the storm; " + ", ".join(f"{r['drain_s']} s" for r in rs) + ") | "
        f"{'✅' if drain < 5 else '❌'} |",
        f"| addresses placed correctly ≥ 95 % on our set | **{(accuracy or 0):.1%}** "
        "(tests/core/data/addresses.tsv, written by us with the rules: a regression set, "
        f"not an independent estimate) | {'✅' if (accuracy or 0) >= 0.95 else '❌'} |",
        "",
        "## Placement per report (`python -m bench.placement`)",
        "",
        table.strip(),
        "",
    ]
    return page_text(lines, __doc__)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("bench.storm", __doc__)
    p.add_argument("--repeats", type=int, default=3)
    return run_bench(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
