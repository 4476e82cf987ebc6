"""Failover (issue 23, part 2): SIGKILL one of three workers, time until its partitions work.

    python -m bench.failover [--cases 0,10000,300000] [--standby 0,1] [--kills 3]
                             [--partitions 6] [--rate 20] [--short-session 1.5]

Each phase (one N, one standby setting) runs on a fresh embedded broker (Tansu, memory
storage) with three engine workers of one group (`python -m engine.tools.cli worker`: one app id and
topic prefix, own data dir and HTTP port, `ZHIDA_PARTITIONS`, `ZHIDA_STANDBY_REPLICAS`, merging
off). N open cases are made the way bench/scale.py makes them fast: the open-case commands the
intake agent would forward, written straight to `case.commands` in batches of 5,000 (never more
than 20,000 ahead of the cases dispatched, counted from every worker's
`zhida_case_events_total{type="dispatched"}`). Then a steady trickle of complaints (`--rate`
a second, their ids chosen so that their case ids' partitions on `case.commands`,
`engine.runtime.store.partition_of`, take every partition in turn) runs through intake for the rest
of
the phase, and a plain aiokafka consumer reads every dispatch topic from its end.

Before each kill the group is quiet: every worker ready, every worker's
`GET /units/500000/stats` with `coverage.counted == coverage.partitions`, every worker's CPU
under a third of a core (standbys caught up with the build) for 3 s. The victim (the workers
in turn) is the owner of the partitions its `/units/500000/stats` lists as held; its session is
SIGKILLed (`os.killpg`). From the kill, measured: **(a)** the first dispatch order read for a
complaint sent after the kill whose case is on a partition the victim held (and the last of
those partitions to get one); **(b)** the first moment both survivors answer the city whole
again (polled every 0.2 s); then the victim is started again on its data dir, and **(c)** its
time from process start to `/readyz` 200, and the time until all three answer whole again.
The survivors' logs give the recovery behind each figure: rebalances (`generation id` lines),
the `bulk_restore` records a survivor read because it had no copy of a partition, and when it
was ready. The 1-minute load average (`/proc/loadavg`) is taken at each kill: the machine is
shared. At the end of each phase every trickle complaint must have its dispatch order, and
every worker's city figure `received` must equal N plus the trickle.

A last phase repeats the small N with a shorter consumer-group session (`--short-session`,
`ZHIDA_SESSION_TIMEOUT`; the heartbeat stays at the engine's 1 s) and counts rebalances that no
kill or start caused while the build saturates the machine: false evictions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.run import (
    CHILDREN,
    ROOT,
    Child,
    Failed,
    bench_parser,
    machine,
    no_merge_policy,
    page_text,
    progress,
    stop_all_children,
    write_page,
)
from bench.scale import SESSIONS, check_sessions
from bench.workload import complaints
from engine.core.ids import case_id_for
from engine.core.model import Origin
from engine.data.catalogue import Catalogue
from engine.data.topology import CITY_TOPIC_KEY, Topology
from engine.runtime.settings import Settings
from engine.runtime.store import partition_of
from engine.tools.broker import EmbeddedBroker, free_port
from handlers.complaints import to_command as complaint_command
from schemas.codec import encode
from topics import TopicNames

OUT = ROOT / "docs" / "benchmarks-failover.md"
CITY = "500000"
CHUNK = 5000  # open-case commands produced at a time
TARGET_FIRST_S = 15.0  # issue 23: first new case on the dead worker's partitions, at 300k
TARGET_WHOLE_S = 30.0  # issue 23: complete coverage again after a SIGKILL
TARGET_READY_S = 20.0  # issue 23: every worker ready again after its restart
TARGET_N = 300_000
QUIET_CPU = 0.33  # of one core, per worker: standbys caught up, nothing queued
OPENED = ("dispatched", "triaged")
DEFAULT_SESSION = Settings().session_timeout
DEFAULT_REBALANCE = Settings().rebalance_timeout


# ---------------------------------------------------------------- small helpers

def loadavg() -> float | None:
    """The 1-minute load average: the machine is shared, so every figure carries it."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process in clock ticks (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None


def http_json(url: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, orjson.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}
    except (OSError, ValueError):
        return 0, {}


def metric_total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if (head == name or head.startswith(name + "{")) and all(w in head for w in want):
            with contextlib.suppress(ValueError):
                total += float(value)
    return total


