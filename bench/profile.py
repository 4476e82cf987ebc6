"""Where a complaint's CPU and milliseconds go (issue 27, "measure first"); writes
docs/benchmarks-profile.md.

    python -m bench.profile [--n 20000] [--rate 200] [--seconds 20] [--sample-rate 200]

Two measurements on one embedded broker, each on a fresh engine worker:

- **CPU at saturation** (and at ``--rate``): py-spy samples the worker (``--nonblocking``, so
  the worker is never paused) while it works off ``--n`` complaints produced at once (the
  default policy: merging on). Each sample is charged to the innermost frame of a known
  layer: the rules (engine/core), pydantic, the writer and its store, the intake, aiokafka,
  faust and mode, asyncio, the rest. A second table counts a sample for every layer on its
  stack (inclusive), which answers "how much of the time is the writer's batch".
- **Milliseconds by hop** at ``--rate`` complaints a second, merging on and off: every record's
  own Kafka timestamp (the producer's CreateTime, in the same clock) gives each complaint's
  time from its input record to its merge group's command (the intake agent), to the command
  that opens its case (the group's decision, merging on), to its dispatch order (the case
  writer), and from the order to the bench's consumer (delivery and fetch).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness import (
    ROOT,
    Failed,
    cancel_on_signals,
    elapsed,
    fresh_broker,
    loadavg_text,
    percentiles,
    proc_cpu,
    progress,
    run_bench,
    stop_all_children,
    write_page,
)
from bench.run import Ctx, produce_all
from bench.workers import EngineRun, no_merge_policy
from bench.workload import complaints
from engine.core.ids import case_id_for
from engine.data.topology import Topology
from engine.tools.broker import EmbeddedBroker

OUT = ROOT / "docs" / "benchmarks-profile.md"
IDLE_SECONDS = 5.0
PY_SPY = Path(sys.executable).parent / "py-spy"
# the layers a sample is charged to, innermost first: (label, path fragments)
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rules (engine/core)", ("engine/core/",)),
    ("pydantic (validate, dump)", ("pydantic/", "pydantic_core/")),
    ("writer and store (engine/runtime/writer, delivery, store)",
     ("engine/runtime/writer.py", "engine/runtime/delivery.py", "engine/runtime/store.py",
      "engine/runtime/storekeys.py")),
    ("intake (handlers, engine/runtime/intake)", ("handlers/", "engine/runtime/intake.py")),
    ("rest of the engine (engine/, schemas/, topics/)",
     ("engine/", "schemas/", "topics/")),
    ("rocksdb and faust's tables", ("faust/stores/", "faust/tables/", "rocksdict")),
    ("aiokafka (protocol, fetch, produce)", ("aiokafka/",)),
    ("faust and mode (streams, agents, sensors)", ("faust/", "mode/")),
    ("asyncio (the event loop)", ("asyncio/",)),
)
OTHER = "other (logging, prometheus, stdlib)"
# inclusive: a sample counts for each of these found anywhere on its stack
INCLUSIVE: tuple[tuple[str, str], ...] = (
    ("the case writer's batch (CaseWriter.handle)", "handle ("),
    ("the writer's delivery of outputs (delivery.py)", "engine/runtime/delivery.py"),
    ("the core's decisions (engine/core)", "engine/core/"),
    ("intake agents (engine/runtime/intake.py)", "engine/runtime/intake.py"),
    ("pydantic", "pydantic"),
    ("the schemas (schemas/)", "schemas/"),
    ("aiokafka", "aiokafka/"),
)


# ---- CPU: py-spy ----


def _in(part: str, frame: str) -> bool:
    """py-spy names a frame ``function (path:line)``, the path relative to its import root
    (``engine/core/decide.py``) or absolute for the standard library."""
    return f"({part}" in frame or f"/{part}" in frame


def classify(stack: list[str]) -> str:
    """The layer of the innermost frame that belongs to one (frames are root first)."""
    for frame in reversed(stack):
        for label, parts in LAYERS:
            if any(_in(p, frame) for p in parts):
                return label
    return OTHER


def read_raw(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """py-spy's raw (collapsed) output: ``frame;frame;… count`` a line."""
    layers: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return layers, inclusive, 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        n = int(count_text)
        stack = stack_text.split(";")
        total += n
        layers[classify(stack)] += n
        for label, part in INCLUSIVE:
            if part == "handle (":
                hit = any(f.startswith("CaseWriter.handle (") or (
                    f.startswith("handle (") and "engine/runtime/writer.py" in f) for f in stack)
            else:
                hit = any(_in(part, f) for f in stack)
            if hit:
                inclusive[label] += n
    return layers, inclusive, total


