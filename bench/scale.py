"""Scale benchmark: open cases, worker memory, changelog, restart (issue 12 item 7).

    python -m bench.scale [--cases 100000,300000,1000000] [--store rocksdb://|memory://]

Once, on its own embedded broker: a fresh worker is SIGKILLed at 0 cases and restarted (time
to ``/readyz``). Then for each N, on a fresh embedded broker (Tansu, memory storage) and a
fresh engine worker (``python -m engine.tools.cli worker``, own app id, topic prefix and data dir):

1. the worker's RSS at 0 cases (``VmRSS`` of ``/proc/<pid>/status``, polled until it settles);
2. N valid complaints produced as fast as the engine takes them (at most ``--window``
   complaints ahead of the dispatched ones), each opening one case; completion is counted
   from the worker's ``/metrics`` (``zhida_case_events_total{type="dispatched"}``);
3. at N: worker RSS (settled), RSS per open case, bytes of the table changelog topic(s) per
   command processed (read back and summed), local store on disk (``du`` of the data dir);
4. restart, local state kept: SIGKILL the worker's session, start it on the same data dir,
   time to ``/readyz`` 200; restart, local state lost: SIGKILL, delete the data dir, start,
   time to ``/readyz`` 200; after each, ``GET /cases/{id}`` for a random sample of the N cases
   and one new complaint that must come out as a dispatch order.

Writes docs/benchmarks-scale.md (linked from docs/benchmarks.md). Every child process runs in
its own session and is stopped in ``finally``; at the end the script checks that none of the
sessions it started is left.
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
    GIB,
    ROOT,
    bench_parser,
    cancel_on_signals,
    cpu_seconds,
    cpu_since,
    cpu_used,
    elapsed,
    generated,
    loadavg_text,
    machine_table,
    mib,
    progress,
    run_or_render,
    set_label,
    stop_and_check,
    write_page,
)
from bench.scale_steps import (
    CHUNK,
    Ctx,
    Phase,
    add_output_args,
    add_step_args,
    machine_info,
    open_cases,
    scale_phase,
    zero_phase,
)
from engine.data.topology import Topology

__all__ = ["Phase", "load", "main", "open_cases", "render"]  # open_cases: named by the timers page

# issue 12's targets
TARGET_N = 1_000_000
TARGET_RSS = 1 * GIB  # worker RSS at 1,000,000 open cases
TARGET_CHANGELOG = 1024  # bytes of changelog per command
TARGET_KEPT_S = 30.0  # SIGKILL restart to /readyz, local state kept (at 1M)
TARGET_LOST_S = 180.0  # the same with the data dir lost (at 1M)
TARGET_ZERO_S = 8.0  # SIGKILL restart at 0 cases

BEFORE = "benchmarks-scale-before.md"  # the run on the engine before the writer rewrite
PROJECT_RESTART_FROM = 50_000  # smallest N a restart time is projected from


# ---------------------------------------------------------------- report

def _s(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f} s"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else (" ✅" if ok else " ❌")


def _cpu(data: dict[str, Any]) -> str:
    return cpu_used(data.get("cpu"), bold=True)


def _restart_row(label: str, r: dict[str, Any] | None, target: str,
                 ok: bool | None) -> str:
    if not r:
        return f"| {label} | not measured | {target} |"
    if r.get("to_ready") is None:
        return f"| {label} | **failed**: {(r.get('error') or '?').splitlines()[0]} | {target} |"
    bits = [f"**{r['to_ready']:.1f} s** from SIGKILL to `/readyz` 200"
            f"{_verdict(ok)} (process start to ready {r['launch_to_ready']:.1f} s)"]
    if r.get("sample"):
        bits.append(f"{r.get('sample_known', 0)}/{r['sample']} sampled cases known")
    if r.get("probe_seconds") is not None:
        bits.append(f"new complaint dispatched in {r['probe_seconds']:.2f} s")
    if r.get("rss") is not None:
        bits.append(f"RSS then {mib(r['rss'])}")
    if r.get("error"):
        bits.append(f"**{r['error'].splitlines()[0]}**")
    return f"| {label} | " + "; ".join(bits) + f" | {target} |"


def _summary_table(phases: list[Phase]) -> str:
    rows = ["| open cases | cases/s | worker RSS | RSS per case | changelog per command "
            "| store on disk | restart, state kept | restart, state lost "
            "| sampled cases known (kept / lost) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            "| **target** | | < 1 GiB at 1M | | < 1 KiB | | < 30 s at 1M | < 180 s at 1M | "
            "all |"]
    for ph in phases:
        d = ph.data
        o = d.get("open") or {}
        kept, lost = d.get("kept") or {}, d.get("lost") or {}
        per_case = d.get("rss_per_case")
        per_cmd = d.get("changelog_per_command")
        rate = f"{o['rate']:,.0f}" if o else "failed"
        rows.append(
            f"| {ph.n:,} | {rate} | {mib(d.get('rss'))} | "
            f"{f'{per_case / 1024:,.2f} KiB' if per_case is not None else '–'} | "
            f"{f'{per_cmd:,.0f} B' if per_cmd is not None else '–'} | "
            f"{mib(d.get('store_disk'))} | {_s(kept.get('to_ready'))} | "
            f"{_s(lost.get('to_ready'))} | "
            + " / ".join(f"{r.get('sample_known', '–')}/{r.get('sample', '–')}"
                         for r in (kept, lost)) + " |")
    return "\n".join(rows)


def _phase_table(ph: Phase) -> str:
    n, d = ph.n, ph.data
    at_target = n >= TARGET_N
    lines = [f"### {n:,} open cases", ""]
    if ph.error:
        lines += [f"**Failed**: {ph.error.splitlines()[0]}", ""]
    o = d.get("open")
    lines += ["| figure | measured | target (issue 12) |", "|---|---|---|"]
    if d.get("fresh_start") is not None:
        lines.append(f"| fresh worker start to `/readyz` | {d['fresh_start']:.1f} s | |")
    if o:
        lines.append(f"| open {n:,} cases (produce → dispatched) | {o['seconds']:,.1f} s, "
                     f"**{o['rate']:,.0f} cases/s**; commands {o.get('commands') or 0:,.0f}, "
                     f"duplicates {o['duplicates']:.0f}, dead letters {o['deadletters']:.0f} "
                     "| |")
    if d.get("rss0") is not None:
        lines.append(f"| worker RSS at 0 cases | {mib(d['rss0'])} | |")
    if d.get("rss") is not None:
        ok = d["rss"] < TARGET_RSS if at_target else None
        lines.append(f"| worker RSS at {n:,} cases | **{mib(d['rss'])}**{_verdict(ok)} "
                     f"(peak {mib(d.get('hwm'))}) | < 1 GiB at 1,000,000 |")
    if d.get("rss_per_case") is not None:
        budget = (TARGET_RSS - d["rss0"]) / TARGET_N
        lines.append(f"| RSS per open case | **{d['rss_per_case'] / 1024:,.2f} KiB** "
                     f"({d['rss_per_case']:,.0f} B) | < {budget / 1024:.2f} KiB: what stays "
                     "under 1 GiB at 1,000,000 from this RSS at 0 |")
    cl = d.get("changelog")
    if cl:
        per = d.get("changelog_per_command")
        ok = per is not None and per < TARGET_CHANGELOG
        topics = ", ".join(f"`{k}` {v['records']:,} records" for k, v in cl["topics"].items())
        lines.append(f"| changelog per command | **{per:,.0f} B**{_verdict(ok)} "
                     f"({mib(cl['bytes'])} in {cl['records']:,} records: {topics}) "
                     "| < 1 KiB |")
    if d.get("store_disk") is not None:
        lines.append(f"| local store on disk (`du` of the data dir) | {mib(d['store_disk'])} "
                     f"({d['store_disk'] / n:,.0f} B per case; apparent size "
                     f"{mib(d['store_apparent'])}) | |")
    if d.get("broker_rss") is not None:
        lines.append(f"| broker (Tansu, memory storage) RSS, for scale | "
                     f"{mib(d['broker_rss'])} | |")
    for key, label, target, limit in (
            ("kept", "restart, local state kept", "< 30 s at 1,000,000", TARGET_KEPT_S),
            ("lost", "restart, local state lost", "< 180 s at 1,000,000", TARGET_LOST_S)):
        r = d.get(key)
        ok = (r["to_ready"] < limit) if (r and at_target and r.get("to_ready")) else None
        lines.append(_restart_row(label, r, target, ok))
    return "\n".join(lines)


def _project(points: list[tuple[int, float]]) -> tuple[float, str]:
    """A value at 1,000,000 from (N, value) points: the line through the two largest N (so
    that fixed costs reached early do not count as per-case costs), or through 0 and the
    only point."""
    pts = sorted(points)
    if len(pts) >= 2:
        (n1, v1), (n2, v2) = pts[-2], pts[-1]
        slope = (v2 - v1) / (n2 - n1)
        how = f"line through {n1:,} and {n2:,}"
    else:
        (n2, v2), slope = pts[-1], pts[-1][1] / pts[-1][0]
        how = f"line through 0 and {n2:,}"
    return v2 + max(slope, 0.0) * (TARGET_N - n2), how


def _projection(phases: list[Phase]) -> list[str]:
    """Linear projections to 1,000,000 when every N measured is below it (rough)."""
    ok = [p for p in phases if p.data.get("rss") is not None]
    if not ok or max(p.n for p in ok) >= TARGET_N:
        return []
    rss, how = _project([(p.n, p.data["rss"]) for p in ok])
    parts = [f"worker RSS {rss / GIB:,.1f} GiB (target < 1 GiB)"]
    largest = max(p.n for p in ok)
    for key, target in (("kept", TARGET_KEPT_S), ("lost", TARGET_LOST_S)):
        pts = [(p.n, p.data[key]["to_ready"]) for p in ok
               if (p.data.get(key) or {}).get("to_ready") is not None]
        if not pts:
            continue
        if largest < PROJECT_RESTART_FROM:
            parts.append(f"no restart projection (below {PROJECT_RESTART_FROM:,} cases a "
                         "restart takes the 0-case time plus noise)")
            break
        t, _ = _project(pts)
        parts.append(f"{ok[0].data[key]['name']} ~{t:,.0f} s (target < {target:.0f} s)")
    rates = [p.data["open"]["rate"] for p in ok if p.data.get("open")]
    if rates:
        parts.append(f"opening 1,000,000 cases ~{TARGET_N / rates[-1] / 60:,.0f} min at "
                     f"{rates[-1]:,.0f}/s")
    return [f"- **Projected to 1,000,000** ({how}; rough, assumes linear growth): "
            + "; ".join(parts) + "."]


def render(data: dict[str, Any]) -> str:
    a = data["args"]
    zero = data.get("zero")
    phases: list[Phase] = data["phases"]
    secs = data["duration_s"]
    lines = [
        "# Scale: open cases, memory, changelog, restart",
        "",
        *generated("bench.scale", make="bench-scale", wrap=True),
        "",
        f"Measured on {data['date']:%Y-%m-%d %H:%M UTC} (run took {secs // 60} min "
        f"{secs % 60} s), store **`{a['store']}`**, N = "
        f"{', '.join(f'{p.n:,}' for p in phases) or '–'}."
        + (" **Something failed: see the tables.**" if data.get("failed") else "")
        + (f" {a['note']}" if a.get("note") else ""),
        "",
        "## Machine",
        "",
        *machine_table(data, _cpu(data)),
        "",
        "Broker, load generator and worker share these cores. CPU used by other processes "
        "(machine busy time from `/proc/stat` less this run's own processes, from "
        "`os.times()`) would have slowed the rates and restarts measured here.",
        "",
        "## Method",
        "",
        f"`python -m bench.scale --cases {a['cases_arg']} --store {a['store']} --window "
        f"{a['window']} --sample {a['sample']}` (`make bench-scale`).",
        "",
        "- **SIGKILL restart at 0 cases** (once, own broker): a fresh worker is started and "
        "waited for (`/readyz` 200), then its session is SIGKILLed (`os.killpg`) and a new "
        "process started at once on the same data dir; the clock runs from the SIGKILL to "
        "`/readyz` 200. A new complaint must then come out as a dispatch order.",
        "- **Per N**, on a fresh embedded broker: a fresh worker (`python -m engine.tools.cli "
        "worker`, own `ZHIDA_APP_ID`, `ZHIDA_PREFIX`, data dir, `ZHIDA_STORE`). Its RSS at 0 "
        "cases is read once it is ready. Then N valid complaints (`bench/workload.py`: every "
        "complaint category, real street codes, ~215 bytes of JSON) are produced in chunks of "
        f"{CHUNK:,}, never more than {a['window']:,} ahead of the cases dispatched, so the "
        "engine sets the pace and the intake topic holds no large backlog. Each complaint "
        "opens one case: one command on `case.commands`, and every command measured here is "
        "an opening one (acknowledgements, resolutions and ratings are not in this "
        "workload).",
        "- **Completion** is counted from the worker's `/metrics` "
        "(`zhida_case_events_total{type=\"dispatched\"}`, polled every "
        f"{a['poll']:g} s), not by reading the dispatch orders: at 1,000,000 the bench "
        "would have to fetch and decode a million orders on the same cores as the worker and "
        "the broker, which costs more than it measures; a poll is one small HTTP request. "
        "The counter moves when the case writer has decided and handed the order to the "
        "producer (milliseconds before delivery). Wall time = first produce to the poll that "
        "saw N; rate = N / wall time (± one poll interval).",
        "- **Worker RSS**: `VmRSS` of `/proc/<pid>/status` of the worker process, polled "
        "every second until three readings agree within 1 % (or 2 MiB), so that allocator "
        "and collector activity have settled; peak = `VmHWM`. **RSS per open case** = (RSS "
        "at N − RSS at 0 cases) / N.",
        "- **Changelog per command**: every topic of the app whose name contains "
        "`changelog` is read from the beginning with a plain consumer until nothing comes "
        "for 2 s, summing len(key) + len(value) of every record; divided by the commands "
        "the case writer processed (`zhida_command_seconds_count`). Tansu 0.6.0 does not "
        "offer DescribeLogDirs (its ApiVersions answer lacks key 35) and its end offsets "
        "undercount, so reading is the only way here. Record framing on a real broker adds "
        "a few dozen bytes per record; compaction later shrinks what is retained, not what "
        "is written.",
        "- **Local store on disk**: `du` of the worker's data dir (blocks allocated; the "
        "apparent size is given too), taken while the worker runs at N.",
        "- **Restart, local state kept**: SIGKILL, start a new process on the same data dir, "
        "time from the SIGKILL to `/readyz` 200. **Restart, local state lost**: SIGKILL, "
        "delete the data dir, start, time to `/readyz` 200. After each: `GET /cases/{id}` "
        f"for {a['sample']} case ids drawn at random from the N (each must answer 200), one "
        "new complaint produced and its dispatch order read back (time given), RSS settled "
        "again.",
        "",
        "## SIGKILL restart at 0 cases",
        "",
    ]
    if zero is None:
        lines.append("Not measured in this run.")
    else:
        r = zero.get("restart")
        ok = (r["to_ready"] < TARGET_ZERO_S) if r and r.get("to_ready") else None
        lines += ["| figure | measured | target (issue 12) |", "|---|---|---|"]
        if zero.get("fresh_start") is not None:
            lines.append(f"| fresh worker start to `/readyz` | {zero['fresh_start']:.1f} s; "
                         f"RSS {mib(zero.get('rss0'))} | |")
        lines.append(_restart_row("SIGKILL restart at 0 cases", r, "< 8 s", ok))
        if zero.get("error"):
            lines.append(f"\n**Failed**: {zero['error'].splitlines()[0]}")
    lines += ["", "## Summary", "", _summary_table(phases), "", "## Per N", ""]
    for ph in phases:
        lines += [_phase_table(ph), ""]
    lines += ["## Reading", ""]
    reading = _projection(phases)
    if reading and a["store"].startswith("rocksdb"):
        reading.append("- With `rocksdb://` part of the RSS growth is RocksDB's write buffers "
                       "and block cache, which are bounded, so a straight line may overstate "
                       "the RSS at 1,000,000: only the 1,000,000 run tells.")
    if a["store"].startswith("memory"):
        reading.append("- With `memory://` the table lives only in the worker's memory and "
                       "its data dir holds no table data: \"local state kept\" and \"lost\" "
                       "both rebuild the table from the changelog.")
    if not any(p.n >= TARGET_N for p in phases):
        reading.append("- The RSS and restart targets are stated at 1,000,000 open cases; "
                       "they are shown next to smaller N for reference only (no verdict).")
    lines += reading or ["See the tables."]
    before = data.get("before_link")
    if before:
        lines += ["", f"The same measurements on the engine before the case-writer rewrite: "
                      f"[{before}]({before})."]
    return "\n".join(lines) + "\n"


def summary_text(data: dict[str, Any]) -> str:
    out = ["", f"scale benchmark, store {data['args']['store']}"]
    zero = data.get("zero")
    if zero:
        r = zero.get("restart") or {}
        out.append(f"  0 cases: fresh start {_s(zero.get('fresh_start'))}, SIGKILL restart "
                   f"to ready {_s(r.get('to_ready'))} (target < {TARGET_ZERO_S:g} s)"
                   + (f"  FAILED: {zero['error'].splitlines()[0]}" if zero.get("error")
                      else ""))
    head = (f"  {'N':>9} {'open s':>8} {'cases/s':>8} {'RSS0':>9} {'RSS@N':>9} {'B/case':>7} "
            f"{'CL B/cmd':>8} {'store':>9} {'kept s':>7} {'lost s':>7} {'sample':>9}")
    out.append(head)
    for ph in data["phases"]:
        d = ph.data
        o = d.get("open") or {}
        kept, lost = d.get("kept") or {}, d.get("lost") or {}
        samp = "/".join(str(r.get("sample_known", "-")) for r in (kept, lost))
        per_case = d.get("rss_per_case")
        per_cmd = d.get("changelog_per_command")
        out.append(
            f"  {ph.n:>9,} {o.get('seconds', 0):>8,.1f} {o.get('rate', 0):>8,.0f} "
            f"{mib(d.get('rss0')):>9} {mib(d.get('rss')):>9} "
            f"{per_case if per_case is not None else 0:>7,.0f} "
            f"{per_cmd if per_cmd is not None else 0:>8,.0f} {mib(d.get('store_disk')):>9} "
            f"{kept.get('to_ready') or 0:>7.1f} {lost.get('to_ready') or 0:>7.1f} {samp:>9}")
        if ph.error:
            out.append(f"    FAILED: {ph.error.splitlines()[0]}")
    out.append(f"  CPU: {_cpu(data).replace('**', '')}")
    out.append(f"  targets at 1M: RSS < 1 GiB, changelog < 1 KiB per command, restart < "
               f"{TARGET_KEPT_S:g} s kept / < {TARGET_LOST_S:g} s lost")
    return "\n".join(out)


# ---------------------------------------------------------------- the run

async def run(args: argparse.Namespace) -> int:
    tag = "s" + datetime.now(UTC).strftime("%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="zhida-scale-", dir=args.workdir))
    progress(f"work dir {workdir}; store {args.store}; N = {args.cases}")
    base = Ctx("", tag, workdir, args.store, Topology.load(), args)
    started = datetime.now(UTC)
    load_start = loadavg_text()
    cpu_start = cpu_seconds()
    zero: dict[str, Any] | None = None
    phases: list[Phase] = []
    failed = False
    cancel_on_signals()  # SIGTERM/SIGHUP like Ctrl-C: unwind, stop children and broker
    try:
        if not args.skip_zero:
            progress("SIGKILL restart at 0 cases (own broker)")
            zero = await zero_phase(base)
            failed = failed or not zero["ok"]
        for n in args.cases:
            progress(f"N = {n:,}: fresh broker and worker")
            ph = await scale_phase(base, n)
            phases.append(ph)
            failed = failed or not ph.ok
    except BaseException:
        progress(f"logs kept in {workdir}")
        raise
    finally:
        left = stop_and_check()
    m = machine_info(args.commit)
    data = {"date": started, "duration_s": round(elapsed()), "machine": m,
            "args": {**vars(args), "cases_arg": ",".join(str(n) for n in args.cases)},
            "zero": zero, "phases": phases, "failed": failed or bool(left),
            "load": (load_start, loadavg_text())}
    data["cpu"] = cpu_since(cpu_start)
    if args.out.name != BEFORE and (args.out.parent / BEFORE).exists():
        data["before_link"] = BEFORE
    print(summary_text(data))
    if args.write:
        write_page(args.out, render(data))
    (workdir / "results.json").write_bytes(orjson.dumps(
        {**data, "phases": [vars(p) for p in phases]}, default=str,
        option=orjson.OPT_INDENT_2))
    if failed or args.keep_logs:
        progress(f"logs and results.json kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if data["failed"] else 0


def _cases(text: str) -> list[int]:
    out = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive counts")
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser("bench.scale", __doc__)
    p.add_argument("--cases", type=_cases, default=_cases("100000,300000,1000000"),
                   help="open-case counts to measure, in this order (default "
                        "100000,300000,1000000)")
    p.add_argument("--store", default="rocksdb://",
                   help="the worker's table store, ZHIDA_STORE (rocksdb:// or memory://)")
    p.add_argument("--window", type=int, default=20000,
                   help="most complaints produced ahead of the dispatched ones")
    p.add_argument("--sample", type=int, default=200,
                   help="case ids checked with GET /cases/{id} after each restart")
    add_step_args(p, progress=5.0,
                  stall="fail an N after this many seconds without a case dispatched")
    p.add_argument("--skip-zero", action="store_true",
                   help="skip the SIGKILL restart at 0 cases")
    add_output_args(p, ROOT / "docs" / "benchmarks-scale.md")
    args = p.parse_args(argv)
    if args.store.startswith("rocksdb"):
        try:
            import rocksdict  # noqa: F401
        except ImportError:
            p.error("--store rocksdb:// needs the rocksdict package: "
                    ".venv/bin/pip install rocksdict (or pass --store memory://)")
    return args


def load(results: Path) -> dict[str, Any]:
    """A run's results.json in the shape ``render`` takes (the page's test loads its sample
    the same way)."""
    data = orjson.loads(results.read_bytes())
    data["date"] = datetime.fromisoformat(data["date"])
    data["phases"] = [Phase(**p) for p in data["phases"]]
    return data


def main(argv: list[str] | None = None) -> int:
    set_label("scale")
    return run_or_render(run, parse(argv), render, load)


if __name__ == "__main__":
    sys.exit(main())