def med(values: list[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return round(statistics.median(xs), 2) if xs else None


@functools.cache
def _catalogue() -> Catalogue:
    return Catalogue.load()


# ---------------------------------------------------------------- a group of workers

class Member:
    """One worker of the group: its port and data dir survive restarts, as a restarted
    worker keeps its configuration; each start is a new process in its own session."""

    def __init__(self, group: Group, index: int) -> None:
        self.group = group
        self.index = index
        self.port = free_port()
        self.data_dir = group.workdir / f"{group.tag}-data-{index}"
        self.child: Child | None = None
        self.starts = 0

    @property
    def name(self) -> str:
        return f"w{self.index}"

    @property
    def log_path(self) -> Path:
        return self.group.workdir / f"{self.group.tag}-w{self.index}-{self.starts}.log"

    def launch(self) -> None:
        self.starts += 1
        self.child = Child(
            f"{self.group.tag} worker {self.index}#{self.starts}",
            [sys.executable, "-m", "engine.tools.cli", "worker", "--bootstrap",
             self.group.bootstrap, "--http-port", str(self.port), "--data-dir", str(self.data_dir)],
            self.log_path, self.group.env)
        SESSIONS.append((self.child.name, self.child.proc.pid))

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def ready(self, timeout: float) -> float:
        """Seconds from this process's start to ``/readyz`` 200."""
        assert self.child is not None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if not self.child.alive():
                raise Failed(f"{self.child.name} exited with {self.child.proc.returncode}\n"
                             f"--- log tail ---\n{self.child.tail()}")
            status, _ = await asyncio.to_thread(http_json, self.url("/readyz"), 2.0)
            if status == 200:
                return time.perf_counter() - self.child.started
            await asyncio.sleep(0.05)
        raise Failed(f"{self.child.name} not ready in {timeout:.0f} s\n--- log tail ---\n"
                     f"{self.child.tail()}")

    async def city(self) -> dict[str, Any] | None:
        status, body = await asyncio.to_thread(http_json, self.url(f"/units/{CITY}/stats"))
        return body if status == 200 else None

    async def metrics(self) -> str:
        def get() -> str:
            try:
                with urllib.request.urlopen(self.url("/metrics"), timeout=5) as resp:
                    return resp.read().decode()
            except OSError:
                return ""
        return await asyncio.to_thread(get)

    def kill(self) -> None:
        """SIGKILL the whole session and reap it."""
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.child.proc.pid, signal.SIGKILL)
        self.child.proc.wait(30)
        if self.child in CHILDREN:
            CHILDREN.remove(self.child)

    def log_events(self, since: float, log_path: Path | None = None) -> list[dict[str, Any]]:
        """The JSON log lines of a start at or after ``since`` (epoch seconds)."""
        out = []
        try:
            lines = (log_path or self.log_path).read_bytes().splitlines()
        except OSError:
            return out
        for line in lines:
            if not line.startswith(b"{"):
                continue
            try:
                ev = orjson.loads(line)
                at = datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00")).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            if at >= since:
                ev["at"] = at
                out.append(ev)
        return out


class Group:
    """``size`` workers of one consumer group on one broker, with the engine settings of a
    phase (``env``); topics of ``partitions`` partitions."""

    def __init__(self, bootstrap: str, workdir: Path, tag: str, size: int, partitions: int,
                 env: dict[str, str]) -> None:
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.tag = tag
        self.partitions = partitions
        self.names = TopicNames(f"{tag}.")
        self.env = {"ZHIDA_APP_ID": f"bench-{tag}", "ZHIDA_PREFIX": f"{tag}.",
                    "ZHIDA_PARTITIONS": str(partitions),
                    "ZHIDA_POLICY": str(no_merge_policy(workdir)), **env}
        self.members = [Member(self, i) for i in range(size)]

    def dispatch_topics(self) -> list[str]:
        topo = Topology.load()
        return [self.names.dispatch(d) for d in (*topo.districts, CITY_TOPIC_KEY)]

    async def start(self, timeout: float = 180.0) -> list[float]:
        """Start every member at once; each one's seconds to ``/readyz`` 200."""
        for m in self.members:
            m.launch()
        return list(await asyncio.gather(*(m.ready(timeout) for m in self.members)))

    def up(self) -> list[Member]:
        return [m for m in self.members if m.alive()]

    async def whole(self, members: list[Member]) -> bool:
        """Every one of ``members`` answers the city with all partitions counted."""
        answers = await asyncio.gather(*(m.city() for m in members))
        return all(a is not None and a.get("coverage", {}).get("counted") == self.partitions
                   for a in answers)

    async def opened(self) -> float:
        texts = await asyncio.gather(*(m.metrics() for m in self.up()))
        return sum(metric_total(t, "zhida_case_events_total", type=k)
                   for t in texts for k in OPENED)

    async def quiet(self, timeout: float) -> float:
        """Until every member answers the city whole and used under ``QUIET_CPU`` of a core
        over 3 s (standbys caught up); seconds waited. Failed after ``timeout``."""
        t0 = time.perf_counter()
        tick = os.sysconf("SC_CLK_TCK")
        while time.perf_counter() - t0 < timeout:
            if await self.whole(self.members):
                before = {m.index: cpu_ticks(m.child.proc.pid) for m in self.members
                          if m.child is not None}
                await asyncio.sleep(3.0)
                busy = []
                for m in self.members:
                    assert m.child is not None
                    a, b = before.get(m.index), cpu_ticks(m.child.proc.pid)
                    busy.append(None if a is None or b is None else (b - a) / tick / 3.0)
                if all(x is not None and x < QUIET_CPU for x in busy):
                    return time.perf_counter() - t0
            else:
                await asyncio.sleep(0.5)
            for m in self.members:
                if not m.alive():
                    tail = m.child.tail() if m.child else ""
                    raise Failed(f"{m.name} died while waiting for quiet\n{tail}")
        raise Failed(f"{self.tag}: not quiet in {timeout:.0f} s")

    def stop(self) -> None:
        for m in self.members:
            if m.child is not None:
                m.child.stop(10.0)


# ---------------------------------------------------------------- load and reading

def open_commands(names: TopicNames, msgs: list[tuple[bytes, bytes]]
                  ) -> list[tuple[bytes, bytes]]:
    """(case id, open-case command) as the intake agent forwards them (merging off)."""
    now = datetime.now(UTC)
    out = []
    for key, value in msgs:
        origin = Origin(topic=names.complaints, key=key.decode(), original=value.decode())
        cmd = complaint_command(_catalogue(), value, origin, now)
        out.append((cmd.case_id.encode(), encode(cmd)))
    return out


async def build(group: Group, producer: AIOKafkaProducer, n: int, window: int,
                stall: float = 120.0) -> dict[str, Any]:
    """N open cases through ``case.commands`` in large batches; seconds and cases/s."""
    sent = chunk = 0
    done = 0.0
    t0 = last_change = time.perf_counter()
    last_report = t0
    while done < n:
        if sent < n and sent - done < window:
            k = min(CHUNK, n - sent)
            msgs = open_commands(group.names,
                                 complaints(k, f"{group.tag}-b{chunk:04d}", seed=chunk))
            futures = [await producer.send(group.names.case_commands, v, key=key)
                       for key, v in msgs]
            await asyncio.gather(*futures)
            sent, chunk = sent + k, chunk + 1
            continue
        await asyncio.sleep(0.25)
        now = await group.opened()
        t = time.perf_counter()
        if now > done:
            done, last_change = now, t
        if t - last_change > stall:
            raise Failed(f"{group.tag}: build stalled at {done:,.0f}/{n:,}")
        if len(group.up()) < len(group.members):
            raise Failed(f"{group.tag}: a worker died during the build")
        if t - last_report > 15:
            last_report = t
            progress(f"  build {done:,.0f}/{n:,} ({done / (t - t0):,.0f}/s), "
                     f"load {loadavg()}")
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 1), "rate": round(n / seconds, 1) if seconds else None}