def spy(pid: int, seconds: float, out: Path, rate: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(PY_SPY), "record", "--pid", str(pid), "--nonblocking", "--format", "raw",
         "--rate", str(rate), "--duration", str(max(1, round(seconds))), "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass
class Profile:
    label: str
    seconds: float = 0.0
    sent: int = 0  # complaints produced at once
    complaints: int = 0  # orders read: merging on, the others joined a case
    samples: int = 0
    layers: dict[str, int] = field(default_factory=dict)
    inclusive: dict[str, int] = field(default_factory=dict)
    error: str | None = None


async def profile_saturation(ctx: Ctx, n: int, rate: int) -> Profile:
    prof = Profile("saturation", sent=n)
    run = EngineRun(ctx, "sat", policy=ctx.workdir / "policy-default.toml")
    msgs = complaints(n, f"{ctx.tag}sat")
    try:
        await run.start()
        progress(f"  worker ready in {run.startup:.1f} s; {n:,} complaints at once")
        reader = Orders(ctx.bootstrap, run, {case_id_for("complaint", k.decode())
                                             for k, _ in msgs})
        await reader.start()
        # long enough for the backlog; py-spy stops at its duration or with the worker
        out = ctx.workdir / "sat.raw"
        sampler = spy(run.pid, 60, out, rate)
        t0 = time.perf_counter()
        await produce_all(ctx.bootstrap, run.names.complaints, msgs)
        # merging on: a complaint that joins a case has no order of its own; done when the
        # orders stop coming
        last = await reader.settle(quiet=10.0, stall=120, run=run)
        prof.seconds = last - t0
        prof.complaints = len(reader.seen)
        sampler.send_signal(signal.SIGINT)  # py-spy writes what it has on Ctrl-C
        with contextlib.suppress(subprocess.TimeoutExpired):
            sampler.wait(20)
        await reader.stop()
        layers, inclusive, total = read_raw(out)
        prof.layers, prof.inclusive, prof.samples = dict(layers), dict(inclusive), total
    except Failed as e:
        prof.error = str(e)
    finally:
        run.stop()
    return prof


# ---- milliseconds: the hops ----


class Orders:
    """Reads the worker's dispatch topics and ``case.commands`` from the start: when each
    case's order arrived here, and each record's own timestamp."""

    def __init__(self, bootstrap: str, run: EngineRun, expected: set[str]) -> None:
        self.bootstrap = bootstrap
        self.run = run
        self.expected = expected
        self.seen: dict[str, float] = {}  # case id → wall time the order arrived
        self.order_ts: dict[str, float] = {}  # case id → the order record's timestamp
        self.group_ts: dict[str, float] = {}  # own case id → its GroupOpen's timestamp
        self.open_ts: dict[str, float] = {}  # case id → its OpenCase's timestamp
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                         enable_auto_commit=False, fetch_max_wait_ms=20)
        await self.consumer.start()
        topics = [*self.run.dispatch_topics(), self.run.names.case_commands]
        tps: list[TopicPartition] = []
        for t in topics:
            for _ in range(50):
                parts = self.consumer.partitions_for_topic(t)
                if parts:
                    break
                await self.consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            tps += [TopicPartition(t, p) for p in parts or ()]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        commands = self.run.names.case_commands
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.time()
            for tp, records in batch.items():
                for r in records:
                    ts = r.timestamp / 1000.0
                    body = orjson.loads(r.value)
                    if tp.topic == commands:
                        kind = body.get("body", {}).get("kind")
                        case = body.get("aggregate") or body.get("case_id")
                        if kind == "group_open":
                            self.group_ts.setdefault(body["body"]["case_id"], ts)
                        elif kind == "open":
                            self.open_ts.setdefault(case, ts)
                    elif body.get("kind") == "case" and body.get("case_id") in self.expected:
                        self.seen.setdefault(body["case_id"], now)
                        self.order_ts.setdefault(body["case_id"], ts)

    async def settle(self, quiet: float, stall: float, run: EngineRun) -> float:
        """Until no order came for ``quiet`` s (after at least one); the time of the last."""
        count, last = 0, time.perf_counter()
        started = last
        while True:
            await asyncio.sleep(0.2)
            now = time.perf_counter()
            if len(self.seen) != count:
                count, last = len(self.seen), now
            elif count and now - last > quiet:
                return last
            if not run.alive():
                raise Failed("the worker exited")
            if not count and now - started > stall:
                raise Failed("no order at all")

    async def wait_all(self, stall: float, run: EngineRun) -> None:
        last, count = time.perf_counter(), 0
        while len(self.seen) < len(self.expected):
            await asyncio.sleep(0.2)
            if len(self.seen) != count:
                last, count = time.perf_counter(), len(self.seen)
            if not run.alive():
                raise Failed("the worker exited")
            if time.perf_counter() - last > stall:
                raise Failed(f"stalled at {count}/{len(self.expected)}")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self.consumer.stop()


