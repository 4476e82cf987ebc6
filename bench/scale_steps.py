"""bench/scale.py's steps: a phase's fresh broker, its worker, N open cases, the changelog read
back, a restart with a sample check and a new complaint; the phase at 0 cases and at N.

bench/timers.py runs on the same pieces (one worker, N armed cases)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.harness import (
    MIB,
    Failed,
    du,
    fresh_broker,
    http_get,
    machine,
    metric,
    metric_by_label,
    mib,
    progress,
    settled_rss,
    stop_all_children,
    vm_status,
)
from bench.workers import BenchWorker, no_merge_policy
from bench.workload import complaints
from engine.core.ids import case_id_for
from engine.core.model import Origin
from engine.data.catalogue import Catalogue
from engine.data.topology import CITY_TOPIC_KEY, Topology
from handlers.complaints import to_command as complaint_command
from schemas.codec import encode
from topics import TopicNames

CHUNK = 5000  # complaints generated and produced at a time
OPENED_TYPES = ("dispatched", "triaged")  # case events that mean "a new case went out"


@dataclass
class Ctx:
    bootstrap: str
    tag: str
    workdir: Path
    store: str
    topology: Topology
    args: argparse.Namespace
    producer: AIOKafkaProducer | None = None


class ScaleWorker(BenchWorker):
    """One engine: app id, topic prefix, data dir and HTTP port fixed, as a restarted worker
    keeps its configuration (the engine derives its static group membership id from the
    port); each start is a new process in its own session, with its own log file."""

    def __init__(self, ctx: Ctx, label: str, policy: Path | None = None) -> None:
        self.ctx = ctx
        self.label = label
        self.policy = policy
        self.app_id = f"scale-{ctx.tag}{label}"
        self.prefix = f"{ctx.tag}{label}."
        self.names = TopicNames(self.prefix)
        super().__init__(ctx.bootstrap, ctx.workdir / f"data-{label}", self.start_log(0))

    def start_name(self, start: int) -> str:
        return f"engine worker {self.label}#{start}"

    def start_log(self, start: int) -> Path:
        return self.ctx.workdir / f"worker-{self.label}-{start}.log"

    def dispatch_topics(self) -> list[str]:
        return [self.names.dispatch(d) for d in (*self.ctx.topology.districts, CITY_TOPIC_KEY)]

    def launch(self) -> None:
        self.process.env = {
            "ZHIDA_APP_ID": self.app_id, "ZHIDA_PREFIX": self.prefix,
            "ZHIDA_STORE": self.ctx.store,
            # the caller's policy (bench/timers.py brings its own) wins over the no-merge one
            "ZHIDA_POLICY": str(self.policy or os.environ.get("ZHIDA_POLICY")
                                or no_merge_policy(self.ctx.workdir))}
        super().launch()

    async def ready_after(self, since: float, timeout: float) -> float:
        """Seconds from ``since`` (perf_counter) to /readyz 200; a progress line every
        --progress s while waiting."""
        last_report = time.perf_counter()

        def waiting(_seconds: float) -> None:
            nonlocal last_report
            now = time.perf_counter()
            if now - last_report >= self.ctx.args.progress:
                last_report = now
                progress(f"  … waiting for /readyz: {now - since:,.0f} s, worker RSS "
                         f"{mib(vm_status(self.pid).get('VmRSS'))}")

        took = await self.ready(timeout, 0.1, waiting)
        return took + (self.process.started - since)

    async def metrics(self, timeout: float = 10.0) -> str:
        return await super().metrics(timeout)


# ---------------------------------------------------------------- measurements

def complaint_id(ctx: Ctx, label: str, index: int) -> str:
    """The id ``bench.workload.complaints`` gives the ``index``-th complaint of a run."""
    return f"{ctx.tag}{label}-{index // CHUNK:04d}-{index % CHUNK:07d}"


def complaint_chunk(ctx: Ctx, label: str, chunk: int, n: int) -> list[tuple[bytes, bytes]]:
    return complaints(n, f"{ctx.tag}{label}-{chunk:04d}", seed=chunk)


def as_commands(ctx: Ctx, w: ScaleWorker, msgs: list[tuple[bytes, bytes]]
                ) -> list[tuple[bytes, bytes]]:
    """The open-case commands the intake agent would forward for these complaints (merging
    off), made by the engine's own intake function: (case id, command) for ``case.commands``.
    """
    catalogue = _catalogue()
    now = datetime.now(UTC)
    out = []
    for key, value in msgs:
        origin = Origin(topic=w.names.complaints, key=key.decode(), original=value.decode())
        cmd = complaint_command(catalogue, value, origin, now)
        out.append((cmd.aggregate.encode(), encode(cmd)))
    return out


@functools.cache
def _catalogue() -> Catalogue:
    return Catalogue.load()


async def open_cases(ctx: Ctx, w: ScaleWorker, n: int, via: str = "intake") -> dict[str, Any]:
    """Produce n complaints, never more than --window ahead of the dispatched ones, until the
    worker's metrics count n dispatched cases. Progress every --progress s.

    ``via="commands"`` writes the open-case commands straight to ``case.commands`` instead
    (``as_commands``), in the bench producer's large batches: on the embedded broker every
    fetch lists every stored batch of the partition it reads (docs/benchmarks-timers.md,
    "Why the cases are opened by commands"), and the intake agent's forwarding leaves
    ~one small batch per command there, which every later fetch of the writer then lists."""
    a = ctx.args
    assert ctx.producer is not None
    topic = w.names.complaints if via == "intake" else w.names.case_commands
    sent = chunk = 0
    done = 0.0
    deadletters: dict[str, float] = {}
    t_start = time.perf_counter()
    t_done: float | None = None
    last_poll = last_change = t_start
    last_report, done_at_report = t_start, 0.0
    while True:
        now = time.perf_counter()
        if now - last_poll >= a.poll or (sent >= n and now - last_poll >= 0.1):
            last_poll = now
            text = await w.metrics()
            if text:
                value = sum(metric(text, "zhida_case_events_total", type=t) or 0.0
                            for t in OPENED_TYPES)
                if value > done:
                    done, last_change = value, time.perf_counter()
                deadletters = metric_by_label(text, "zhida_deadletters_total", "reason")
            if done >= n:
                t_done = time.perf_counter()
                break
            if not w.alive():
                raise Failed(f"worker exited with {w.process.returncode}"
                             f" after {done:,.0f}/{n:,}\n--- worker log tail ---\n{w.tail()}")
            if sum(deadletters.values()) > 0:
                raise Failed(f"complaints dead-lettered: {deadletters} after {done:,.0f}/{n:,}")
            if now - last_change > a.stall:
                raise Failed(f"stalled: {done:,.0f}/{n:,} dispatched, no progress for "
                             f"{a.stall:.0f} s\n--- worker log tail ---\n{w.tail()}")
        if now - last_report >= a.progress:
            elapsed = now - t_start
            recent = (done - done_at_report) / (now - last_report)
            avg = done / elapsed if elapsed else 0.0
            eta = (n - done) / avg if avg else float("inf")
            rss = vm_status(w.pid).get("VmRSS")
            progress(f"  N={n:,}: {done:,.0f} dispatched ({done / n:.0%}), sent {sent:,}; "
                     f"{recent:,.0f}/s now, {avg:,.0f}/s average; ETA {eta:,.0f} s; "
                     f"worker RSS {mib(rss)}")
            last_report, done_at_report = now, done
        if sent < n and sent - done < a.window:
            k = min(CHUNK, n - sent)
            msgs = complaint_chunk(ctx, w.label, chunk, k)
            if via == "commands":
                msgs = as_commands(ctx, w, msgs)
            futures = [await ctx.producer.send(topic, value, key=key) for key, value in msgs]
            await asyncio.gather(*futures)
            sent += k
            chunk += 1
            continue
        await asyncio.sleep(0.05)
    seconds = t_done - t_start
    text = await w.metrics()
    return {
        "seconds": round(seconds, 2), "rate": round(n / seconds, 1), "sent": sent,
        "dispatched": done,
        "commands": metric(text, "zhida_command_seconds_count"),
        "duplicates": metric(text, "zhida_duplicates_total") or 0.0,
        "deadletters": sum(deadletters.values()),
    }


async def changelog_size(bootstrap: str, app_id: str, idle: float = 2.0) -> dict[str, Any]:
    """Records and key+value bytes of every topic of the app whose name contains
    ``changelog``, read from the beginning until nothing came for ``idle`` s (Tansu 0.6.0 has
    no DescribeLogDirs, and its end offsets undercount: see bench/run.py)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=100, max_partition_fetch_bytes=8 * MIB,
                                fetch_max_bytes=64 * MIB)
    await consumer.start()
    t = time.perf_counter()
    try:
        await consumer._client.force_metadata_update()
        names = sorted(x for x in await consumer.topics()
                       if "changelog" in x and x.startswith(app_id))
        per: dict[str, dict[str, int]] = {x: {"records": 0, "key_bytes": 0, "value_bytes": 0}
                                          for x in names}
        tps = [TopicPartition(x, p) for x in names
               for p in (consumer.partitions_for_topic(x) or ())]
        if tps:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            last = time.perf_counter()
            while time.perf_counter() - last < idle:
                batch = await consumer.getmany(timeout_ms=200, max_records=20000)
                for tp, recs in batch.items():
                    p = per[tp.topic]
                    p["records"] += len(recs)
                    for r in recs:
                        p["key_bytes"] += len(r.key or b"")
                        p["value_bytes"] += len(r.value or b"")
                if batch:
                    last = time.perf_counter()
    finally:
        await consumer.stop()
    return {
        "topics": {k.removeprefix(app_id + "-"): v for k, v in per.items()},
        "records": sum(p["records"] for p in per.values()),
        "bytes": sum(p["key_bytes"] + p["value_bytes"] for p in per.values()),
        "read_seconds": round(time.perf_counter() - t - idle, 1),
    }


