"""The benchmarks' engine workers, each an engine/tools/process.py ``WorkerProcess``.

- :class:`BenchWorker`: app id, topic prefix, data dir and HTTP port fixed, as a restarted
  worker keeps its configuration; each start a new process in its own session (recorded in
  ``bench.harness.SESSIONS``), with a log file of its own.
- :class:`EngineRun`: one fresh worker for one measurement (bench/run.py and the benchmarks on
  one worker: directives, storm, signed, merge_cost).
- :class:`Member` and :class:`Group`: several workers of one consumer group (bench/failover.py,
  bench/capacity.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from bench.harness import (
    ROOT,
    SESSIONS,
    Failed,
    cpu_ticks,
    http_json,
    metric_total,
)
from engine.data.topology import CITY_TOPIC_KEY, Topology
from engine.tools.broker import free_port
from engine.tools.process import WorkerError, WorkerProcess
from topics import TopicNames

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.run import Ctx

CITY = "500000"
QUIET_CPU = 0.33  # of one core, per worker: standbys caught up, nothing queued
OPENED = ("dispatched", "triaged")  # case events that mean "a new case went out"


def no_merge_policy(workdir: Path) -> Path:
    """The benchmarks' policy: merging off, so every complaint is its own case and gets its
    own order (the workload reuses categories and streets; with 一事多诉 on, some would join
    a neighbour's case). The merge path is measured by the storm test (docs/benchmarks.md)."""
    path = workdir / "policy-no-merge.toml"
    if not path.exists():
        path.write_text('[policy]\nmerge_window = "PT0S"\n', encoding="utf-8")
    return path


class BenchWorker:
    """An engine worker of a benchmark; ``launch`` starts a new process on the same data dir
    and port, named and logged as ``start_name`` and ``start_log`` say for that start."""

    def __init__(self, bootstrap: str, data_dir: Path, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.process = WorkerProcess(bootstrap, free_port(), data_dir, log_path, env=env,
                                     cwd=ROOT, sessions=SESSIONS)

    def start_name(self, start: int) -> str:
        return f"worker#{start}"

    def start_log(self, start: int) -> Path:
        return self.process.log_path

    @property
    def port(self) -> int:
        return self.process.http_port

    @property
    def data_dir(self) -> Path:
        return self.process.data_dir

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    @property
    def starts(self) -> int:
        return self.process.starts

    def launch(self) -> None:
        n = self.process.starts + 1
        self.process.spawn(self.start_log(n), self.start_name(n))

    def alive(self) -> bool:
        return self.process.alive()

    def url(self, path: str) -> str:
        return self.process.url(path)

    def tail(self) -> str:
        return self.process.log_tail()

    async def ready(self, timeout: float, poll: float = 0.1,
                    waiting: Callable[[float], None] | None = None) -> float:
        """Seconds from this process's start to ``/readyz`` 200; Failed if it exits first
        or is not ready in ``timeout`` s."""
        try:
            return await self.process.ready(timeout, poll, waiting)
        except WorkerError as e:
            raise Failed(str(e)) from None

    async def metrics(self, timeout: float = 5.0) -> str:
        return await asyncio.to_thread(self.process.metrics, timeout)

    def kill(self) -> None:
        """SIGKILL the worker's whole session and reap it."""
        self.process.kill()

    def stop(self, grace: float = 10.0) -> dict[str, Any]:
        return self.process.stop(grace).figures() if self.process.proc is not None else {}


class EngineRun(BenchWorker):
    """One fresh engine worker: own app id, topic prefix and data dir."""

    def __init__(self, ctx: Ctx, label: str, policy: Path | None = None) -> None:
        self.ctx = ctx
        self.label = label
        self.policy = policy  # default: merging off (no_merge_policy)
        self.env: dict[str, str] = {}  # more settings for this worker (ZHIDA_*)
        self.prefix = f"{ctx.tag}{label}."
        self.app_id = f"bench-{ctx.tag}{label}"
        self.names = TopicNames(self.prefix)
        super().__init__(ctx.bootstrap, ctx.workdir / f"engine-{label}",
                         ctx.workdir / f"engine-{label}.log")
        self.startup: float | None = None
        self.stopped = False

    def start_name(self, start: int) -> str:
        return f"engine worker {self.label}"

    def dispatch_topics(self) -> list[str]:
        return [self.names.dispatch(d) for d in (*self.ctx.topology.districts, CITY_TOPIC_KEY)]

    async def start(self, timeout: float = 120.0) -> None:
        self.process.env = {
            "ZHIDA_APP_ID": self.app_id, "ZHIDA_PREFIX": self.prefix,
            "ZHIDA_POLICY": str(self.policy or no_merge_policy(self.ctx.workdir)), **self.env}
        self.launch()
        self.startup = await self.ready(timeout)

    def stop(self, grace: float = 10.0) -> dict[str, Any]:
        """Idempotent: what stopping did the first time, nothing after."""
        if self.process.proc is None or self.stopped:
            return {}
        self.stopped = True
        out = super().stop(grace)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return out


class Member(BenchWorker):
    """One worker of a group: its port and data dir survive restarts; each start logs to a
    file of its own."""

    def __init__(self, group: Group, index: int) -> None:
        self.group = group
        self.index = index
        super().__init__(group.bootstrap, group.workdir / f"{group.tag}-data-{index}",
                         self.start_log(0), group.env)

    @property
    def name(self) -> str:
        return f"w{self.index}"

    def start_name(self, start: int) -> str:
        return f"{self.group.tag} worker {self.index}#{start}"

    def start_log(self, start: int) -> Path:
        return self.group.workdir / f"{self.group.tag}-w{self.index}-{start}.log"

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    async def ready(self, timeout: float, poll: float = 0.05,
                    waiting: Callable[[float], None] | None = None) -> float:
        return await super().ready(timeout, poll, waiting)

    async def city(self) -> dict[str, Any] | None:
        status, body = await asyncio.to_thread(http_json, self.url(f"/units/{CITY}/stats"))
        return body if status == 200 else None

    def log_events(self, since: float, log_path: Path | None = None) -> list[dict[str, Any]]:
        """The JSON log lines of a start at or after ``since`` (epoch seconds)."""
        out: list[dict[str, Any]] = []
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
                before = {m.index: cpu_ticks(m.pid) for m in self.members if m.starts}
                await asyncio.sleep(3.0)
                busy = []
                for m in self.members:
                    a, b = before.get(m.index), cpu_ticks(m.pid)
                    busy.append(None if a is None or b is None else (b - a) / tick / 3.0)
                if all(x is not None and x < QUIET_CPU for x in busy):
                    return time.perf_counter() - t0
            else:
                await asyncio.sleep(0.5)
            for m in self.members:
                if not m.alive():
                    raise Failed(f"{m.name} died while waiting for quiet\n{m.tail()}")
        raise Failed(f"{self.tag}: not quiet in {timeout:.0f} s")

    def stop(self) -> None:
        for m in self.members:
            m.stop(10.0)
