"""The operator tools against the real broker and worker: ``zhida tail``, ``case``,
``deadletters`` (list, resubmit a reason, resubmit a corrected body) and ``lag``; Ctrl-C
on a following ``tail`` and on a running worker ends without a traceback."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from engine.core.ids import case_id_for
from engine.tools.broker import EmbeddedBroker, free_port
from tests.support.broker import NAMES, ROOT, Collector, Worker
from tests.support.helpers import DISTRICT, POLL_PROCESS, STREET
from tests.support.messages import complaint, open_case, update

pytestmark = pytest.mark.integration


async def zhida(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    """Run the CLI without blocking the loop (the session's collector keeps reading)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.tools.cli", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_tail_follows_a_case_filtered_by_case_and_unit(kafka: Collector,
                                                              worker: Worker) -> None:
    case_id, _ = await open_case(kafka)
    await kafka.send(NAMES.unit_updates, update(case_id, STREET, "ack"), key=case_id)
    await kafka.events(case_id, 3)
    code, out, err = await zhida("tail", "case.events", "--bootstrap", worker.bootstrap,
                                 "--from-beginning", "--case", case_id, "--max", "3")
    assert code == 0, err
    events = [orjson.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert {e["case_id"] for e in events} == {case_id}
    assert [e["type"] for e in events] == ["created", "dispatched", "acknowledged"]
    # the full name, another topic, filtered by unit as well; --meta shows the envelope
    code, out, err = await zhida("tail", f"zhida.dispatch.{DISTRICT}", "--bootstrap",
                                 worker.bootstrap, "--from-beginning", "--case", case_id,
                                 "--unit", STREET, "--max", "1", "--meta")
    assert code == 0, err
    [order] = [orjson.loads(line) for line in out.splitlines()]
    assert order["topic"] == NAMES.dispatch(DISTRICT) and order["key"] == STREET
    assert order["value"]["target"] == STREET and order["value"]["case_id"] == case_id
    assert order["headers"]["ce_type"] == "zhida.dispatch.case"


async def test_case_prints_the_history_masked(kafka: Collector, worker: Worker) -> None:
    case_id, c = await open_case(kafka)
    await kafka.send(NAMES.unit_updates, update(case_id, STREET, "ack"), key=case_id)
    await kafka.events(case_id, 3)
    code, out, err = await zhida("case", case_id, "--url", worker.url(""))
    assert code == 0, err
    assert f"case        {case_id}" in out and "state       acknowledged" in out
    assert re.search(r"^\s+3\s+\S+\s+acknowledged\s+acknowledged\s+" + STREET, out, re.M), out
    assert "history     3 events" in out
    assert c["citizen"]["phone"] not in out and "139****9000" in out  # masked by the worker
    code, _, err = await zhida("case", "ZDNOSUCHCASE", "--url", worker.url(""))
    assert code == 1 and err.strip().splitlines() == [err.strip()] and "not found" in err


async def test_deadletters_list_then_resubmit_after_the_fix(kafka: Collector,
                                                            worker: Worker) -> None:
    # an update that arrived before its case existed: refused as unknown_case
    c = complaint()
    case_id = case_id_for("complaint", c["complaint_id"])
    early = update(case_id, STREET, "ack")
    await kafka.send(NAMES.unit_updates, early, key=case_id)
    await kafka.wait_for(lambda: [r for r in kafka.where(NAMES.deadletter, reason="unknown_case")
                                  if r.key == case_id])
    code, out, err = await zhida("deadletters", "--bootstrap", worker.bootstrap,
                                 "--show", "100000")
    assert code == 0, err
    assert re.search(r"^unknown_case\s+\d+$", out, re.M), out
    assert f"key={case_id}" in out
    # the fix: the case now exists; every unknown_case letter goes back to its topic
    await kafka.send(NAMES.complaints, c, key=c["complaint_id"])
    await kafka.events(case_id, 2)
    code, out, err = await zhida("deadletters", "--bootstrap", worker.bootstrap,
                                 "--resubmit", "unknown_case")
    assert code == 0, err
    m = re.match(r"resubmitted (\d+) of (\d+) dead letters? to", out)
    assert m and int(m.group(1)) >= 1, out
    assert f"→ {NAMES.unit_updates} key={case_id}" in out
    events = await kafka.events(case_id, 3)
    assert events[2]["type"] == "acknowledged" and events[2]["actor"] == STREET


async def test_deadletters_resubmit_one_corrected_body(kafka: Collector, worker: Worker,
                                                       tmp_path: Path) -> None:
    c = complaint(channel="carrier pigeon")
    await kafka.send(NAMES.complaints, c, key=c["complaint_id"])
    await kafka.wait_for(lambda: [r for r in kafka.where(NAMES.deadletter, reason="schema")
                                  if r.key == c["complaint_id"]])
    code, out, err = await zhida("deadletters", "--bootstrap", worker.bootstrap,
                                 "--show", "100000")
    assert code == 0, err
    [ref] = [line.split()[0] for line in out.splitlines()
             if f"key={c['complaint_id']} " in line]
    fixed = tmp_path / "fixed.json"
    fixed.write_bytes(orjson.dumps({**c, "channel": "hotline"}))
    code, out, err = await zhida("deadletters", "--bootstrap", worker.bootstrap,
                                 "--offset", ref, "--fixed", str(fixed))
    assert code == 0, err
    assert out.startswith("resubmitted a corrected body for 1 of 1 dead letter"), out
    case_id = case_id_for("complaint", c["complaint_id"])
    events = await kafka.events(case_id, 2)
    assert [e["type"] for e in events] == ["created", "dispatched"]


async def test_lag_lists_the_engines_group(kafka: Collector, worker: Worker) -> None:
    await open_case(kafka)
    code, out, err = await zhida("lag", "--bootstrap", worker.bootstrap)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"consumer group zhida on {worker.bootstrap}")
    rows = [line.split() for line in lines[2:-1]]
    topics = {r[0] for r in rows}
    assert {NAMES.complaints, NAMES.unit_updates, NAMES.case_commands} <= topics
    committed = [r for r in rows if r[0] == NAMES.complaints and r[2] != "-"]
    assert committed and all(int(r[4]) >= 0 for r in committed)
    assert re.match(r"total lag \d+ over \d+ partitions", lines[-1])


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    assert proc.poll() is None, "ended before Ctrl-C"
    proc.send_signal(signal.SIGINT)
    proc.wait(30)