def median_ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1000, 1) if values else None


async def hops(ctx: Ctx, rate: float, seconds: float, merging: bool, sample: int | None,
               fetch_wait_ms: int | None = None) -> dict[str, Any]:
    """``sample``: py-spy's rate (it takes CPU from the worker and broker: the latency of a
    sampled run is not the engine's); None: not sampled."""
    label = "on" if merging else "off"
    policy = ctx.workdir / ("policy-default.toml" if merging else "policy-no-merge.toml")
    if not merging:
        no_merge_policy(ctx.workdir)
    run = EngineRun(ctx, f"hop{label}{'s' if sample else ''}", policy=policy)
    total = max(1, int(rate * seconds))
    # distinct categories per complaint (seed) are not needed: merged ones have no order and
    # are left out of the percentiles, as in bench/run.py's latency
    msgs = complaints(total, f"{ctx.tag}hop{label}{'s' if sample else ''}", seed=11)
    sent: dict[str, float] = {}
    out: dict[str, Any] = {"merging": merging, "rate": rate, "sent": total,
                           "sampled": sample is not None, "fetch_wait_ms": fetch_wait_ms}
    if fetch_wait_ms is not None:
        run.env["ZHIDA_FETCH_MAX_WAIT_MS"] = str(fetch_wait_ms)
    run.env.update(ctx.env)
    producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, linger_ms=0)
    reader: Orders | None = None
    try:
        await run.start()
        # idle: what the worker and the broker burn with nothing to do (their fetch loops)
        broker_pid = ctx.broker_pid
        cpu0 = (proc_cpu(run.pid), proc_cpu(broker_pid))
        await asyncio.sleep(IDLE_SECONDS)
        cpu1 = (proc_cpu(run.pid), proc_cpu(broker_pid))
        out["idle_cpu"] = {name: round((b - a) / IDLE_SECONDS, 3)
                           for name, a, b in zip(("worker", "broker"), cpu0, cpu1, strict=True)
                           if a is not None and b is not None}
        reader = Orders(ctx.bootstrap, run, {case_id_for("complaint", k.decode())
                                             for k, _ in msgs})
        await reader.start()
        await producer.start()
        raw = ctx.workdir / f"hop{label}{sample or ''}.raw"
        sampler = spy(run.pid, seconds, raw, sample) if sample else None
        start = time.perf_counter()
        futures = []
        for i, (key, value) in enumerate(msgs):
            due = start + i / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            sent[case_id_for("complaint", key.decode())] = time.time()
            futures.append(await producer.send(run.names.complaints, value, key=key))
        await asyncio.gather(*futures)
        with contextlib.suppress(Failed):
            await reader.wait_all(15, run)
        if sampler is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                sampler.wait(seconds + 10)
        layers, inclusive, samples = read_raw(raw)
        out["cpu"] = {"samples": samples, "layers": dict(layers),
                      "inclusive": dict(inclusive)}
        cases = [c for c in reader.seen if c in sent]
        out["received"] = len(cases)
        out["end_to_end"] = percentiles([(reader.seen[c] - sent[c]) * 1000 for c in cases])
        intake, group, writer, delivery = [], [], [], []
        for c in cases:
            first = reader.group_ts.get(c) if merging or c in reader.group_ts else None
            opened = reader.open_ts.get(c)
            if first is not None:
                intake.append(first - sent[c])
                if opened is not None:
                    group.append(opened - first)
            elif opened is not None:
                intake.append(opened - sent[c])
            if opened is not None:
                writer.append(reader.order_ts[c] - opened)
            delivery.append(reader.seen[c] - reader.order_ts[c])
        out["hops_p50_ms"] = {"intake agent → its command": median_ms(intake),
                              "merge group's decision → the case's command": median_ms(group),
                              "case writer → dispatch order": median_ms(writer),
                              "order → the bench's consumer": median_ms(delivery)}
    except Failed as e:
        out["error"] = str(e)
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
        if reader is not None:
            await reader.stop()
        run.stop()
    return out


