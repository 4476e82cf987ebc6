"""`zhida broker` starts the embedded broker, answers, and leaves nothing behind on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.tools.broker import _answers, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def tansu_pids_on(port: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "tansu" in cmd and f":{port}" in cmd:
                pids.append(int(d.name))
    return pids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_broker_command_starts_and_stops_cleanly(sig: signal.Signals) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "engine.tools.cli", "broker", "--port",
                             str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=os.environ.copy())
    try:
        line = proc.stdout.readline()
        assert f"bootstrap 127.0.0.1:{port}" in line
        assert _answers("127.0.0.1", port)
        assert tansu_pids_on(port)
        proc.send_signal(sig)
        assert proc.wait(15) == 0
        assert "broker stopped" in proc.stdout.read()
        assert not tansu_pids_on(port)
    finally:
        if proc.poll() is None:
            proc.kill()
