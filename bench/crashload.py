"""Crash-under-load proof, black box: SIGKILL the worker under load, then check every output.

Written against the integration contract only (``../shared/CONTRACT.md``): what goes in on
``zhida.intake.complaints``, ``zhida.intake.directives`` and ``zhida.unit.updates``, what must
come out on ``zhida.case.events``, ``zhida.directive.events``, ``zhida.dispatch.*``,
``zhida.citizen.notifications`` and ``zhida.deadletter``. Nothing here reads the engine's state
or internal topics. In four modules:

- bench/crashload_load.py, what is sent: :class:`Load` (complaints at a steady rate, directives
  to 3-20 streets, and the units' acks, resolves and reports as their orders and events come
  back, some of them forged) and the ``Sent*`` records of it;
- bench/crashload_read.py, what is read back: :class:`Reader`, every output topic from offset
  0 by librdkafka (no code shared with the engine's client), each a :class:`Record`;
- bench/crashload_check.py, how it is judged: :func:`check`, a pure function over what was
  sent and what was read, its :class:`Report` and its rules;
- here, the run: :class:`CrashRun` starts the workers (engine/tools/process.py
  ``WorkerProcess``, merging off unless ``worker_env`` sets a policy), runs the load, SIGKILLs
  a worker's process group on a schedule and restarts it on the same data dir, then waits
  (condition with a deadline) until the outputs are complete and checks them; with several
  workers of one group they are killed in turn, each down for a while.

Soak: ``python -m bench.crashload --duration 300 --kill-every 20 --rate 100`` (``make
bench-crash``). The tests are tests/integration/test_crash.py (one worker) and
test_crash_workers.py (three); bench/cityday.py builds the city day on this run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.crashload_check import Report, check
from bench.crashload_load import Load, SentLog
from bench.crashload_read import TOPO, Reader
from bench.harness import ROOT
from bench.workers import no_merge_policy
from engine.tools.broker import EmbeddedBroker, free_port
from engine.tools.process import WorkerProcess

READY_POLL = 0.1  # seconds between /readyz polls of a (re)started worker
STOP_GRACE = 15.0  # seconds a stopped worker has to exit before SIGKILL


@dataclass
class CrashConfig:
    duration: float = 60.0  # seconds of load (extended to cover the last restart + tail)
    kill_every: float = 20.0
    rate: float = 100.0  # complaints per second (updates come on top, up to 2 per case)
    kills: int | None = None  # exact number of kills; None: every kill_every within duration
    min_uptime: float = 3.0  # never kill sooner than this after the worker became ready
    jitter: float = 2.0  # each kill comes up to this much later (seeded), to vary its phase
    tail: float = 5.0  # load keeps running this long after the last restart is ready
    ready_timeout: float = 60.0
    drain_timeout: float = 60.0  # hard cap on the wait for the outputs after the load
    drain_stall: float = 15.0  # ...which ends sooner once no new output has come for this long
    forge_every: int = 10  # one case (and one directive task) in N gets a forged ack (0: none)
    directive_every: int = 50  # a directive to 3-20 streets every N complaints (0: none)
    report_every: int = 3  # one directive in N asks for a report (report_by)
    silent_every: int = 5  # one directive in N has a target that never acks (never completes)
    seed: int | None = None
    progress_every: float = 5.0
    worker_env: dict[str, str] = field(default_factory=dict)
    workers: int = 1  # workers of one group; with several, they are killed in turn
    down: float = 5.0  # with several workers: seconds a killed one stays down


@dataclass
class Kill:
    at: float  # seconds since the load started
    uptime: float  # seconds the worker had been ready
    restart_to_ready: float  # from the new process's spawn to /readyz 200
    worker: int = 0


@dataclass
class CrashResult:
    config: CrashConfig
    report: Report
    kills: list[Kill]
    first_ready: float  # fresh start to /readyz
    load_seconds: float
    drain_seconds: float  # load stopped → outputs complete (or the drain timeout)
    drain_complete: bool
    total_seconds: float
    load_counts: dict[str, int]
    reader_errors: list[str]
    workdir: str
    not_ready_at_end: list[str] = field(default_factory=list)  # "w1: 503 consumer stalled…"
    extra: dict[str, Any] = field(default_factory=dict)  # a subclass run's own figures

    def summary(self) -> str:
        c = self.config
        rs = [k.restart_to_ready for k in self.kills]
        lines = [
            f"crash run: rate {c.rate:g}/s, {len(self.kills)} SIGKILLs, "
            f"load {self.load_seconds:.1f} s, total {self.total_seconds:.1f} s "
            f"(workdir {self.workdir})",
            f"fresh start to ready: {self.first_ready:.1f} s"
            + (f" ({c.workers} workers, each down {c.down:g} s after its kill)"
               if c.workers > 1 else ""),
        ]
        for i, k in enumerate(self.kills, 1):
            who = f"w{k.worker} " if c.workers > 1 else ""
            lines.append(f"kill {i} {who}at {k.at:6.1f} s (up {k.uptime:5.1f} s): "
                         f"restart to ready {k.restart_to_ready:5.1f} s")
        if rs:
            lines.append(f"restart to ready: min {min(rs):.1f} s, max {max(rs):.1f} s, "
                         f"mean {sum(rs) / len(rs):.1f} s")
        lines.append(f"drain: {'complete' if self.drain_complete else 'NOT complete'} after "
                     f"{self.drain_seconds:.1f} s")
        if self.not_ready_at_end:
            lines.append(f"not ready at the end: {'; '.join(self.not_ready_at_end)}")
        if self.reader_errors:
            lines.append(f"reader errors: {len(self.reader_errors)}: {self.reader_errors[:3]}")
        lines.append(self.report.summary())
        lines.append("RESULT: " + ("OK" if self.report.ok else "VIOLATIONS"))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "kills": [asdict(k) for k in self.kills],
                "first_ready": self.first_ready, "load_seconds": self.load_seconds,
                "drain_seconds": self.drain_seconds, "drain_complete": self.drain_complete,
                "total_seconds": self.total_seconds, "load_counts": self.load_counts,
                "reader_errors": self.reader_errors[:20],
                "not_ready_at_end": self.not_ready_at_end,
                "report": self.report.to_json(),  # not the work dir: a path on one machine
                **({"extra": self.extra} if self.extra else {})}


class CrashRun:
    def __init__(self, bootstrap: str, workdir: Path, config: CrashConfig,
                 progress: Callable[[str], None] | None = None) -> None:
        self.bootstrap = bootstrap
        self.workdir = Path(workdir)
        self.cfg = config
        self._progress = progress or (lambda _msg: None)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # merging off (every complaint its own case and order) unless worker_env says otherwise
        env = {"ZHIDA_POLICY": str(no_merge_policy(self.workdir)), **config.worker_env}
        if config.workers == 1:  # the single worker's paths, as they always were
            self.workers = [WorkerProcess(bootstrap, free_port(), self.workdir / "data",
                                          self.workdir / "worker.log", env=env, cwd=ROOT)]
        else:
            self.workers = [WorkerProcess(bootstrap, free_port(), self.workdir / f"w{i}" / "data",
                                          self.workdir / f"w{i}.log", env=env, cwd=ROOT,
                                          name=f"w{i}")
                            for i in range(config.workers)]
        self.kills: list[Kill] = []
        self._t0 = 0.0
        self._load_t0 = 0.0
        self._ready_at = [0.0] * config.workers
        self._restarts: dict[int, asyncio.Task[None]] = {}  # several workers: ones down
        self._phase = "starting"

    @property
    def worker(self) -> WorkerProcess:
        return self.workers[0]

    def log(self, msg: str) -> None:
        self._progress(f"[crash {time.monotonic() - self._t0:7.1f}s] {msg}")

    def _kill(self, i: int) -> tuple[float, float]:
        """SIGKILL worker ``i``'s process group: (seconds into the load, its uptime)."""
        w = self.workers[i]
        if not w.alive():
            raise RuntimeError(f"w{i} exited by itself ({w.returncode}); its log ends with:\n"
                               f"{w.log_tail()}")
        at = time.monotonic() - self._load_t0
        uptime = time.monotonic() - self._ready_at[i]
        w.kill()
        return at, uptime

    def _start(self, i: int) -> float:
        """Start worker ``i`` and wait for /readyz: seconds from spawn to ready."""
        t = time.monotonic()
        self.workers[i].start(self.cfg.ready_timeout, READY_POLL)
        self._ready_at[i] = time.monotonic()
        return self._ready_at[i] - t

    def _kill_and_restart(self) -> Kill:
        at, uptime = self._kill(0)
        return Kill(at, uptime, self._start(0))

    async def _kill_then_restart_later(self, i: int) -> None:
        """Several workers: kill one now, restart it ``down`` s later while the others
        keep their partitions (the case a single worker cannot show)."""
        at, uptime = await asyncio.to_thread(self._kill, i)
        self.log(f"SIGKILL w{i}; restart in {self.cfg.down:g} s")

        async def restart() -> None:
            await asyncio.sleep(self.cfg.down)  # the schedule: a worker down for a while
            took = await asyncio.to_thread(self._start, i)
            self.kills.append(Kill(at, uptime, took, i))
            self.log(f"w{i} ready again after {took:.1f} s")

        self._restarts[i] = asyncio.create_task(restart())

    async def _report_progress(self, load: Load, reader: Reader) -> None:
        """A progress line every ``progress_every`` s until the load stops (a period, not a
        synchronisation: the run waits on its own conditions)."""
        while not load._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(load._stop.wait(), self.cfg.progress_every)
            self.log(f"{self._phase}: sent {load.progress_line()}; "
                     f"read {len(reader)} outputs; kills {len(self.kills)}")

    async def run(self) -> CrashResult:
        cfg = self.cfg
        self._t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        reader: Reader | None = None
        load: Load | None = None
        load_task: asyncio.Task[None] | None = None
        progress_task: asyncio.Task[None] | None = None
        try:
            await asyncio.gather(*(asyncio.to_thread(self._start, i)
                                   for i in range(len(self.workers))))
            first_ready = max(self._ready_at) - self._t0
            self.log(f"{len(self.workers)} worker(s) ready in {first_ready:.1f} s (http "
                     f"{', '.join(str(w.http_port) for w in self.workers)})")
            reader = await asyncio.to_thread(Reader(self.bootstrap).start)
            load = self._make_load(reader)
            self._load_t0 = time.monotonic()
            load_task = asyncio.create_task(load.run())
            progress_task = asyncio.create_task(self._report_progress(load, reader))
            self._phase = "load"
            end = self._load_t0 + cfg.duration
            rng = random.Random(cfg.seed)
            next_kill = self._load_t0 + cfg.kill_every + rng.uniform(0, cfg.jitter)

            several = len(self.workers) > 1
            killed = 0  # kills made (with several workers, restarts may still be pending)

            def more_kills() -> bool:
                if cfg.kills is not None:
                    return killed < cfg.kills
                return next_kill < end

            while True:
                if load_task.done():
                    load_task.result()  # raises the load's error
                    raise RuntimeError("load stopped by itself")
                now = time.monotonic()
                victim = killed % len(self.workers)
                if more_kills() and now >= next_kill and several:
                    pending = self._restarts.get(victim)
                    if pending is not None and not pending.done():  # still down: wait for it
                        await asyncio.wait({pending, load_task},
                                           return_when=asyncio.FIRST_COMPLETED)
                        continue
                    if now < self._ready_at[victim] + cfg.min_uptime:
                        next_kill = self._ready_at[victim] + cfg.min_uptime
                        continue
                    await self._kill_then_restart_later(victim)
                    killed += 1
                    next_kill += cfg.kill_every + rng.uniform(0, cfg.jitter)
                    continue
                if more_kills() and now >= next_kill:
                    self._phase = "restarting"
                    self.log(f"SIGKILL worker process group {self.worker.pid}")
                    k = await asyncio.to_thread(self._kill_and_restart)
                    self.kills.append(k)
                    killed += 1
                    self._phase = "load"
                    self.log(f"kill {len(self.kills)}: ready again after "
                             f"{k.restart_to_ready:.1f} s")
                    next_kill = (max(next_kill + cfg.kill_every,
                                     self._ready_at[0] + cfg.min_uptime)
                                 + rng.uniform(0, cfg.jitter))
                    continue
                pending_restarts = [t for t in self._restarts.values() if not t.done()]
                if not more_kills() and pending_restarts:
                    await asyncio.wait({*pending_restarts, load_task},
                                       return_when=asyncio.FIRST_COMPLETED)
                    continue
                for t in self._restarts.values():
                    if t.done():
                        t.result()  # a restart that failed fails the run
                stop_at = max(end, max(self._ready_at) + cfg.tail) if killed else end
                if not more_kills() and now >= stop_at:
                    break
                wake = min(next_kill, stop_at) if more_kills() else stop_at
                # the schedule's next point, or at once if the load dies before it
                await asyncio.wait({load_task}, timeout=max(0.0, wake - now))
            load.stop()
            await load_task
            load_seconds = time.monotonic() - self._load_t0
            self._phase = "drain"
            self.log(f"load stopped after {load_seconds:.1f} s; waiting for the outputs")
            sent = load.sent()
            drain_t0 = time.monotonic()
            report = await self._drain(load, sent, reader)
            drain_seconds = time.monotonic() - drain_t0
            self.log(f"drain {'complete' if report.complete else 'timed out'} after "
                     f"{drain_seconds:.1f} s")
            extra = await self._finish(load, reader, report)
            not_ready = await asyncio.to_thread(self._not_ready)
            return CrashResult(
                config=cfg, report=report, kills=list(self.kills), first_ready=first_ready,
                load_seconds=load_seconds, drain_seconds=drain_seconds,
                drain_complete=report.complete, total_seconds=time.monotonic() - self._t0,
                load_counts=load.counts(), reader_errors=list(reader.errors),
                workdir=str(self.workdir), not_ready_at_end=not_ready, extra=extra)
        finally:
            if progress_task is not None:
                progress_task.cancel()
            if load is not None:
                load.stop()
            if load_task is not None and not load_task.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(load_task, 10)
            if reader is not None:
                await asyncio.to_thread(reader.stop)
            for t in self._restarts.values():
                t.cancel()
            await asyncio.gather(*self._restarts.values(), return_exceptions=True)
            await asyncio.to_thread(self._stop_workers)

    def _make_load(self, reader: Reader) -> Load:
        """The load of the run; a subclass brings its own (bench/cityday.py)."""
        cfg = self.cfg
        return Load(self.bootstrap, reader, cfg.rate, forge_every=cfg.forge_every,
                    directive_every=cfg.directive_every, report_every=cfg.report_every,
                    silent_every=cfg.silent_every, seed=cfg.seed)

    async def _drain(self, load: Load, sent: SentLog, reader: Reader) -> Report:
        """Wait, after the load, until the outputs are complete (or stop coming); the report."""
        cfg = self.cfg
        drain_t0 = time.monotonic()
        deadline = drain_t0 + cfg.drain_timeout
        # a worker still catching up on its downtime's backlog is waited for (to the cap);
        # one that has stopped producing is not: the wait ends drain_stall after the last
        # new output, so a real loss fails fast and a slow machine does not fail at all
        seen, last_new = -1, drain_t0
        while True:
            outputs = reader.snapshot()
            now = time.monotonic()
            if len(outputs) != seen:
                seen, last_new = len(outputs), now
            report = check(sent, outputs, TOPO)
            if report.complete or now >= deadline or now - last_new >= cfg.drain_stall:
                return report
            # re-check when more outputs have come (or the stall/deadline is reached)
            await asyncio.to_thread(reader.wait_for_more, seen,
                                    min(deadline, last_new + cfg.drain_stall) - now)

    async def _finish(self, load: Load, reader: Reader, report: Report) -> dict[str, Any]:
        """After the drain, before the workers stop: a subclass's own measurements (kept in
        ``CrashResult.extra``)."""
        return {}

    def _not_ready(self) -> list[str]:
        """Workers whose /readyz is not 200 after the drain (a stalled partition says so)."""
        out = []
        for i, w in enumerate(self.workers):
            try:
                status, body = w.get("/readyz")
            except OSError as e:
                status, body = 0, repr(e).encode()
            if status != 200:
                out.append(f"w{i}: {status} {body[:200].decode('utf-8', 'replace')}")
        return out

    def _stop_workers(self) -> None:
        """SIGINT, then SIGKILL to the session of any worker not gone after ``STOP_GRACE``."""
        for w in self.workers:
            w.stop(STOP_GRACE)


