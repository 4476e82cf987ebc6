"""Clean failures of the ``zhida`` command, run as an operator runs it: a subprocess.

Unreachable brokers, bad operator files and bad settings end in exactly one line on stderr
and exit code 2; Ctrl-C ends in exit code 130 and no traceback. No broker is needed: the
"broker" is 127.0.0.1:1, where nothing listens (connection refused at once).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.data import catalogue, topology
from engine.tools.cli import parser

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "127.0.0.1:1"


def zhida(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("command", [
    ["worker"], ["simulate", "--duration", "1"], ["tail", "case.events"], ["lag"],
    ["deadletters"],
])
def test_unreachable_brokers_one_line_exit_2(command: list[str]) -> None:
    started = time.monotonic()
    r = zhida(*command, "--bootstrap", NOWHERE, "--connect-timeout", "2")
    took = time.monotonic() - started
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert NOWHERE in line and "within 2 s" in line, line
    assert took < 15, f"{took:.1f} s"  # the 2 s wait, plus starting Python on a busy box


def test_the_connect_timeout_comes_from_the_environment() -> None:
    r = zhida("lag", "--bootstrap", NOWHERE, env={"ZHIDA_CONNECT_TIMEOUT": "1"})
    assert r.returncode == 2
    assert "within 1 s" in one_line(r.stderr)


def test_a_bad_setting_names_its_variable() -> None:
    r = zhida("lag", env={"ZHIDA_CONNECT_TIMEOUT": "soon"})
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert "ZHIDA_CONNECT_TIMEOUT" in line and "soon" in line, line


# ---- operator files ----


def _json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _units() -> dict[str, Any]:
    return json.loads(topology.DATA.read_text(encoding="utf-8"))


def _categories() -> dict[str, Any]:
    return json.loads(catalogue.DATA.read_text(encoding="utf-8"))


def _bad_files(tmp: Path) -> list[tuple[str, Path, str]]:
    """(flag, file, what the line must name besides the file) for every failure mode."""
    wrong_type = _units()
    wrong_type["units"][3]["code"] = 500103
    unknown_field = _units()
    unknown_field["units"][3]["colour"] = "red"
    bad_level = _units()
    bad_level["units"][5]["level"] = "county"
    bad_priority = _categories()
    bad_priority["categories"][2]["priority"] = "high"
    no_owner = _categories()
    del no_owner["categories"][1]["owner"]
    (tmp / "broken.json").write_text('{"units": [', encoding="utf-8")
    (tmp / "broken.toml").write_text("[policy\n", encoding="utf-8")
    (tmp / "typed.toml").write_text('[policy]\nmax_returns = "two"\n', encoding="utf-8")
    (tmp / "duration.toml").write_text('[stages.normal]\nack = "2 hours"\n', encoding="utf-8")
    return [
        ("--topology", tmp / "missing.json", "no such file"),
        ("--topology", tmp / "broken.json", "invalid JSON"),
        ("--topology", _json(tmp / "list.json", []), "'units'"),
        ("--topology", _json(tmp / "nounits.json", {"unit": []}), "'units'"),
        ("--topology", _json(tmp / "type.json", wrong_type), "units[3].code"),
        ("--topology", _json(tmp / "unknown.json", unknown_field), "colour"),
        ("--topology", _json(tmp / "level.json", bad_level), "level"),
        ("--catalogue", tmp / "missing.json", "no such file"),
        ("--catalogue", tmp / "broken.json", "invalid JSON"),
        ("--catalogue", _json(tmp / "priority.json", bad_priority), "priority"),
        ("--catalogue", _json(tmp / "owner.json", no_owner), "owner"),
        ("--policy", tmp / "missing.toml", "no such file"),
        ("--policy", tmp / "broken.toml", "invalid TOML"),
        ("--policy", tmp / "typed.toml", "policy.max_returns"),
        ("--policy", tmp / "duration.toml", "stages.normal.ack"),
        ("--keys", tmp / "missing.json", "no such file"),
        ("--keys", _json(tmp / "keys.json", {"keys": 5}), '"keys" array'),
    ]


def test_standby_replicas_are_refused_in_one_line() -> None:
    """A promoted standby forked case histories (docs/operations.md, Failover): a worker
    asked for them says so in one line and exits 2 before it touches a broker."""
    r = zhida("worker", env={"ZHIDA_STANDBY_REPLICAS": "1"})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "ZHIDA_STANDBY_REPLICAS_UNSAFE=1" in lines[0], r.stderr


def test_bad_operator_files_one_line_naming_file_and_field(tmp_path: Path) -> None:
    problems = []
    for flag, path, field in _bad_files(tmp_path):
        # an unreachable broker would be exit 2 as well: the line tells them apart
        r = zhida("worker", flag, str(path), "--bootstrap", NOWHERE, "--connect-timeout", "1")
        lines = r.stderr.strip().splitlines()
        if (r.returncode != 2 or len(lines) != 1 or str(path) not in lines[0]
                or field not in lines[0] or "Traceback" in r.stderr):
            problems.append(f"{flag} {path.name}: exit {r.returncode}: {r.stderr.strip()}")
    assert not problems, "\n".join(problems)


# ---- Ctrl-C ----


@pytest.mark.parametrize("command", [
    ["worker"], ["simulate"], ["tail", "case.events"], ["deadletters"], ["lag"],
])
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(command: list[str]) -> None:
    # a "broker" that accepts connections and never answers: once the command has connected
    # it is certainly inside its wait for the brokers, where Ctrl-C must land cleanly
    with socket.create_server(("127.0.0.1", 0)) as hole:
        hole.settimeout(60)
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.tools.cli", *command, "--bootstrap",
             f"127.0.0.1:{hole.getsockname()[1]}", "--connect-timeout", "60"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # a process started in the background may inherit SIGINT ignored: undo that
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            conn, _ = hole.accept()  # the condition: it is waiting on the brokers now
        except TimeoutError:
            proc.kill()
            raise AssertionError(f"never connected: {proc.communicate()}") from None
        with conn:
            _interrupt_and_check(proc)


def _interrupt_and_check(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert one_line(err) == "interrupted"


# ---- help and version ----


def test_version() -> None:
    r = zhida("--version")
    assert r.returncode == 0 and r.stdout.startswith("zhida ") and r.stdout.split()[1]


OURS = ("broker", "worker", "simulate", "demo", "case", "tail", "deadletters", "lag", "replay")


def test_every_flag_says_its_default_and_variable() -> None:
    """Help on every flag of these commands; a flag with a ZHIDA_* setting names it."""
    from engine.runtime.settings import Settings

    sub = next(a for a in parser()._actions if a.dest == "command")
    missing = []
    for name in OURS:
        for action in sub.choices[name]._actions:  # type: ignore[union-attr]
            if action.dest == "help" or not action.option_strings:
                continue
            text = action.help or ""
            flag = action.option_strings[0]
            if action.nargs == 0:  # a switch: its help says what it does instead
                if not text:
                    missing.append(f"{name} {flag}: no help")
                continue
            if "default" not in text:
                missing.append(f"{name} {flag}: no default in {text!r}")
            # the demo runs its own broker and worker: its flags are not settings
            if name != "demo" and action.dest in Settings.model_fields \
                    and f"ZHIDA_{action.dest.upper()}" not in text:
                missing.append(f"{name} {flag}: no ZHIDA_{action.dest.upper()}")
    assert not missing, missing