async def check_sample(w: ScaleWorker, case_ids: list[str]) -> dict[str, Any]:
    def run() -> tuple[int, list[tuple[str, int]]]:
        ok, bad = 0, []
        for cid in case_ids:
            status, _ = http_get(w.url(f"/cases/{cid}"))
            if status == 200:
                ok += 1
            else:
                bad.append((cid, status))
        return ok, bad

    t = time.perf_counter()
    ok, bad = await asyncio.to_thread(run)
    return {"sample": len(case_ids), "sample_known": ok, "sample_missing": bad[:5],
            "sample_seconds": round(time.perf_counter() - t, 2)}


async def probe(ctx: Ctx, w: ScaleWorker, name: str, timeout: float = 120.0) -> float:
    """Produce one new complaint; seconds until its dispatch order is read back."""
    assert ctx.producer is not None
    key, value = complaints(1, f"{ctx.tag}{w.label}-probe-{re.sub(r'[^a-z0-9]+', '-', name)}")[0]
    case_id = case_id_for("complaint", key.decode())
    consumer = AIOKafkaConsumer(bootstrap_servers=ctx.bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(x, p) for x in w.dispatch_topics()
               for p in (consumer.partitions_for_topic(x) or ())]
        if not tps:
            raise Failed("no dispatch topics")
        # where each partition ends now (Tansu may answer a little early: harmless here)
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp, offset in ends.items():
            consumer.seek(tp, offset)
        t = time.perf_counter()
        await ctx.producer.send_and_wait(w.names.complaints, value, key=key)
        while time.perf_counter() - t < timeout:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for recs in batch.values():
                for r in recs:
                    with contextlib.suppress(ValueError):
                        if orjson.loads(r.value).get("case_id") == case_id:
                            return time.perf_counter() - t
            if not w.alive():
                raise Failed("worker exited while the probe complaint was pending")
        raise Failed(f"new complaint {key.decode()} not dispatched within {timeout:.0f} s")
    finally:
        await consumer.stop()