# ---- the page ----


def _share(counts: dict[str, int], total: int) -> list[str]:
    rows = sorted(counts.items(), key=lambda kv: -kv[1])
    return [f"| {k} | {v:,} | {v / total:.0%} |" for k, v in rows if total]


def render(data: dict[str, Any]) -> str:
    sat = data["saturation"]
    lines = [
        "# Where a complaint's time goes (issue 27: measure first)",
        "",
        f"`make bench-profile` (`python -m bench.profile`, {data['date']:%Y-%m-%d}, "
        f"{data['duration_s']} s; 1-minute load before the run {data['load']}).",
        "",
        "## Method",
        "",
        "- **CPU**: py-spy (`record --nonblocking --format raw`, 200 samples/s) on the engine "
        "worker while it works off complaints produced at once (the default policy: merging "
        "on), then at the latency run's rate. A sample is charged to the innermost frame of a "
        "known layer; the inclusive table counts a sample for every layer on its stack. Only "
        "running threads are sampled: time spent waiting is not in these tables.",
        "- **Hops**: complaints one by one at a fixed rate into a fresh worker on a fresh "
        "broker, merging on and off, for each consumer fetch wait "
        "(`ZHIDA_FETCH_MAX_WAIT_MS`). Each record's own timestamp (the producer's CreateTime) "
        "gives the time from the complaint to its merge group's command (the intake agent), "
        "to the command that opens its case (the group's decision: every complaint passes "
        "its place's group, which counts hotspots and holds precedents, docs/insights.md), to "
        "its dispatch order (the case writer: fetch, batch window, decision, the first "
        "delivery phase), and from the order to the bench's consumer. Idle CPU is the worker's "
        "and the broker's over 5 s before the load.",
        "",
        f"## CPU at saturation: {sat.get('sent', 0):,} complaints at once, default policy",
        "",
        f"{sat.get('complaints', 0):,} dispatch orders (the others joined a neighbour's case) "
        f"in {sat.get('seconds', 0):.1f} s from the first complaint produced: "
        f"{sat.get('sent', 0) / max(sat.get('seconds') or 1, 1e-9):,.0f} complaints/s; "
        f"{sat.get('samples', 0):,} samples.",
        "",
    ]
    if sat.get("error"):
        lines += [f"failed: {sat['error']}", ""]
    total = sat.get("samples") or 0
    lines += ["| layer (innermost frame) | samples | share |", "|---|---:|---:|",
              *_share(sat.get("layers", {}), total), "",
              "| on the stack (inclusive) | samples | share |", "|---|---:|---:|",
              *_share(sat.get("inclusive", {}), total), ""]
    for h in data["hops"]:
        merging = "on" if h["merging"] else "off"
        sampled = " (CPU sampled: py-spy slows the worker; its latency is not the engine's)" \
            if h.get("sampled") else ""
        lines += [f"## {h['rate']:g} complaints/s, merging {merging}, fetch wait "
                  f"{h.get('fetch_wait_ms')} ms{sampled}", ""]
        idle = h.get("idle_cpu") or {}
        if idle:
            lines += ["Idle, before the load: " + ", ".join(
                f"{k} {v:.1%} of a core" for k, v in idle.items()) + ".", ""]
        if h.get("error"):
            lines += [f"failed: {h['error']}", ""]
        e = h.get("end_to_end", {})
        lines += [f"{h.get('received', 0):,} of {h['sent']:,} complaints had an order of their "
                  f"own; produced → order received: p50 {e.get('p50_ms')} ms, p99 "
                  f"{e.get('p99_ms')} ms, max {e.get('max_ms')} ms.", "",
                  "| hop (median) | ms |", "|---|---:|"]
        lines += [f"| {k} | {v if v is not None else '–'} |"
                  for k, v in h.get("hops_p50_ms", {}).items()]
        cpu = h.get("cpu", {})
        if cpu.get("samples"):
            lines += ["", "| layer (innermost frame) | samples | share |", "|---|---:|---:|",
                      *_share(cpu["layers"], cpu["samples"])]
        lines.append("")
    return "\n".join(lines)


