"""One way to run a ``zhida worker`` process: start it, wait until it is ready, stop, kill.

- :class:`Process`: a child in its own session (process group), its output appended to a log
  file; stopped with a signal (SIGINT by default: the worker stops gracefully on SIGINT and
  SIGTERM alike), a bounded wait, then SIGKILL to its whole session; or SIGKILLed at once.
- :class:`WorkerProcess`: ``python -m engine.tools.cli worker`` on a broker, an HTTP port and a
  data dir, with its environment; ready when ``GET /readyz`` answers 200 (a sync and an async
  wait); restarted on the same data dir and port, as a restarted worker keeps its
  configuration.
- :class:`Sessions`: the sessions a program started, to stop those still running (Ctrl-C) and
  to find any left at the end.

Used by ``zhida demo`` (engine/tools/demo.py) and the benchmarks (bench/workers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

STOP_GRACE = 10.0  # seconds a stopped process has to exit before SIGKILL
READY_TIMEOUT = 60.0


class WorkerError(RuntimeError):
    """The worker exited before it was ready, or was not ready in time."""


class WorkerExited(WorkerError):
    pass


class WorkerNotReady(WorkerError, TimeoutError):
    pass


@dataclass(frozen=True)
class Stopped:
    """What stopping a process did."""

    how: str  # "not started", "had exited (1)", "stopped", "killed after 10 s"
    seconds: float
    killed: bool
    returncode: int | None

    def figures(self) -> dict[str, Any]:
        """As a benchmark records it."""
        return {"stop_seconds": self.seconds, "killed": self.killed,
                "returncode": self.returncode}


class Process:
    """A child process in its own session, its output appended to ``log_path``."""

    def __init__(self, argv: Sequence[str], log_path: Path, *,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 name: str = "process", sessions: Sessions | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env or {})  # on top of this process's environment
        self.cwd = cwd
        self.name = name
        self.sessions = sessions
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0  # time.perf_counter() at the last spawn
        self.starts = 0

    def command(self) -> list[str]:
        return self.argv

    def spawn(self, log_path: Path | None = None, name: str | None = None) -> Self:
        """Start a new process (a new log file and name for this start if given); no wait."""
        if log_path is not None:
            self.log_path = log_path
        if name is not None:
            self.name = name
        self.starts += 1
        self.started = time.perf_counter()
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(self.command(), cwd=self.cwd, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={**os.environ, **self.env},
                                         start_new_session=True)
        if self.sessions is not None:
            self.sessions.add(self)
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole session and reap the process."""
        if self.sessions is not None:
            self.sessions.discard(self)
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, grace: float = STOP_GRACE, sig: int = signal.SIGINT) -> Stopped:
        """``sig``, up to ``grace`` s for the process to exit, then SIGKILL to its session
        (and to anything else left in it)."""
        if self.sessions is not None:
            self.sessions.discard(self)
        proc = self.proc
        if proc is None:
            return Stopped("not started", 0.0, False, None)
        if proc.poll() is not None:
            return Stopped(f"had exited ({proc.returncode})", 0.0, False, proc.returncode)
        t = time.perf_counter()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        killed = False
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            killed = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything else left in its session
        return Stopped(f"killed after {grace:g} s" if killed else "stopped",
                       round(time.perf_counter() - t, 2), killed, proc.returncode)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"