# ---------------------------------------------------------------------------- soak entry point


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.crashload",
        description="SIGKILL the worker under load on a fresh embedded broker, then check "
                    "every output against the contract (lost, gaps, forks, dead letters).")
    p.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    p.add_argument("--kill-every", type=float, default=20.0, help="seconds between SIGKILLs")
    p.add_argument("--kills", type=int, default=None,
                   help="exact number of kills (default: every --kill-every within --duration)")
    p.add_argument("--rate", type=float, default=100.0, help="complaints per second")
    p.add_argument("--forge-every", type=int, default=10,
                   help="one case (and one directive task) in N gets a forged ack that must "
                        "be dead-lettered (0: none)")
    p.add_argument("--directive-every", type=int, default=50,
                   help="a directive to 3-20 random streets every N complaints (0: none)")
    p.add_argument("--report-every", type=int, default=3,
                   help="one directive in N asks for a report (report_by far ahead)")
    p.add_argument("--silent-every", type=int, default=5,
                   help="one directive in N has a target that never acks (must not complete)")
    p.add_argument("--min-uptime", type=float, default=3.0,
                   help="never kill sooner than this after the worker is ready")
    p.add_argument("--jitter", type=float, default=2.0,
                   help="each kill comes up to this many seconds later (random phase)")
    p.add_argument("--ready-timeout", type=float, default=60.0)
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument("--drain-stall", type=float, default=15.0,
                   help="the drain ends this long after the last new output")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workers", type=int, default=1,
                   help="workers of one group, killed in turn (default 1)")
    p.add_argument("--down", type=float, default=5.0,
                   help="with several workers: seconds a killed worker stays down")
    p.add_argument("--workdir", type=Path, default=None,
                   help="worker data dir and logs (default var/crashload/<time>)")
    p.add_argument("--json", type=Path, default=None, help="write a JSON summary here")
    args = p.parse_args(argv)

    workdir = args.workdir or ROOT / "var" / "crashload" / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = CrashConfig(duration=args.duration, kill_every=args.kill_every, rate=args.rate,
                      kills=args.kills, min_uptime=args.min_uptime, jitter=args.jitter,
                      ready_timeout=args.ready_timeout, drain_timeout=args.drain_timeout,
                      drain_stall=args.drain_stall, forge_every=args.forge_every,
                      directive_every=args.directive_every,
                      report_every=args.report_every, silent_every=args.silent_every,
                      seed=args.seed, workers=args.workers, down=args.down)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
    progress(f"broker on {broker.bootstrap}, workdir {workdir}")
    try:
        result = asyncio.run(CrashRun(broker.bootstrap, workdir, cfg, progress).run())
    finally:
        proc = broker.proc
        broker.stop()
        if proc is not None and proc.poll() is None:
            progress(f"broker pid {proc.pid} still running after stop")
    print(result.summary())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2))
        print(f"JSON summary: {args.json}")
    return 0 if result.report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
