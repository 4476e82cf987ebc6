"""Signed updates (issue 17): engine throughput with signature checks against without.

    python -m bench.signed [--cases 3000] [--repeats 3]

One embedded broker; per repeat two fresh engine workers, one without a key set and one with
``ZHIDA_KEYS`` (a JWKS with a key for every street). Each gets ``--cases`` complaints (round
robin over the streets) and, once all are dispatched, one ``ack`` per case from its street,
signed with the street's key (the worker without keys ignores the header). Measured: updates
applied per second, from the first update produced to the last ``acknowledged`` event
(record timestamps), and the per-message verification cost from ``bench.signing``. Writes
docs/benchmarks-signing.md (linked from docs/benchmarks.md); medians over the repeats.
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
    page_text,
    progress,
    run_bench,
    write_page,
)
from bench.run import Ctx
from bench.workers import EngineRun
from engine.core.ids import case_id_for
from engine.data.topology import Topology
from engine.runtime.signing import Signer
from engine.tools import keys

OUT = ROOT / "docs" / "benchmarks-signing.md"


async def one(run: EngineRun, producer: AIOKafkaProducer, topo: Topology, n: int,
              signers: dict[str, Signer]) -> dict[str, Any]:
    names = run.names
    streets = topo.streets
    tail = Tail(run.ctx.bootstrap, [names.case_events])
    await tail.start()
    now = datetime.now(UTC).isoformat()
    cases = []
    for i in range(n):
        cid = f"sig-{uuid.uuid4().hex[:10]}"
        street = streets[i % len(streets)]
        await producer.send(names.complaints, orjson.dumps({
            "complaint_id": cid, "channel": "app", "category": "road_damage",
            "description": "路面坑洼", "location": {"unit": street}, "reported_at": now}),
            key=cid.encode())
        cases.append((case_id_for("complaint", cid), street))
    await producer.flush()

    def count(type_: bytes) -> int:
        return sum(1 for tp, _k, v, _ts in tail.records if type_ in v)

    t = time.perf_counter()
    while count(b'"type":"dispatched"') < n:
        if time.perf_counter() - t > 120:
            raise Failed(f"{run.label}: {count(b'dispatched')}/{n} dispatched")
        await asyncio.sleep(0.1)
    futures = []
    for case_id, street in cases:
        raw = orjson.dumps({"update_id": uuid.uuid4().hex, "actor": street,
                            "action": "ack", "case_id": case_id, "note": "已签收",
                            "at": datetime.now(UTC).isoformat()})
        futures.append(await producer.send(
            names.unit_updates, raw, key=case_id.encode(),
            headers=[("zhida-signature", signers[street].sign(raw).encode())]))
    sent = await asyncio.gather(*futures)
    first = min(m.timestamp for m in sent) / 1000
    t = time.perf_counter()
    while count(b'"type":"acknowledged"') < n:
        if time.perf_counter() - t > 120:
            raise Failed(f"{run.label}: {count(b'acknowledged')}/{n} updates applied")
        await asyncio.sleep(0.1)
    last = max(ts for _tp, _k, v, ts in tail.records if b'"type":"acknowledged"' in v)
    await tail.stop()
    return {"updates": n, "seconds": round(last - first, 3),
            "rate": round(n / max(last - first, 1e-6), 1)}


async def run(args: argparse.Namespace) -> int:
    topo = Topology.load()
    workdir = Path(tempfile.mkdtemp(prefix="zhida-signed-"))
    jwks, private = workdir / "jwks.json", workdir / "private"
    keys.issue(jwks, topo.streets, private)
    signers = {s: Signer.from_file(private / f"{s}.1.jwk") for s in topo.streets}
    results: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    with fresh_broker(workdir) as broker:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        try:
            await producer.start()
            for i in range(args.repeats):
                # alternate which goes first: drift on a noisy machine hits both alike
                for label in (("without", "with") if i % 2 == 0 else ("with", "without")):
                    ctx = Ctx(broker.bootstrap, f"s{i}{label[0]}", workdir, [], topo, 60.0, "")
                    engine = EngineRun(ctx, label)
                    if label == "with":
                        engine.env = {"ZHIDA_KEYS": str(jwks)}
                    try:
                        await engine.start()
                        r = await one(engine, producer, topo, args.cases, signers)
                    finally:
                        engine.stop()
                    results[label].append(r)
                    progress(f"repeat {i + 1}, {label} keys: {r['rate']:,.0f} updates/s "
                             f"({r['updates']} in {r['seconds']} s)")
        finally:
            await producer.stop()
    from bench import signing

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        signing.main([])
    write(results, buf.getvalue(), args)
    return 0


def write(rs: dict[str, list[dict[str, Any]]], micro: str, args: argparse.Namespace) -> None:
    write_page(OUT, render({"date": datetime.now(UTC), "machine": machine(), "cases": args.cases,
                            "repeats": args.repeats, "results": rs, "micro": micro}))


def render(data: dict[str, Any]) -> str:
    """The page from the figures alone (no I/O), so a test can render it from a sample."""
    rs, micro, m = data["results"], data["micro"], data["machine"]
    med = {k: statistics.median(r["rate"] for r in v) for k, v in rs.items()}
    ratios = [w["rate"] / o["rate"] for w, o in zip(rs["with"], rs["without"], strict=True)]
    lines = [
        "# Signed updates: verification cost and engine throughput",
        "",
        *generated("bench.signed"),
        "",
        f"Measured {data['date']:%Y-%m-%d %H:%M} UTC on {m['cores']} cores ({m['cpu']}), "
        f"commit {m['commit']}; embedded broker, one worker at a time, {data['cases']:,} "
        f"updates per run, {data['repeats']} repeats of each (the pair's order alternating); "
        "the ratio is taken per repeat, each worker against its neighbour in time.",
        "",
        "| | updates applied per second (median) | runs |",
        "|---|---|---|",
        f"| without a key set | **{med['without']:,.0f}** | "
        + ", ".join(f"{r['rate']:,.0f}" for r in rs["without"]) + " |",
        f"| with `ZHIDA_KEYS` (every update verified) | **{med['with']:,.0f}** | "
        + ", ".join(f"{r['rate']:,.0f}" for r in rs["with"]) + " |",
        f"| ratio with / without, per repeat (median) | **{statistics.median(ratios):.2f}** | "
        + ", ".join(f"{r:.2f}" for r in ratios) + " |",
        "",
        "## Verification per message (`python -m bench.signing`)",
        "",
        micro.strip(),
        "",
    ]
    return page_text(lines, __doc__)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("bench.signed", __doc__)
    p.add_argument("--cases", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=5)
    return run_bench(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
