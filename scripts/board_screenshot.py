"""Take the README's picture of the board (docs/board.png) with headless Chromium.

With ``--url`` it photographs a board that is already up (``zhida demo --keep`` prints one).
Without it, it brings one up the way ``zhida demo`` does: an embedded broker, a worker whose
SLA deadlines are divided by ``--speed`` (so reminders, overdue cases and escalations show
within a minute) and the simulator for ``--duration`` seconds; then it photographs the board and
stops everything, whatever happened.

Needs Debian's ``chromium`` and a CJK font (``fonts-wqy-microhei`` or ``fonts-noto-cjk``), or the
district names render as boxes.

Usage::

    .venv/bin/python scripts/board_screenshot.py                  # docs/board.png
    .venv/bin/python scripts/board_screenshot.py --url http://127.0.0.1:6066/board
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.tools.broker import EmbeddedBroker, free_port  # noqa: E402
from engine.tools.demo import scaled_policy  # noqa: E402
from engine.tools.process import WorkerProcess  # noqa: E402
from engine.tools.sim.cli import run_simulation  # noqa: E402

MAX_BYTES = 1024 * 1024  # the README's picture stays under 1 MiB


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if (path := shutil.which(name)) is not None:
            return path
    raise SystemExit("no chromium binary on PATH (Debian: apt-get install chromium)")


def screenshot(url: str, out: Path, size: str, budget_ms: int) -> None:
    """One picture of ``url`` after its scripts ran for ``budget_ms`` of virtual time."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zhida-chromium-") as profile:
        done = subprocess.run(
            [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             f"--virtual-time-budget={budget_ms}", f"--screenshot={out.resolve()}",
             f"--window-size={size}", url],
            capture_output=True, timeout=120, check=False)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"chromium failed ({done.returncode}): "
                         + done.stderr.decode("utf-8", "replace")[-1500:])
    n = out.stat().st_size
    print(f"{out} ({n / 1024:.0f} KiB) from {url}")
    if n > MAX_BYTES:
        raise SystemExit(f"{out} is {n} bytes, over {MAX_BYTES}: use a smaller --window-size")


def with_demo(args: argparse.Namespace) -> None:
    """A broker, a worker on a sped-up policy and the simulator; the picture; then stop."""
    workdir = Path(tempfile.mkdtemp(prefix="zhida-board-"))
    broker = EmbeddedBroker(log_path=workdir / "broker.log")
    worker: WorkerProcess | None = None
    try:
        broker.start()
        policy = scaled_policy(args.speed, workdir / "policy.toml")
        worker = WorkerProcess(broker.bootstrap, free_port(), workdir / "data",
                               workdir / "worker.log", policy=policy).start()
        print(f"worker up at {worker.url('/board')}; simulating {args.rate:g}/s for "
              f"{args.duration:g} s", flush=True)
        asyncio.run(run_simulation(broker.bootstrap, os.environ.get("ZHIDA_PREFIX", "zhida."),
                                   args.rate, args.duration, args.seed, drain=5.0,
                                   speed=args.speed))
        screenshot(worker.url(f"/board{args.fragment}"), args.out, args.window_size,
                   args.budget_ms)
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="photograph this board instead of starting one")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "board.png",
                   help="the picture (default docs/board.png)")
    p.add_argument("--window-size", default="1400,900", help="W,H (default 1400,900)")
    p.add_argument("--budget-ms", type=int, default=6000,
                   help="virtual time the page runs before the picture (default 6000)")
    p.add_argument("--rate", type=float, default=30.0, help="inputs/s (default 30)")
    p.add_argument("--duration", type=float, default=45.0, help="seconds (default 45)")
    p.add_argument("--speed", type=float, default=600.0,
                   help="simulated time runs this much faster (default 600)")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--fragment", default="",
                   help="e.g. '#500106' to open a district's streets (default: none)")
    args = p.parse_args()
    if args.url:
        screenshot(args.url, args.out, args.window_size, args.budget_ms)
    else:
        with_demo(args)


if __name__ == "__main__":
    main()