async def fresh_start(ctx: Ctx, w: ScaleWorker, out: dict[str, Any]) -> None:
    """Start ``w``; into ``out`` its seconds to /readyz 200 (``fresh_start``) and its settled
    RSS at 0 cases (``rss0``)."""
    t0 = time.perf_counter()
    w.launch()
    out["fresh_start"] = round(await w.ready_after(t0, ctx.args.ready_timeout), 2)
    out["rss0"], _ = await settled_rss(w.pid)


async def restart(ctx: Ctx, w: ScaleWorker, name: str, lose_state: bool,
                  sample: list[str]) -> dict[str, Any]:
    """SIGKILL, (delete the data dir,) start again; seconds from the SIGKILL to /readyz 200,
    then the sample check, a new complaint dispatched, the settled RSS."""
    out: dict[str, Any] = {"name": name, "ok": False}
    try:
        t0 = time.perf_counter()
        if w.alive():
            w.kill()
        out["kill_seconds"] = round(time.perf_counter() - t0, 2)
        if lose_state:
            shutil.rmtree(w.data_dir, ignore_errors=True)
        t_launch = time.perf_counter()
        w.launch()
        ready = await w.ready_after(t0, ctx.args.ready_timeout)
        out["to_ready"] = round(ready, 2)
        out["launch_to_ready"] = round(ready - (t_launch - t0), 2)
        progress(f"  {name}: /readyz 200 {ready:.1f} s after the SIGKILL")
        if sample:
            out.update(await check_sample(w, sample))
            progress(f"  {name}: {out['sample_known']}/{out['sample']} sampled cases known")
        out["probe_seconds"] = round(await probe(ctx, w, name), 2)
        progress(f"  {name}: a new complaint dispatched in {out['probe_seconds']:.2f} s")
        out["rss"], _ = await settled_rss(w.pid)
        out["hwm"] = vm_status(w.pid).get("VmHWM")
        out["ok"] = not sample or out["sample_known"] == len(sample)
        if not out["ok"]:
            out["error"] = (f"only {out['sample_known']}/{len(sample)} sampled cases known, "
                            f"e.g. {out['sample_missing']}")
    except Failed as e:
        out["error"] = str(e)
        progress(f"  {name} FAILED: {e}")
    return out


