"""SLA timer benchmark (issue 13's targets): lateness with many armed, a burst, a SIGKILL.

    python -m bench.timers [--cases 1000000] [--burst-rates 300,cap] [--kill-batch 10000]

One fresh embedded broker (Tansu, memory storage) and one engine worker (``python -m
engine.cli worker``, RocksDB store) with a benchmark policy (``ZHIDA_POLICY``, clock 24x7,
``warn_fraction`` 0.5): every stage of every complaint lasts ``P30D``, so a complaint's case
stays armed (its reminder 15 days away), and the sensed kind ``manhole_cover`` (owned by the
street) has ``ack`` ``PT20S`` and ``supervise`` ``PT10S``: a reminder 10 s after the alarm,
then 督办 at 20 s (street late, the district supervises), 30 s (the city supervises) and 40 s
(the city is late: the top). Then, on that one worker:

0. **N armed**: N complaints open N cases (``bench.scale.open_cases``: as fast as the engine
   takes them); worker RSS before and after, data dir on disk.
1. **Lateness with N armed**: normal intake (complaints at ``--intake-rate``, all the run
   long) plus alarms of the short kind at ``--short-rate`` for ``--short-seconds``. Every
   ``warned``/``escalated`` event of those cases is read from ``case.events`` and its arrival
   compared with the instant it was due (the reminder point ``at + warn_fraction × (due −
   at)`` of the ``dispatched`` event, its ``due``, then each ``escalated`` event's
   ``supervise_due``); also the engine's ``zhida_timer_lateness_seconds`` histogram.
2. **Burst**: ``--burst-size`` of the N cases are suspended by their holder ``until`` one
   instant T (unit updates), so T has that many ``resume`` timers due at once. Complaints
   are offered at a fixed rate (each of ``--burst-rates``) from before T to after the last
   resume: complaints dispatched per second during the burst versus before it (same run, no
   timer due), every case resumed exactly once.
3. **SIGKILL with N armed**: ``--kill-batch`` other cases are suspended until instants spread
   over the ``--down-seconds`` the worker will be down; the worker's session is SIGKILLed,
   restarted on the same data dir once all of them are due: time to ``/readyz``, from
   ``/readyz`` to the first and the last resume, each exactly once.

Finally the worker is stopped and its RocksDB read back: records and bytes per key kind, and
the ``t:`` index alone written to a fresh RocksDB with the same options to measure its bytes on
disk per armed deadline. Writes docs/benchmarks-timers.md (linked from docs/benchmarks.md).
Every child runs in its own session and is stopped in ``finally``; at the end the script
checks that none of the sessions it started is left.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.harness import (
    ROOT,
    bench_parser,
    cancel_on_signals,
    cpu_seconds,
    cpu_since,
    elapsed,
    generated,
    loadavg_text,
    progress,
    run_or_render,
    set_label,
    stop_and_check,
    write_page,
)
from bench.scale_steps import (
    Ctx,
    add_output_args,
    add_step_args,
    machine_info,
)
from bench.timers_load import SHORT_KIND, TARGET_BURST, TARGET_N
from bench.timers_page import (
    armed_lines,
    burst_lines,
    final_lines,
    kill_lines,
    lateness_lines,
    machine_lines,
    memory_lines,
    method_lines,
    ok_mark,
    reading_lines,
    verdicts,
)
from bench.timers_steps import measure, policy_text
from engine.data.topology import Topology


def render(data: dict[str, Any]) -> str:
    a = data["args"]
    d = data["result"]
    n = a["cases"]
    secs = data["duration_s"]
    lines = [
        "# SLA timers: lateness with many armed, a burst, a SIGKILL",
        "",
        *generated("bench.timers", make="bench-timers", wrap=True),
        "",
        f"Measured on {data['date']} (run took {secs // 60} min {secs % 60} s) with "
        f"**{n:,} armed cases**." + ("" if n >= TARGET_N else
                                     f" **N is below the {TARGET_N:,} of issue 13's targets: "
                                     "the verdicts are for this N.**")
        + (" **Something failed: see below.**" if not d.get("ok") or data.get("left") else "")
        + (f" {a['note']}" if a.get("note") else ""),
        "",
        "## Targets (issue 13)",
        "",
        "| target | measured | how | |",
        "|---|---|---|---|",
    ]
    for target, measured, how, ok in verdicts(d, n):
        lines.append(f"| {target} | {measured} | {how} |{ok_mark(ok)} |")
    if d.get("error"):
        lines += ["", f"**Failed**: {d['error'].splitlines()[0]}"]
    lines += machine_lines(data)
    lines += method_lines(data)
    lines += armed_lines(d, n)
    lines += lateness_lines(d)
    lines += burst_lines(d)
    lines += kill_lines(d)
    reading = reading_lines(d, n)
    if reading:
        lines += ["", "## Reading", "", *reading]
    lines += memory_lines(d)
    lines += final_lines(data, d)
    return "\n".join(lines) + "\n"


def summary_text(data: dict[str, Any]) -> str:
    out = ["", f"timer benchmark, {data['args']['cases']:,} armed"]
    for target, measured, _how, ok in verdicts(data["result"], data["args"]["cases"]):
        out.append(f"  {'PASS' if ok else 'FAIL' if ok is False else '    '}  {target}: "
                   f"{measured.replace('**', '')}")
    if data["result"].get("error"):
        out.append(f"  FAILED: {data['result']['error'].splitlines()[0]}")
    if data.get("left"):
        out.append(f"  sessions left after the run (killed): {data['left']}")
    return "\n".join(out)


async def run(args: argparse.Namespace) -> int:
    tag = "t" + datetime.now(UTC).strftime("%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="zhida-timers-", dir=args.workdir))
    policy = workdir / "policy.toml"
    policy.write_text(policy_text(args))
    progress(f"work dir {workdir}; N = {args.cases:,}")
    base = Ctx("", tag, workdir, "rocksdb://", Topology.load(), args)
    started = datetime.now(UTC)
    load_start = loadavg_text()
    cpu_start = cpu_seconds()
    cancel_on_signals()  # SIGTERM/SIGHUP like Ctrl-C: unwind, stop children and broker
    result: dict[str, Any] = {}
    try:
        result = await measure(base, policy)
    except BaseException:
        progress(f"logs kept in {workdir}")
        raise
    finally:
        left = stop_and_check()
    m = machine_info(args.commit)
    cpu = cpu_since(cpu_start)
    data = {"date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "duration_s": round(elapsed()), "machine": m,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "policy": policy.read_text(), "result": result, "left": left,
            "load": (load_start, loadavg_text()),
            "cpu": cpu}
    print(summary_text(data))
    (workdir / "results.json").write_bytes(orjson.dumps(data, default=str,
                                                        option=orjson.OPT_INDENT_2))
    if args.write:
        write_page(args.out, render(data))
    failed = not result.get("ok") or bool(left) or any(
        ok is False for *_, ok in verdicts(result, args.cases))
    if failed or args.keep_logs:
        progress(f"logs and results.json kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def _rates(text: str) -> list[str]:
    out = [x.strip() for x in text.split(",") if x.strip()]
    for x in out:
        if x != "cap":
            try:
                if float(x) <= 0:
                    raise ValueError
            except ValueError:
                raise argparse.ArgumentTypeError(
                    "comma-separated complaints/s, or 'cap' (80 % of the opening rate)"
                ) from None
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser("bench.timers", __doc__)
    p.add_argument("--cases", type=lambda s: int(s.replace("_", "")), default=TARGET_N,
                   help="armed cases to open first (default 1000000; ~12 min on 2 cores)")
    p.add_argument("--open-via", choices=("commands", "intake"), default="commands",
                   help="open the N by open-case commands written to case.commands in large "
                        "batches (default), or by complaints through the intake agent; see "
                        "'Why the cases are opened by commands' in the report")
    p.add_argument("--intake-rate", type=float, default=50.0,
                   help="normal intake: complaints/s all the run long")
    p.add_argument("--short-rate", type=float, default=20.0,
                   help=f"step 1: {SHORT_KIND} alarms/s (short deadlines)")
    p.add_argument("--short-seconds", type=float, default=150.0, help="step 1: for how long")
    p.add_argument("--baseline-seconds", type=float, default=60.0,
                   help="the same as step 1 for this long before the N are opened (0 armed), "
                        "for comparison; 0 skips it")
    p.add_argument("--short-ack", type=float, default=20.0,
                   help=f"step 1: the ack deadline of {SHORT_KIND}, seconds (reminder at half)")
    p.add_argument("--short-supervise", type=float, default=10.0,
                   help=f"step 1: the supervise deadline of {SHORT_KIND}, seconds")
    p.add_argument("--burst-size", type=int, default=TARGET_BURST,
                   help="step 2: resume timers due at one instant")
    p.add_argument("--burst-rates", type=_rates, default=_rates("300,cap"),
                   help="step 2: offered complaints/s, one burst each; 'cap' = 80%% of the "
                        "opening rate (default 300,cap)")
    p.add_argument("--control-seconds", type=float, default=30.0,
                   help="step 2: planned control window before T")
    p.add_argument("--kill-batch", type=int, default=10_000,
                   help="step 3: deadlines due while the worker is down (0 skips step 3)")
    p.add_argument("--down-seconds", type=float, default=10.0,
                   help="step 3: how long the worker stays down")
    p.add_argument("--window", type=int, default=20000,
                   help="most complaints or updates produced ahead of those processed")
    add_step_args(p, progress=10.0,
                  stall="fail a step after this many seconds without progress")
    add_output_args(p, ROOT / "docs" / "benchmarks-timers.md")
    args = p.parse_args(argv)
    need = args.burst_size * len(args.burst_rates) + args.kill_batch
    if not args.render_from and args.cases < need:
        p.error(f"--cases {args.cases} is fewer than the bursts and the kill batch use "
                f"({need}): lower --burst-size/--kill-batch or raise --cases")
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        p.error("needs the rocksdict package (the worker's RocksDB store): "
                ".venv/bin/pip install rocksdict")
    return args


def main(argv: list[str] | None = None) -> int:
    set_label("timers")
    args = parse(argv)

    def load(path: Path) -> dict[str, Any]:
        data = orjson.loads(path.read_bytes())
        if args.note:  # a sentence added after the fact, e.g. how this run compares
            data["args"]["note"] = args.note
        return data

    return run_or_render(run, args, render, load)


if __name__ == "__main__":
    sys.exit(main())