def test_ctrl_c_on_a_following_tail(worker: Worker, tmp_path: Path) -> None:
    err, out = tmp_path / "stderr.txt", tmp_path / "stdout.txt"
    with err.open("wb") as e, out.open("wb") as o:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.tools.cli", "tail", "case.events", "--from-beginning",
             "--bootstrap", worker.bootstrap], cwd=ROOT, stdout=o, stderr=e,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        # following: it has printed the events the module's earlier tests caused
        deadline = time.monotonic() + 60
        while not out.read_bytes():
            assert proc.poll() is None, err.read_text(encoding="utf-8")
            assert time.monotonic() < deadline, "tail printed nothing"
            time.sleep(POLL_PROCESS)
        _interrupt(proc)
    text = err.read_text(encoding="utf-8")
    assert proc.returncode == 130 and "Traceback" not in text, text


def test_ctrl_c_on_a_running_worker(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Its own app id and prefix: the session's worker and group are left alone."""
    w = Worker(broker.bootstrap, free_port(), tmp_path / "data", tmp_path / "worker.log",
               env={"ZHIDA_APP_ID": "zhida-sigint", "ZHIDA_PREFIX": "sigint."}).start()
    assert w.proc is not None
    proc = w.proc
    try:
        _interrupt(proc)  # ready (/readyz 200): running, not starting
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log = w.log_tail(200_000)
    assert proc.returncode == 0, log[-3000:]  # faust's graceful stop
    assert "Traceback" not in log, log[-3000:]