# ---------------------------------------------------------------- phases

@dataclass
class Phase:
    n: int
    ok: bool = False
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def add_step_args(p: argparse.ArgumentParser, progress: float, stall: str) -> None:
    """The options the steps read from ``Ctx.args`` (with ``--window``)."""
    p.add_argument("--progress", type=float, default=progress,
                   help="seconds between progress lines")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between /metrics polls")
    p.add_argument("--stall", type=float, default=120.0, help=stall)
    p.add_argument("--ready-timeout", type=float, default=900.0,
                   help="give up on a (re)start after this many seconds without /readyz 200")


def add_output_args(p: argparse.ArgumentParser, out: Path) -> None:
    """Where a long run on one worker works, and what it writes where."""
    p.add_argument("--workdir", type=Path, default=None,
                   help="parent of the run's work dir (default: the system temp dir)")
    p.add_argument("--out", type=Path, default=out)
    p.add_argument("--no-write", dest="write", action="store_false",
                   help="do not write the report")
    p.add_argument("--keep-logs", action="store_true", help="keep the work dir with the logs")
    p.add_argument("--note", default="",
                   help="a sentence for the report's header (e.g. which engine version)")
    p.add_argument("--render-from", type=Path, metavar="RESULTS_JSON",
                   help="measure nothing: write --out again from a kept run's results.json")
    p.add_argument("--commit", default="",
                   help="engine commit to name in the report when the tree is not a git "
                        "checkout (e.g. a `git archive` snapshot)")


@contextlib.asynccontextmanager
async def environment(ctx_base: Ctx, label: str
                      ) -> AsyncIterator[tuple[Ctx, subprocess.Popen[bytes]]]:
    """A fresh embedded broker and producer for one phase; both stopped on the way out."""
    with fresh_broker(ctx_base.workdir, label) as broker:
        assert broker.proc is not None
        ctx = Ctx(broker.bootstrap, ctx_base.tag, ctx_base.workdir, ctx_base.store,
                  ctx_base.topology, ctx_base.args)
        ctx.producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5,
                                        max_batch_size=256 * 1024)
        try:
            await ctx.producer.start()
            yield ctx, broker.proc
        finally:
            with contextlib.suppress(Exception):
                await ctx.producer.stop()
            stop_all_children()