class Trickle:
    """Complaints at ``rate`` a second through intake, their case ids' partitions in turn."""

    def __init__(self, group: Group, producer: AIOKafkaProducer, rate: float) -> None:
        self.group = group
        self.producer = producer
        self.rate = rate
        self.sent: dict[str, tuple[float, int]] = {}  # case id -> (perf time sent, partition)
        self._task: asyncio.Task[None] | None = None
        self._i = 0

    @functools.cached_property
    def _bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _k, v in complaints(997, f"{self.group.tag}-t", seed=23)]

    def _next(self, partition: int) -> tuple[str, bytes, bytes]:
        """A complaint whose case lands on ``partition`` (ids tried in order)."""
        while True:
            self._i += 1
            cid = f"{self.group.tag}-t{self._i:07d}"
            case_id = case_id_for("complaint", cid)
            if partition_of(case_id, self.group.partitions) == partition:
                body = dict(self._bodies[self._i % len(self._bodies)])
                body["complaint_id"] = cid
                body["reported_at"] = datetime.now(UTC).isoformat()
                return case_id, cid.encode(), orjson.dumps(body)

    async def _run(self) -> None:
        start = time.perf_counter()
        k = 0
        while True:
            due = start + k / self.rate
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            partition = k % self.group.partitions
            case_id, key, value = self._next(partition)
            self.sent[case_id] = (time.perf_counter(), partition)
            await self.producer.send(self.group.names.complaints, value, key=key)
            k += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.producer.flush()


class Orders:
    """Dispatch orders of the trickle's cases, read from the end of every dispatch topic:
    case id -> perf time its first order was read."""

    def __init__(self, group: Group, trickle: Trickle) -> None:
        self.group = group
        self.trickle = trickle
        self.seen: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.group.bootstrap,
                                         enable_auto_commit=False, fetch_max_wait_ms=20)
        await self.consumer.start()
        await self.consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in self.group.dispatch_topics()
               for p in (self.consumer.partitions_for_topic(t) or ())]
        if not tps:
            raise Failed("no dispatch topics")
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        sent = self.trickle.sent
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.perf_counter()
            for recs in batch.values():
                for r in recs:
                    with contextlib.suppress(ValueError, AttributeError):
                        v = orjson.loads(r.value)
                        cid = v.get("case_id")
                        if v.get("kind") == "case" and cid in sent and cid not in self.seen:
                            self.seen[cid] = now

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.consumer.stop()


# ---------------------------------------------------------------- one kill

def _rebalances(events: list[dict[str, Any]]) -> int:
    return sum(1 for e in events if str(e.get("event", "")).startswith("generation id"))


ROW = re.compile(r"^\|\s*\S+\s*\|\s*(\d+)\s*\|\s*(-?\d+)\s*\|$")


def _logtable(text: str) -> dict[int, int]:
    """partition -> offset from one of faust's recovery log tables (one changelog topic)."""
    out = {}
    for line in text.splitlines():
        m = ROW.match(line.strip())
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