class WorkerProcess(Process):
    """``python -m engine.tools.cli worker`` on ``bootstrap``, its HTTP on ``http_port``, its
    state in ``data_dir``; ``env`` (``ZHIDA_*``) on top of this process's environment."""

    def __init__(self, bootstrap: str, http_port: int, data_dir: Path, log_path: Path, *,
                 env: Mapping[str, str] | None = None, policy: Path | None = None,
                 keys: Path | None = None, args: Sequence[str] = (), cwd: Path | None = None,
                 name: str = "worker", sessions: Sessions | None = None) -> None:
        super().__init__([], log_path, env=env, cwd=cwd, name=name, sessions=sessions)
        self.bootstrap = bootstrap
        self.http_port = http_port
        self.data_dir = data_dir
        self.policy = policy
        self.keys = keys
        self.args = list(args)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "engine.tools.cli", "worker", "--bootstrap", self.bootstrap,
               "--http-port", str(self.http_port), "--data-dir", str(self.data_dir)]
        if self.policy is not None:
            cmd += ["--policy", str(self.policy)]
        if self.keys is not None:
            cmd += ["--keys", str(self.keys)]
        return cmd + self.args

    # ---- HTTP

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """Status and body of ``GET path``; OSError when the worker does not answer."""
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def status(self, path: str, timeout: float = 2.0) -> int:
        """The status of ``GET path``, 0 when the worker does not answer."""
        try:
            return self.get(path, timeout)[0]
        except OSError:
            return 0

    def metrics(self, timeout: float = 5.0) -> str:
        """The ``/metrics`` text, empty when the worker does not answer."""
        try:
            status, body = self.get("/metrics", timeout)
        except OSError:
            return ""
        return body.decode() if status == 200 else ""

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
        return metric_sum(self.metrics(), name, **labels) or 0.0

    # ---- ready

    def _not_ready(self, timeout: float) -> WorkerError | None:
        if not self.alive():
            return WorkerExited(f"{self.name} exited with {self.returncode} before it was "
                                f"ready; its log ends with:\n{self.log_tail()}")
        if time.perf_counter() - self.started > timeout:
            return WorkerNotReady(f"{self.name} was not ready within {timeout:g} s (GET "
                                  f"{self.url('/readyz')}); its log ends with:\n"
                                  f"{self.log_tail()}")
        return None

    def wait_ready(self, timeout: float = READY_TIMEOUT, poll: float = 0.2) -> float:
        """Until ``/readyz`` answers 200: seconds from the spawn. WorkerExited when the
        process ends first, WorkerNotReady after ``timeout`` s."""
        while True:
            if self.alive() and self.status("/readyz") == 200:
                return time.perf_counter() - self.started
            if (error := self._not_ready(timeout)) is not None:
                raise error
            time.sleep(poll)

    async def ready(self, timeout: float = READY_TIMEOUT, poll: float = 0.1,
                    waiting: Callable[[float], None] | None = None) -> float:
        """``wait_ready`` for an event loop; ``waiting`` gets the seconds since the spawn
        after each poll that found the worker not ready yet."""
        while True:
            if self.alive() and await asyncio.to_thread(self.status, "/readyz") == 200:
                return time.perf_counter() - self.started
            if (error := self._not_ready(timeout)) is not None:
                raise error
            if waiting is not None:
                waiting(time.perf_counter() - self.started)
            await asyncio.sleep(poll)

    def start(self, timeout: float = READY_TIMEOUT, poll: float = 0.2) -> Self:
        """Spawn and wait until ready."""
        self.spawn()
        self.wait_ready(timeout, poll)
        return self

    def restart(self, timeout: float = READY_TIMEOUT, log_path: Path | None = None) -> float:
        """SIGKILL (if alive) and start again on the same data dir and port: seconds from
        the new spawn to ready."""
        if self.alive():
            self.kill()
        self.spawn(log_path)
        return self.wait_ready(timeout)


class Sessions:
    """The sessions (process groups) a program started: the running ones, stopped together
    on Ctrl-C, and every one, looked for at the end."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []  # (name, pid = pgid)
        self.running: list[Process] = []

    def __len__(self) -> int:
        return len(self.started)

    def add(self, process: Process) -> None:
        assert process.pid is not None
        self.running.append(process)
        self.started.append((process.name, process.pid))

    def add_pid(self, name: str, pid: int) -> None:
        """A session started elsewhere (an embedded broker), looked for at the end."""
        self.started.append((name, pid))

    def discard(self, process: Process) -> None:
        if process in self.running:
            self.running.remove(process)

    def stop_all(self, grace: float = 5.0) -> None:
        for process in list(self.running):
            process.stop(grace)

    def left(self) -> list[str]:
        """Names of the sessions started that still have a live process (killed now)."""
        out = []
        for name, pgid in self.started:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            out.append(name)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        return out


def metric_sum(text: str, name: str, **labels: str) -> float | None:
    """Sum of the samples of ``name`` in a Prometheus text whose labels include ``labels``
    (None when there is none)."""
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
