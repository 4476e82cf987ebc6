"""`zhida demo` runs broker + worker + simulator, prints a summary and leaves nothing running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.helpers import POLL_PROCESS

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 150.0


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, state, start time in clock ticks) of a process, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """pid -> start time of every live process below ``root``."""
    tree: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := _stat(int(d.name))) is not None:
            tree.setdefault(st[0], []).append(int(d.name))
            starts[int(d.name)] = st[2]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in tree.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def alive(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[2] == start and st[1] != "Z"


def cmdlines_containing(*needles: str) -> list[str]:
    hits = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            st = _stat(int(d.name))
            if st and st[1] != "Z" and any(n in cmd for n in needles):
                hits.append(f"{d.name}: {cmd}")
    return hits


def count(label: str, text: str) -> int:
    m = re.search(rf"^\s*{label}\s+(\d+)", text, re.MULTILINE)
    assert m, f"no {label!r} line in:\n{text}"
    return int(m.group(1))


def test_demo_runs_the_closed_loop_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}  # the demo's working directory lands in here
    seen: dict[int, int] = {}
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.tools.cli", "demo", "--rate", "20", "--duration", "5",
             "--drain", "10", "--speed", "600"],
            cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + TIMEOUT
        try:
            while proc.poll() is None:  # watch its children while it runs
                assert time.monotonic() < deadline, "demo did not finish in time"
                seen.update(descendants(proc.pid))
                time.sleep(POLL_PROCESS)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    stdout = out_path.read_text(encoding="utf-8")
    stderr = err_path.read_text(encoding="utf-8")
    report = f"exit {proc.returncode}\n--- stdout\n{stdout}\n--- stderr\n{stderr[-4000:]}"
    assert proc.returncode == 0, report

    assert count("dispatched", stdout) > 0, report
    assert count("closed", stdout) > 0, report
    assert count("received", stdout) >= 100, report
    assert count("hotspots", stdout) >= 0 and count("disputes", stdout) >= 0, report  # insights
    assert re.search(r"intake→dispatch latency: p50 [\d.]+ ms, p99 [\d.]+ ms", stdout), report
    assert re.search(r"busiest districts \(case orders\): \S+区 \d+", stdout), report
    assert "no process left running" in stdout, report

    # nothing it started is still alive: neither the processes seen below it while it ran
    # (the broker and the worker), nor anything naming its directory or its broker's port
    assert len(seen) >= 2, f"expected broker and worker below the demo, saw {seen}"
    assert not [p for p, start in seen.items() if alive(p, start)], report
    port = re.search(r"broker: embedded Tansu on 127\.0\.0\.1:(\d+)", stderr)
    assert port, report
    assert not cmdlines_containing(str(tmp), f"tcp://127.0.0.1:{port.group(1)}")
    assert not list(tmp.glob("zhida-demo-*")), "the demo directory was not removed"