def behind(events: list[dict[str, Any]]) -> int:
    """Changelog records a worker had to read before its active partitions were ready:
    per partition, the largest (last offset - offset its local store had applied) over the
    recoveries in ``events`` (faust logs both tables before the engine's bulk load)."""
    worst: dict[int, int] = {}
    high: dict[int, int] = {}
    for e in events:
        text = str(e.get("event", ""))
        if "Highwater for active changelog partitions" in text:
            high = _logtable(text)
        elif "active offsets at start of reading" in text:
            for p, start in _logtable(text).items():
                if p in high:
                    worst[p] = max(worst.get(p, 0), high[p] - start)
    return sum(worst.values())


async def one_kill(group: Group, victim: Member, trickle: Trickle, orders: Orders,
                   timeout: float) -> dict[str, Any]:
    """SIGKILL ``victim``; (a) first new case on its partitions, (b) survivors whole, then
    restart it and (c) its time to ready, and all three whole again."""
    body = await victim.city()
    held = sorted(body.get("partitions") or []) if body else []
    if not held:
        raise Failed(f"{victim.name} holds no partition: nothing to fail over")
    survivors = [m for m in group.members if m is not victim]
    out: dict[str, Any] = {"victim": victim.name, "held": held, "load": loadavg()}
    wall = time.time()
    t_kill = time.perf_counter()
    victim.kill()
    first: dict[int, float] = {}  # partition -> seconds from the kill to its first new order
    t_whole: float | None = None
    while time.perf_counter() - t_kill < timeout:
        for cid, at in list(orders.seen.items()):
            t_sent, p = trickle.sent[cid]
            if t_sent >= t_kill and p in held and p not in first:
                first[p] = at - t_kill
        if t_whole is None and await group.whole(survivors):
            t_whole = time.perf_counter() - t_kill
        if t_whole is not None and len(first) == len(held):
            break
        await asyncio.sleep(0.2)
    out["first_s"] = round(min(first.values()), 2) if first else None
    out["all_held_s"] = round(max(first.values()), 2) if len(first) == len(held) else None
    out["whole_s"] = round(t_whole, 2) if t_whole is not None else None
    events = [e for m in survivors for e in m.log_events(wall)]
    out["rebalances"] = _rebalances(events)
    bulk = [e for e in events if e.get("event") == "bulk_restore"]
    out["bulk_records"] = sum(int(e.get("records") or 0) for e in bulk)
    out["bulk_seconds"] = round(sum(float(e.get("seconds") or 0) for e in bulk), 1)
    out["behind"] = sum(behind(m.log_events(wall)) for m in survivors)
    readies = [e["at"] - wall for e in events if e.get("event") == "ready"]
    out["survivor_ready_s"] = round(max(readies), 2) if readies else None
    # the victim again, on its data dir
    t_launch = time.perf_counter()
    victim.launch()
    out["restart_ready_s"] = round(await victim.ready(120.0), 2)
    t = time.perf_counter()
    while time.perf_counter() - t < timeout and not await group.whole(group.members):
        await asyncio.sleep(0.2)
    out["all_whole_after_restart_s"] = round(time.perf_counter() - t_launch, 2)
    restarted = victim.log_events(wall)
    rb = [e for e in restarted if e.get("event") == "bulk_restore"]
    out["restart_bulk_records"] = sum(int(e.get("records") or 0) for e in rb)
    out["restart_behind"] = behind(restarted)
    progress(f"  kill {victim.name} (held {held}, load {out['load']}): first new case "
             f"{out['first_s']} s, all held {out['all_held_s']} s, survivors whole "
             f"{out['whole_s']} s; survivors {out['behind']:,} changelog records behind "
             f"({out['bulk_records']:,} read in bulk); "
             f"restart to /readyz {out['restart_ready_s']} s")
    return out


# ---------------------------------------------------------------- a phase