async def zero_phase(base: Ctx) -> dict[str, Any]:
    """Fresh worker, RSS at 0 cases, SIGKILL, restart on the same data dir."""
    out: dict[str, Any] = {"ok": False}
    async with environment(base, "zero") as (ctx, _broker):
        w = ScaleWorker(ctx, "z")
        try:
            await fresh_start(ctx, w, out)
            progress(f"  fresh worker ready in {out['fresh_start']:.1f} s, RSS "
                     f"{mib(out['rss0'])}")
            out["restart"] = await restart(ctx, w, "SIGKILL restart at 0 cases", False, [])
            out["ok"] = out["restart"]["ok"]
        except Failed as e:
            out["error"] = str(e)
            progress(f"  FAILED: {e}")
        finally:
            w.stop()
    return out


def machine_info(commit: str) -> dict[str, Any]:
    m = machine()
    m["commit"] = commit or m["commit"]
    try:
        m["rocksdict"] = metadata.version("rocksdict")
    except metadata.PackageNotFoundError:
        m["rocksdict"] = "not installed"
    return m


async def scale_phase(base: Ctx, n: int) -> Phase:
    ph = Phase(n)
    d = ph.data
    label = f"n{n}"
    async with environment(base, label) as (ctx, broker_proc):
        w = ScaleWorker(ctx, label)
        try:
            await fresh_start(ctx, w, d)
            progress(f"  fresh worker ready in {d['fresh_start']:.1f} s; RSS at 0 cases "
                     f"{mib(d['rss0'])}; opening {n:,} cases")
            d["open"] = await open_cases(ctx, w, n)
            o = d["open"]
            progress(f"  {n:,} cases dispatched in {o['seconds']:,.1f} s ({o['rate']:,.0f}/s); "
                     "waiting for RSS to settle")
            d["rss"], d["rss_readings"] = await settled_rss(w.pid)
            d["hwm"] = vm_status(w.pid).get("VmHWM")
            d["broker_rss"] = vm_status(broker_proc.pid).get("VmRSS")
            if d["rss"] is not None and d["rss0"] is not None:
                d["rss_per_case"] = (d["rss"] - d["rss0"]) / n
            d["store_disk"], d["store_apparent"] = du(w.data_dir)
            progress(f"  RSS at {n:,} cases {mib(d['rss'])} "
                     f"({d.get('rss_per_case', 0) / 1024:.2f} KiB per case); store on disk "
                     f"{mib(d['store_disk'])}; reading the changelog")
            cl = await changelog_size(ctx.bootstrap, w.app_id)
            d["changelog"] = cl
            commands = o.get("commands") or n
            d["changelog_per_command"] = cl["bytes"] / commands if commands else None
            progress(f"  changelog {cl['records']:,} records, {mib(cl['bytes'])} "
                     f"({d['changelog_per_command']:,.0f} B per command; read in "
                     f"{cl['read_seconds']:.1f} s)")
            rnd = random.Random(n)
            sample = [case_id_for("complaint", complaint_id(ctx, label, i))
                      for i in sorted(rnd.sample(range(n), min(ctx.args.sample, n)))]
            d["kept"] = await restart(ctx, w, "restart, local state kept", False, sample)
            d["lost"] = await restart(ctx, w, "restart, local state lost", True, sample)
            ph.ok = d["kept"]["ok"] and d["lost"]["ok"]
            if not ph.ok:
                ph.error = "; ".join(
                    f"{r['name']}: {(r.get('error') or '?').splitlines()[0]}"
                    for r in (d["kept"], d["lost"]) if not r["ok"])
        except Failed as e:
            ph.error = str(e)
            progress(f"  FAILED: {e}")
        finally:
            w.stop()
    return ph