@dataclass
class ProfileCtx(Ctx):
    broker_pid: int | None = None
    env: dict[str, str] = field(default_factory=dict)  # more ZHIDA_* for every worker


async def run(args: argparse.Namespace) -> int:
    if not PY_SPY.exists():
        raise Failed(f"py-spy is not installed in this environment ({PY_SPY}): "
                     "pip install py-spy (make bench-profile does)")
    tag = "p" + datetime.now(UTC).strftime("%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="zhida-profile-"))
    (workdir / "policy-default.toml").write_text("", encoding="utf-8")
    started = datetime.now(UTC)
    cancel_on_signals()
    data: dict[str, Any] = {"date": started, "load": loadavg_text(), "hops": []}
    topology = Topology.load()

    def ctx_on(broker: EmbeddedBroker) -> ProfileCtx:
        # each measurement on a fresh broker: Tansu's fetch slows as it stores more
        return ProfileCtx(broker.bootstrap, tag, workdir, [], topology, 60.0, "zhida",
                          broker.proc.pid if broker.proc else None, dict(args.env))

    try:
        data["env"] = dict(args.env)
        data["saturation"] = Profile("saturation", error="not run").__dict__
        if not args.skip_saturation:
            with fresh_broker(workdir, "sat") as broker:
                progress(f"saturation: {args.n:,} complaints, py-spy at {args.sample_rate}/s")
                sat = await profile_saturation(ctx_on(broker), args.n, args.sample_rate)
                data["saturation"] = sat.__dict__
                progress(f"  {sat.complaints:,} in {sat.seconds:.1f} s, {sat.samples:,} "
                         f"samples {sat.error or ''}")
        plan = [(m, None, w) for w in args.fetch_waits for m in (True, False)]
        if args.sample_rate > 0:
            plan.append((True, args.sample_rate, args.fetch_waits[0]))
        for i, (merging, sample, wait) in enumerate(plan):
            progress(f"hops: {args.rate:g}/s for {args.seconds:g} s, merging "
                     f"{'on' if merging else 'off'}, fetch wait {wait} ms"
                     f"{', py-spy' if sample else ''}")
            with fresh_broker(workdir, f"hops{i}") as broker:
                h = await hops(ctx_on(broker), args.rate, args.seconds, merging, sample, wait)
            data["hops"].append(h)
            progress(f"  idle {h.get('idle_cpu')} {h.get('end_to_end')} {h.get('hops_p50_ms')}")
    finally:
        stop_all_children()
    data["duration_s"] = round(elapsed())
    if args.json is not None:  # the figures as render takes them (a page's test sample)
        args.json.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    if args.write:
        write_page(args.out, render(data))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--sample-rate", type=int, default=200, help="py-spy samples a second")
    p.add_argument("--fetch-waits", type=lambda v: [int(x) for x in v.split(",")],
                   default=[50, 20, 10], help="ZHIDA_FETCH_MAX_WAIT_MS values to compare (ms)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--no-write", dest="write", action="store_false")
    p.add_argument("--json", type=Path, help="also write the figures here, as JSON")
    p.add_argument("--env", action="append", default=[], metavar="ZHIDA_X=VALUE",
                   type=lambda v: tuple(v.split("=", 1)),
                   help="a setting for every worker of the run (repeat for more)")
    p.add_argument("--skip-saturation", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PYTHONHASHSEED", "0")
    return run_bench(run, parse(argv))


if __name__ == "__main__":
    sys.exit(main())