async def phase(args: argparse.Namespace, workdir: Path, n: int, standby: int,
                group_timing: tuple[float, float] | None, label: str) -> dict[str, Any]:
    """A fresh broker and group: build N, quiet, ``--kills`` kills in turn, checks.
    ``group_timing``: (session, rebalance) timeouts in seconds instead of the engine's."""
    tag = f"fo{os.getpid() % 10000}{label}"
    env = {"ZHIDA_STANDBY_REPLICAS": str(standby),  # refused by default: measured only
           "ZHIDA_STANDBY_REPLICAS_UNSAFE": "1" if standby else "0"}
    session, rebalance = group_timing or (DEFAULT_SESSION, DEFAULT_REBALANCE)
    if group_timing is not None:
        env["ZHIDA_SESSION_TIMEOUT"] = str(session)
        env["ZHIDA_REBALANCE_TIMEOUT"] = str(rebalance)
    out: dict[str, Any] = {"n": n, "standby": standby, "session": session,
                           "rebalance": rebalance, "ok": False, "kills": [],
                           "load_start": loadavg()}
    progress(f"phase {label}: N={n:,}, standby replicas {standby}, session {session:g} s, "
             f"rebalance {rebalance:g} s, load {out['load_start']}")
    broker = EmbeddedBroker(log_path=workdir / f"broker-{label}.log").start()
    broker_proc = broker.proc
    assert broker_proc is not None
    SESSIONS.append((f"broker {label}", broker_proc.pid))
    group = Group(broker.bootstrap, workdir, tag, 3, args.partitions, env)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5,
                                max_batch_size=256 * 1024)
    trickle_producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    trickle = Trickle(group, trickle_producer, args.rate)
    orders: Orders | None = None
    try:
        await producer.start()
        await trickle_producer.start()
        out["start_s"] = [round(x, 2) for x in await group.start()]
        wall = time.time()
        out["build"] = await build(group, producer, n, args.window) if n else None
        if out["build"]:
            progress(f"  built {n:,} open cases at {out['build']['rate']:,.0f}/s")
        out["quiet_after_build_s"] = round(await group.quiet(args.quiet_timeout), 1)
        # rebalances while building under load: none is caused by a membership change
        # (every start had finished), so each is a member that missed its session
        out["build_rebalances"] = sum(_rebalances(
            [e for e in m.log_events(wall) if e["at"] > wall + 1.0]) for m in group.members)
        orders = Orders(group, trickle)
        await orders.start()
        trickle.start()
        for k in range(args.kills):
            await group.quiet(args.quiet_timeout)
            victim = group.members[k % len(group.members)]
            out["kills"].append(await one_kill(group, victim, trickle, orders, args.timeout))
        await trickle.stop()
        out["checks"] = await final_checks(group, trickle, orders, n)
        out["ok"] = out["checks"]["ok"]
    except Failed as e:
        out["error"] = str(e)[:2000]
        progress(f"  FAILED: {e}")
    finally:
        with contextlib.suppress(Exception):
            await trickle.stop()
        if orders is not None:
            await orders.stop()
        for p in (producer, trickle_producer):
            with contextlib.suppress(Exception):
                await p.stop()
        group.stop()
        broker.stop()
        if broker_proc.poll() is None:
            broker_proc.kill()
            broker_proc.wait(5)
    out["load_end"] = loadavg()
    return out


async def final_checks(group: Group, trickle: Trickle, orders: Orders, n: int,
                       timeout: float = 60.0) -> dict[str, Any]:
    """Every trickle complaint dispatched; every worker's city ``received`` = N + trickle."""
    t = time.perf_counter()
    while time.perf_counter() - t < timeout and len(orders.seen) < len(trickle.sent):
        await asyncio.sleep(0.5)
    want = n + len(trickle.sent)
    received: list[Any] = []
    while time.perf_counter() - t < timeout:
        answers = await asyncio.gather(*(m.city() for m in group.members))
        received = [_received(a) for a in answers]
        if all(r == want for r in received):
            break
        await asyncio.sleep(1.0)
    out = {"trickle_sent": len(trickle.sent), "trickle_dispatched": len(orders.seen),
           "expected_received": want, "received": received}
    out["ok"] = out["trickle_dispatched"] == out["trickle_sent"] and all(
        r == want for r in received)
    progress(f"  checks: {out}")
    return out


def _received(body: dict[str, Any] | None) -> int | None:
    """The city's ``received`` figure from a stats answer (None if absent)."""
    if not body:
        return None
    for holder in (body, body.get("figures") or {}, body.get("counters") or {}):
        v = holder.get("received") if isinstance(holder, dict) else None
        if isinstance(v, (int, float)):
            return int(v)
        if isinstance(v, dict) and isinstance(v.get("count"), (int, float)):
            return int(v["count"])
    return None


# ---------------------------------------------------------------- faust's assignor

def cold_partitions(partitions: int, workers: int, replicas: int) -> dict[str, Any]:
    """What faust's own assignor (the one the workers run) does on a fresh group of
    ``workers`` when each one dies in turn: the partitions of the dead worker given to a
    survivor that held no standby copy of them (it replays their changelog)."""
    from faust.assignor.client_assignment import CopartitionedAssignment
    from faust.assignor.copartitioned_assignor import CopartitionedAssignor

    def assign(clients: dict[str, Any]) -> dict[str, Any]:
        return dict(CopartitionedAssignor({"t"}, clients, partitions, replicas)
                    .get_assignment())

    fresh = assign({f"w{i}": CopartitionedAssignment(topics={"t"}) for i in range(workers)})
    cold = held = 0
    for dead, a in fresh.items():
        after = assign({k: CopartitionedAssignment(actives=set(v.actives),
                                                   standbys=set(v.standbys), topics={"t"})
                        for k, v in fresh.items() if k != dead})
        for p in a.actives:
            owner = next(k for k, v in after.items() if p in v.actives)
            held += 1
            cold += p not in fresh[owner].standbys
    return {"partitions": partitions, "workers": workers, "replicas": replicas,
            "assignment": {k: [sorted(v.actives), sorted(v.standbys)]
                           for k, v in sorted(fresh.items())},
            "cold": cold, "moved": held}


# ---------------------------------------------------------------- the run

async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="zhida-failover-"))
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    phases: list[dict[str, Any]] = []
    progress(f"workdir {workdir}")
    try:
        for n in args.cases:
            for standby in args.standby:
                phases.append(await phase(args, workdir, n, standby, None,
                                          f"n{n}s{standby}"))
        if args.short_session:
            for n in (args.short_session_cases, ):
                phases.append(await phase(args, workdir, n, args.short_session_standby,
                                          (args.short_session, args.short_rebalance),
                                          f"n{n}short"))
    finally:
        stop_all_children()
        left = check_sessions()
    assignor = [cold_partitions(p, 3, r) for p in sorted({args.partitions, Settings().partitions})
                for r in sorted({*args.standby, 1, 2})]
    data = {"date": started.isoformat(), "duration_s": round(time.perf_counter() - t0),
            "machine": machine(), "argv": sys.argv[1:], "partitions": args.partitions,
            "rate": args.rate, "kills": args.kills, "phases": phases, "left": left,
            "assignor": assignor, "session": DEFAULT_SESSION, "rebalance": DEFAULT_REBALANCE,
            "workdir": str(workdir)}
    (workdir / "results.json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    progress(f"results: {workdir / 'results.json'}; processes left: {left or 'none'}")
    write_page(args.out, render(data))
    return 0 if all(p["ok"] for p in phases) and not left else 1


# ---------------------------------------------------------------- the page

def _s(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f} s"


def _default_timing(p: dict[str, Any], data: dict[str, Any]) -> bool:
    return (p["session"], p.get("rebalance")) == (data["session"], data["rebalance"])


def _phase_name(p: dict[str, Any], data: dict[str, Any]) -> str:
    timing = "" if _default_timing(p, data) else \
        f", session {p['session']:g} s / rebalance {p['rebalance']:g} s"
    return f"{p['n']:,} open, standby {p['standby']}{timing}"


def _verdict(v: float | None, target: float) -> str:
    if v is None:
        return "–"
    return f"**{v:,.1f} s** {'✅' if v <= target else '❌'}"


def summarize(p: dict[str, Any]) -> dict[str, float | None]:
    """Medians over a phase's kills."""
    keys = ("first_s", "all_held_s", "whole_s", "restart_ready_s", "all_whole_after_restart_s",
            "load", "survivor_ready_s", "behind", "bulk_records", "rebalances")
    return {k: med([x.get(k) for x in p["kills"]]) for k in keys}


def _at(data: dict[str, Any], n: int, default_timing: bool = True
        ) -> dict[int, dict[str, float | None]]:
    return {p["standby"]: summarize(p) for p in data["phases"]
            if p["n"] == n and _default_timing(p, data) == default_timing and p["kills"]}


def render(data: dict[str, Any]) -> str:
    """The page from the figures alone (no I/O), so a test renders it from a sample."""
    m = data["machine"]
    phases = data["phases"]
    date = datetime.fromisoformat(data["date"])
    lines = [
        "# Failover: a SIGKILLed worker's partitions, with and without standby replicas",
        "",
        "<!-- Generated by `python -m bench.failover` (bench/failover.py). Do not edit by "
        "hand: rerun `make bench-failover`. -->",
        "",
        f"Measured {date:%Y-%m-%d %H:%M} UTC (run took {data['duration_s'] / 60:,.0f} min) on "
        f"{m['cores']} cores ({m['cpu']}), commit `{m['commit']}` (working tree): three "
        f"workers of one group, {data['partitions']} partitions, a trickle of "
        f"{data['rate']:g} complaints/s, {data['kills']} kills per phase (the workers in "
        f"turn), the engine's group timing (session {data['session']:g} s, rebalance "
        f"{data['rebalance']:g} s, heartbeat 1 s) unless a phase says otherwise. The machine is "
        "shared with other jobs: the 1-minute load average at each kill is next to it. "
        f"Processes left running at the end: {', '.join(data['left']) or 'none'}.",
        "",
        "## Summary (medians over the kills)",
        "",
        "| phase | (a) first new case on the dead worker's partitions | (a) on every one of "
        "them | (b) survivors whole again | (c) restarted worker to `/readyz` | all three whole "
        "after the restart | changelog records the survivors were behind | load (1 min) | "
        "checks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in phases:
        s = summarize(p)
        behind_ = "–" if s["behind"] is None else f"{s['behind']:,.0f}"
        check = "ok" if p["ok"] else "**failed**" + (
            f": {p['error'][:160]}" if p.get("error") else "")
        lines.append(
            f"| {_phase_name(p, data)} | {_s(s['first_s'])} | {_s(s['all_held_s'])} | "
            f"{_s(s['whole_s'])} | {_s(s['restart_ready_s'])} | "
            f"{_s(s['all_whole_after_restart_s'])} | {behind_} | {s['load'] or '–'} | "
            f"{check} |")
    lines += ["", "## Against issue 23's targets", ""]
    at = _at(data, TARGET_N)
    if at:
        settings = sorted(at)
        lines += ["| target | " + " | ".join(f"standby {r}" for r in settings) + " |",
                  "|---|" + "---|" * len(settings)]

        def row(label: str, key: str, target: float) -> str:
            return f"| {label} | " + " | ".join(
                _verdict(at[r].get(key), target) for r in settings) + " |"

        lines += [
            row(f"{TARGET_N:,} open cases: first new case on the dead worker's partitions "
                f"≤ {TARGET_FIRST_S:g} s after the kill (median)", "first_s", TARGET_FIRST_S),
            row(f"… on every partition it held ≤ {TARGET_FIRST_S:g} s", "all_held_s",
                TARGET_FIRST_S),
            row(f"complete coverage again ≤ {TARGET_WHOLE_S:g} s after the kill", "whole_s",
                TARGET_WHOLE_S),
            row(f"restarted worker ready ≤ {TARGET_READY_S:g} s after its restart",
                "restart_ready_s", TARGET_READY_S),
        ]
    else:
        lines.append(f"(no phase at {TARGET_N:,} open cases in this run)")
    lines += ["", "## Every kill", "",
              "| phase | victim (held) | load | (a) first | (a) every held | (b) whole | "
              "survivors ready | rebalances seen by survivors | records behind (in bulk) | "
              "(c) restart to ready | all whole after restart |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in phases:
        for k in p["kills"]:
            lines.append(
                f"| {_phase_name(p, data)} | {k['victim']} {k['held']} | "
                f"{k.get('load') or '–'} | {_s(k.get('first_s'))} | "
                f"{_s(k.get('all_held_s'))} | {_s(k.get('whole_s'))} | "
                f"{_s(k.get('survivor_ready_s'))} | {k.get('rebalances', '–')} | "
                f"{k.get('behind', 0):,} ({k.get('bulk_records', 0):,} in "
                f"{k.get('bulk_seconds', 0):g} s) | {_s(k.get('restart_ready_s'))} | "
                f"{_s(k.get('all_whole_after_restart_s'))} |")
    lines += ["", "## Building, standbys catching up, rebalances under load", "",
              "| phase | workers start to ready | build | quiet after the build (standbys "
              "caught up) | rebalances during the build | trickle dispatched | city "
              "`received` on each worker at the end |",
              "|---|---|---:|---:|---:|---|---|"]
    for p in phases:
        b = p.get("build")
        c = p.get("checks") or {}
        built = "–" if not b else f"{b['seconds']:,.0f} s, {b['rate']:,.0f} cases/s"
        starts = ", ".join(f"{x:.1f}" for x in p.get("start_s") or [])
        lines.append(
            f"| {_phase_name(p, data)} | {starts or '–'} s | {built} | "
            f"{_s(p.get('quiet_after_build_s'))} | {p.get('build_rebalances', '–')} | "
            f"{c.get('trickle_dispatched', '–')}/{c.get('trickle_sent', '–')} | "
            f"{c.get('received', '–')} (want {c.get('expected_received', '–')}) |")
    lines += ["", "## faust's assignor: where the standbys are", "",
              "faust-streaming 0.15.3's `CopartitionedAssignor` (the one the workers run), on a "
              "fresh group of three, each worker dying in turn: the dead worker's partitions "
              "given to a survivor that held no standby copy of them (computed with faust's "
              "own classes, `bench.failover.cold_partitions`).", "",
              "| partitions | standby replicas | fresh assignment (actives / standbys) | "
              "partitions moved cold |", "|---:|---:|---|---:|"]
    for a in data.get("assignor") or []:
        asg = "; ".join(f"{w}: {v[0]} / {v[1]}" for w, v in a["assignment"].items())
        lines.append(f"| {a['partitions']} | {a['replicas']} | {asg} | "
                     f"{a['cold']} of {a['moved']} |")
    lines += ["", "## Reading", "", *_reading(data), ""]
    return page_text(lines, __doc__)


def _kills(data: dict[str, Any], standby: int | None = None, default_timing: bool = True
           ) -> list[dict[str, Any]]:
    return [k | {"n": p["n"], "standby": p["standby"]} for p in data["phases"]
            if _default_timing(p, data) == default_timing
            and (standby is None or p["standby"] == standby) for k in p["kills"]]


def _reading(data: dict[str, Any]) -> list[str]:
    """What the figures say, computed from them; then any notes recorded with the run."""
    out: list[str] = []
    at = _at(data, TARGET_N)
    for r, s in sorted(at.items()):
        out.append(
            f"- **{TARGET_N:,} open cases, standby {r}**: the first new case on the dead "
            f"worker's partitions {_s(s['first_s'])} after the kill, on the last of them "
            f"{_s(s['all_held_s'])} (target {TARGET_FIRST_S:g} s); the survivors were "
            f"{s['behind'] or 0:,.0f} changelog records behind on the partitions they took "
            f"(median); the city whole again after {_s(s['whole_s'])}; load {s['load']}.")
    zero = _at(data, 0)
    if zero:
        floor = min((s["survivor_ready_s"] for s in zero.values()
                     if s["survivor_ready_s"] is not None), default=None)
        out.append(
            f"- **The floor** (no open cases): survivors ready {_s(floor)} after the kill "
            f"at best. That is the group's timing, not the state: the broker notices the dead "
            f"member after its session ({data['session']:g} s), waits up to the rebalance "
            f"timeout ({data['rebalance']:g} s) for the members to rejoin, then the moved "
            "partitions are recovered and fetched. Standbys cannot cut this part; only the "
            "group timing can (below).")
    def is_cold(k: dict[str, Any]) -> bool:
        """Behind by at least one record per open case of a partition: a partition read
        from (nearly) its start, not a standby's tail."""
        return (k.get("behind") or 0) >= k["n"] / data["partitions"]

    warm = [k for k in _kills(data) if k["standby"] and k["n"] and not is_cold(k)]
    cold = [k for k in _kills(data, 0) if k["n"] == TARGET_N]
    if warm and cold:
        behind_ = [k.get("behind") or 0 for k in warm]
        out.append(
            f"- **A promoted standby reads only the tail**: in the {len(warm)} kills with "
            f"standbys and open cases where every moved partition went to a worker holding "
            f"its standby, the survivors were {min(behind_):,}–{max(behind_):,} changelog "
            f"records behind (median {med(behind_) or 0:,.0f}: what arrived since the "
            f"standby's last read). Without standbys at {TARGET_N:,} cases they were "
            f"{med([k.get('behind') for k in cold]) or 0:,.0f} behind (median), read by the "
            "bulk restore (engine/runtime/kafka/recovery.py) at "
            + ", ".join(f"{k['bulk_records'] / k['bulk_seconds']:,.0f} records/s (load "
                        f"{k['load']})" for k in cold if k.get("bulk_seconds"))
            + ": the bulk restore is what keeps even a cold takeover of 100,000 cases within "
            "seconds; faust's own replay (~110 µs a record, NOTES.md) would take ~45 s.")
    one = next((a for a in data.get("assignor") or []
                if a["partitions"] == data["partitions"] and a["replicas"] == 1), None)
    if one:
        ones = [k for k in _kills(data, 1) if k["n"]]
        out.append(
            f"- **One standby is not a warm copy of everything with three workers**: faust's "
            f"assignor gives a worker's partitions' standbys to one other worker, and on a "
            f"kill that worker may take only as many actives as balance allows, so "
            f"{one['cold']} of the {one['moved']} moved partitions go to a worker without a "
            f"copy (table above); here {sum(map(is_cold, ones))} of the {len(ones)} kills "
            "with one standby and open cases read a partition from its start (later "
            "assignments differ from a fresh group's: faust keeps them sticky across the "
            "restarts). `ZHIDA_STANDBY_REPLICAS` = workers − 1 (2 for three) leaves none "
            "cold, at the price of every worker applying every partition's changelog; with "
            "two workers, 1 is already that.")
    for p in (p for p in data["phases"] if not _default_timing(p, data) and p["kills"]):
        s = summarize(p)
        same = [k for k in _kills(data, p["standby"]) if k["n"]]
        ref = (f" (the engine's {data['session']:g} s / {data['rebalance']:g} s with the same "
               f"standbys and open cases: {_s(med([k.get('first_s') for k in same]))}, "
               f"survivors ready {_s(med([k.get('survivor_ready_s') for k in same]))})"
               if same else "")
        out.append(
            f"- **Session {p['session']:g} s / rebalance {p['rebalance']:g} s** "
            f"({p['n']:,} open, standby {p['standby']}): first new case {_s(s['first_s'])}, "
            f"survivors ready {_s(s['survivor_ready_s'])}{ref}. "
            f"{p.get('build_rebalances', '–')} rebalance(s) while the build kept the machine "
            f"busy ({(p.get('build') or {}).get('seconds', '–')} s, load "
            f"{p.get('load_start')}), {s['rebalances']} per kill as expected (one per "
            "survivor): no false eviction seen. The risk is the margin: with the engine's "
            "1 s heartbeat a member whose heartbeats stall for about a session (a starved "
            "process on a saturated machine, a long pause) is evicted, and an eviction is "
            "a failover of its partitions. Real Kafka refuses sessions under "
            "`group.min.session.timeout.ms` (6 s by default), so there the levers are "
            "standbys and static membership.")
    notes = data.get("notes")
    if isinstance(notes, list):
        out += [str(x) for x in notes]
    return out or ["(nothing measured)"]


def load(path: Path) -> dict[str, Any]:
    return orjson.loads(path.read_bytes())


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser("bench.failover", __doc__)

    def ints(s: str) -> list[int]:
        return [int(x.replace("_", "").replace("k", "000")) for x in s.split(",") if x]

    p.add_argument("--cases", type=ints, default=[0, 10_000, 300_000])
    p.add_argument("--standby", type=ints, default=[0, 1, 2])
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--rate", type=float, default=20.0, help="trickle complaints a second")
    p.add_argument("--window", type=int, default=20_000)
    p.add_argument("--timeout", type=float, default=180.0, help="per measured step, s")
    p.add_argument("--quiet-timeout", type=float, default=600.0)
    p.add_argument("--short-session", type=float, default=1.5,
                   help="session timeout of the last phase, s (0: skip it)")
    p.add_argument("--short-rebalance", type=float, default=1.0,
                   help="rebalance timeout of the last phase, s")
    p.add_argument("--short-session-cases", type=int, default=50_000)
    p.add_argument("--short-session-standby", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--render-from", type=Path, metavar="RESULTS_JSON",
                   help="render the page from a run's results.json and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render_from:
        write_page(args.out, render(load(args.render_from)))
        return 0
    try:
        return asyncio.run(run(args))
    except Failed as e:
        print(f"failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        stop_all_children()
        check_sessions()
        return 130


if __name__ == "__main__":
    sys.exit(main())
