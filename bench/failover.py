"""Failover (issue 23, part 2): SIGKILL one of three workers, time until its partitions work.

    python -m bench.failover [--cases 0,10000,300000] [--standby 0,1] [--kills 3]
                             [--partitions 6] [--rate 20] [--short-session 1.5]

Each phase (one N, one standby setting) runs on a fresh embedded broker (Tansu, memory
storage) with three engine workers of one group (`python -m engine.tools.cli worker`: one app id and
topic prefix, own data dir and HTTP port, `ZHIDA_PARTITIONS`, `ZHIDA_STANDBY_REPLICAS`, merging
off). N open cases are made the way bench/scale.py makes them fast: the open-case commands the
intake agent would forward, written straight to `case.commands` in batches of 5,000 (never more
than 20,000 ahead of the cases dispatched, counted from every worker's
`zhida_case_events_total{type="dispatched"}`). Then a steady trickle of complaints (`--rate`
a second, their ids chosen so that their case ids' partitions on `case.commands`,
`engine.runtime.store.partition_of`, take every partition in turn) runs through intake for the rest
of
the phase, and a plain aiokafka consumer reads every dispatch topic from its end.

Before each kill the group is quiet: every worker ready, every worker's
`GET /units/500000/stats` with `coverage.counted == coverage.partitions`, every worker's CPU
under a third of a core (standbys caught up with the build) for 3 s. The victim (the workers
in turn) is the owner of the partitions its `/units/500000/stats` lists as held; its session is
SIGKILLed (`os.killpg`). From the kill, measured: **(a)** the first dispatch order read for a
complaint sent after the kill whose case is on a partition the victim held (and the last of
those partitions to get one); **(b)** the first moment both survivors answer the city whole
again (polled every 0.2 s); then the victim is started again on its data dir, and **(c)** its
time from process start to `/readyz` 200, and the time until all three answer whole again.
The survivors' logs give the recovery behind each figure: rebalances (`generation id` lines),
the `bulk_restore` records a survivor read because it had no copy of a partition, and when it
was ready. The 1-minute load average (`/proc/loadavg`) is taken at each kill: the machine is
shared. At the end of each phase every trickle complaint must have its dispatch order, and
every worker's city figure `received` must equal N plus the trickle.

A last phase repeats the small N with a shorter consumer-group session (`--short-session`,
`ZHIDA_SESSION_TIMEOUT`; the heartbeat stays at the engine's 1 s) and counts rebalances that no
kill or start caused while the build saturates the machine: false evictions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.failover_phase import DEFAULT_REBALANCE, DEFAULT_SESSION, phase
from bench.harness import (
    ROOT,
    add_page_args,
    bench_parser,
    generated,
    keep_results,
    machine,
    notes,
    page_text,
    progress,
    run_or_render,
    stop_all,
    write_page,
)
from bench.workers import Group
from engine.runtime.settings import Settings

__all__ = ["Group", "cold_partitions", "main", "render"]  # Group: named by capacity's page

OUT = ROOT / "docs" / "benchmarks-failover.md"
TARGET_FIRST_S = 15.0  # issue 23: first new case on the dead worker's partitions, at 300k
TARGET_WHOLE_S = 30.0  # issue 23: complete coverage again after a SIGKILL
TARGET_READY_S = 20.0  # issue 23: every worker ready again after its restart
TARGET_N = 300_000


def med(values: list[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return round(statistics.median(xs), 2) if xs else None


# ---------------------------------------------------------------- faust's assignor

def cold_partitions(partitions: int, workers: int, replicas: int) -> dict[str, Any]:
    """What faust's own assignor (the one the workers run) does on a fresh group of
    ``workers`` when each one dies in turn: the partitions of the dead worker given to a
    survivor that held no standby copy of them (it replays their changelog)."""
    from faust.assignor.client_assignment import CopartitionedAssignment
    from faust.assignor.copartitioned_assignor import CopartitionedAssignor

    def assign(clients: dict[str, Any]) -> dict[str, Any]:
        return dict(CopartitionedAssignor({"t"}, clients, partitions, replicas)
                    .get_assignment())

    fresh = assign({f"w{i}": CopartitionedAssignment(topics={"t"}) for i in range(workers)})
    cold = held = 0
    for dead, a in fresh.items():
        after = assign({k: CopartitionedAssignment(actives=set(v.actives),
                                                   standbys=set(v.standbys), topics={"t"})
                        for k, v in fresh.items() if k != dead})
        for p in a.actives:
            owner = next(k for k, v in after.items() if p in v.actives)
            held += 1
            cold += p not in fresh[owner].standbys
    return {"partitions": partitions, "workers": workers, "replicas": replicas,
            "assignment": {k: [sorted(v.actives), sorted(v.standbys)]
                           for k, v in sorted(fresh.items())},
            "cold": cold, "moved": held}


# ---------------------------------------------------------------- the run

async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="zhida-failover-"))
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    phases: list[dict[str, Any]] = []
    progress(f"workdir {workdir}")
    try:
        for n in args.cases:
            for standby in args.standby:
                phases.append(await phase(args, workdir, n, standby, None,
                                          f"n{n}s{standby}"))
        if args.short_session:
            for n in (args.short_session_cases, ):
                phases.append(await phase(args, workdir, n, args.short_session_standby,
                                          (args.short_session, args.short_rebalance),
                                          f"n{n}short"))
    finally:
        left = stop_all()
    assignor = [cold_partitions(p, 3, r) for p in sorted({args.partitions, Settings().partitions})
                for r in sorted({*args.standby, 1, 2})]
    data = {"date": started.isoformat(), "duration_s": round(time.perf_counter() - t0),
            "machine": machine(), "argv": sys.argv[1:], "partitions": args.partitions,
            "rate": args.rate, "kills": args.kills, "phases": phases, "left": left,
            "assignor": assignor, "session": DEFAULT_SESSION, "rebalance": DEFAULT_REBALANCE}
    # no workdir in the figures: a path on this machine (the results file lives there)
    keep_results(workdir, data, left)
    write_page(args.out, render(data))
    return 0 if all(p["ok"] for p in phases) and not left else 1


# ---------------------------------------------------------------- the page

def _s(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f} s"


def _default_timing(p: dict[str, Any], data: dict[str, Any]) -> bool:
    return (p["session"], p.get("rebalance")) == (data["session"], data["rebalance"])


def _phase_name(p: dict[str, Any], data: dict[str, Any]) -> str:
    timing = "" if _default_timing(p, data) else \
        f", session {p['session']:g} s / rebalance {p['rebalance']:g} s"
    return f"{p['n']:,} open, standby {p['standby']}{timing}"


def _verdict(v: float | None, target: float) -> str:
    if v is None:
        return "–"
    return f"**{v:,.1f} s** {'✅' if v <= target else '❌'}"


def summarize(p: dict[str, Any]) -> dict[str, float | None]:
    """Medians over a phase's kills."""
    keys = ("first_s", "all_held_s", "whole_s", "restart_ready_s", "all_whole_after_restart_s",
            "load", "survivor_ready_s", "behind", "bulk_records", "rebalances")
    return {k: med([x.get(k) for x in p["kills"]]) for k in keys}


def _at(data: dict[str, Any], n: int, default_timing: bool = True
        ) -> dict[int, dict[str, float | None]]:
    return {p["standby"]: summarize(p) for p in data["phases"]
            if p["n"] == n and _default_timing(p, data) == default_timing and p["kills"]}


def render(data: dict[str, Any]) -> str:
    """The page from the figures alone (no I/O), so a test renders it from a sample."""
    m = data["machine"]
    phases = data["phases"]
    date = datetime.fromisoformat(data["date"])
    lines = [
        "# Failover: a SIGKILLed worker's partitions, with and without standby replicas",
        "",
        *generated("bench.failover", make="bench-failover"),
        "",
        f"Measured {date:%Y-%m-%d %H:%M} UTC (run took {data['duration_s'] / 60:,.0f} min) on "
        f"{m['cores']} cores ({m['cpu']}), commit `{m['commit']}` (working tree): three "
        f"workers of one group, {data['partitions']} partitions, a trickle of "
        f"{data['rate']:g} complaints/s, {data['kills']} kills per phase (the workers in "
        f"turn), the engine's group timing (session {data['session']:g} s, rebalance "
        f"{data['rebalance']:g} s, heartbeat 1 s) unless a phase says otherwise. The machine is "
        "shared with other jobs: the 1-minute load average at each kill is next to it. "
        f"Processes left running at the end: {', '.join(data['left']) or 'none'}.",
        "",
        "## Summary (medians over the kills)",
        "",
        "| phase | (a) first new case on the dead worker's partitions | (a) on every one of "
        "them | (b) survivors whole again | (c) restarted worker to `/readyz` | all three whole "
        "after the restart | changelog records the survivors were behind | load (1 min) | "
        "checks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in phases:
        s = summarize(p)
        behind_ = "–" if s["behind"] is None else f"{s['behind']:,.0f}"
        check = "ok" if p["ok"] else "**failed**" + (
            f": {p['error'][:160]}" if p.get("error") else "")
        lines.append(
            f"| {_phase_name(p, data)} | {_s(s['first_s'])} | {_s(s['all_held_s'])} | "
            f"{_s(s['whole_s'])} | {_s(s['restart_ready_s'])} | "
            f"{_s(s['all_whole_after_restart_s'])} | {behind_} | {s['load'] or '–'} | "
            f"{check} |")
    lines += ["", "## Against issue 23's targets", ""]
    at = _at(data, TARGET_N)
    if at:
        settings = sorted(at)
        lines += ["| target | " + " | ".join(f"standby {r}" for r in settings) + " |",
                  "|---|" + "---|" * len(settings)]

        def row(label: str, key: str, target: float) -> str:
            return f"| {label} | " + " | ".join(
                _verdict(at[r].get(key), target) for r in settings) + " |"

        lines += [
            row(f"{TARGET_N:,} open cases: first new case on the dead worker's partitions "
                f"≤ {TARGET_FIRST_S:g} s after the kill (median)", "first_s", TARGET_FIRST_S),
            row(f"… on every partition it held ≤ {TARGET_FIRST_S:g} s", "all_held_s",
                TARGET_FIRST_S),
            row(f"complete coverage again ≤ {TARGET_WHOLE_S:g} s after the kill", "whole_s",
                TARGET_WHOLE_S),
            row(f"restarted worker ready ≤ {TARGET_READY_S:g} s after its restart",
                "restart_ready_s", TARGET_READY_S),
        ]
    else:
        lines.append(f"(no phase at {TARGET_N:,} open cases in this run)")
    lines += ["", "## Every kill", "",
              "| phase | victim (held) | load | (a) first | (a) every held | (b) whole | "
              "survivors ready | rebalances seen by survivors | records behind (in bulk) | "
              "(c) restart to ready | all whole after restart |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in phases:
        for k in p["kills"]:
            lines.append(
                f"| {_phase_name(p, data)} | {k['victim']} {k['held']} | "
                f"{k.get('load') or '–'} | {_s(k.get('first_s'))} | "
                f"{_s(k.get('all_held_s'))} | {_s(k.get('whole_s'))} | "
                f"{_s(k.get('survivor_ready_s'))} | {k.get('rebalances', '–')} | "
                f"{k.get('behind', 0):,} ({k.get('bulk_records', 0):,} in "
                f"{k.get('bulk_seconds', 0):g} s) | {_s(k.get('restart_ready_s'))} | "
                f"{_s(k.get('all_whole_after_restart_s'))} |")
    lines += ["", "## Building, standbys catching up, rebalances under load", "",
              "| phase | workers start to ready | build | quiet after the build (standbys "
              "caught up) | rebalances during the build | trickle dispatched | city "
              "`received` on each worker at the end |",
              "|---|---|---:|---:|---:|---|---|"]
    for p in phases:
        b = p.get("build")
        c = p.get("checks") or {}
        built = "–" if not b else f"{b['seconds']:,.0f} s, {b['rate']:,.0f} cases/s"
        starts = ", ".join(f"{x:.1f}" for x in p.get("start_s") or [])
        lines.append(
            f"| {_phase_name(p, data)} | {starts or '–'} s | {built} | "
            f"{_s(p.get('quiet_after_build_s'))} | {p.get('build_rebalances', '–')} | "
            f"{c.get('trickle_dispatched', '–')}/{c.get('trickle_sent', '–')} | "
            f"{c.get('received', '–')} (want {c.get('expected_received', '–')}) |")
    lines += ["", "## faust's assignor: where the standbys are", "",
              "faust-streaming 0.15.3's `CopartitionedAssignor` (the one the workers run), on a "
              "fresh group of three, each worker dying in turn: the dead worker's partitions "
              "given to a survivor that held no standby copy of them (computed with faust's "
              "own classes, `bench.failover.cold_partitions`).", "",
              "| partitions | standby replicas | fresh assignment (actives / standbys) | "
              "partitions moved cold |", "|---:|---:|---|---:|"]
    for a in data.get("assignor") or []:
        asg = "; ".join(f"{w}: {v[0]} / {v[1]}" for w, v in a["assignment"].items())
        lines.append(f"| {a['partitions']} | {a['replicas']} | {asg} | "
                     f"{a['cold']} of {a['moved']} |")
    lines += ["", "## Reading", "", *_reading(data), ""]
    return page_text(lines, __doc__)


def _kills(data: dict[str, Any], standby: int | None = None, default_timing: bool = True
           ) -> list[dict[str, Any]]:
    return [k | {"n": p["n"], "standby": p["standby"]} for p in data["phases"]
            if _default_timing(p, data) == default_timing
            and (standby is None or p["standby"] == standby) for k in p["kills"]]


def _reading(data: dict[str, Any]) -> list[str]:
    """What the figures say, computed from them; then any notes recorded with the run."""
    out: list[str] = []
    at = _at(data, TARGET_N)
    for r, s in sorted(at.items()):
        out.append(
            f"- **{TARGET_N:,} open cases, standby {r}**: the first new case on the dead "
            f"worker's partitions {_s(s['first_s'])} after the kill, on the last of them "
            f"{_s(s['all_held_s'])} (target {TARGET_FIRST_S:g} s); the survivors were "
            f"{s['behind'] or 0:,.0f} changelog records behind on the partitions they took "
            f"(median); the city whole again after {_s(s['whole_s'])}; load {s['load']}.")
    zero = _at(data, 0)
    if zero:
        floor = min((s["survivor_ready_s"] for s in zero.values()
                     if s["survivor_ready_s"] is not None), default=None)
        out.append(
            f"- **The floor** (no open cases): survivors ready {_s(floor)} after the kill "
            f"at best. That is the group's timing, not the state: the broker notices the dead "
            f"member after its session ({data['session']:g} s), waits up to the rebalance "
            f"timeout ({data['rebalance']:g} s) for the members to rejoin, then the moved "
            "partitions are recovered and fetched. Standbys cannot cut this part; only the "
            "group timing can (below).")
    def is_cold(k: dict[str, Any]) -> bool:
        """Behind by at least one record per open case of a partition: a partition read
        from (nearly) its start, not a standby's tail."""
        return (k.get("behind") or 0) >= k["n"] / data["partitions"]

    warm = [k for k in _kills(data) if k["standby"] and k["n"] and not is_cold(k)]
    cold = [k for k in _kills(data, 0) if k["n"] == TARGET_N]
    if warm and cold:
        behind_ = [k.get("behind") or 0 for k in warm]
        out.append(
            f"- **A promoted standby reads only the tail**: in the {len(warm)} kills with "
            f"standbys and open cases where every moved partition went to a worker holding "
            f"its standby, the survivors were {min(behind_):,}–{max(behind_):,} changelog "
            f"records behind (median {med(behind_) or 0:,.0f}: what arrived since the "
            f"standby's last read). Without standbys at {TARGET_N:,} cases they were "
            f"{med([k.get('behind') for k in cold]) or 0:,.0f} behind (median), read by the "
            "bulk restore (engine/runtime/kafka/recovery.py) at "
            + ", ".join(f"{k['bulk_records'] / k['bulk_seconds']:,.0f} records/s (load "
                        f"{k['load']})" for k in cold if k.get("bulk_seconds"))
            + ": the bulk restore is what keeps even a cold takeover of 100,000 cases within "
            "seconds; faust's own replay (~110 µs a record, NOTES.md) would take ~45 s.")
    one = next((a for a in data.get("assignor") or []
                if a["partitions"] == data["partitions"] and a["replicas"] == 1), None)
    if one:
        ones = [k for k in _kills(data, 1) if k["n"]]
        out.append(
            f"- **One standby is not a warm copy of everything with three workers**: faust's "
            f"assignor gives a worker's partitions' standbys to one other worker, and on a "
            f"kill that worker may take only as many actives as balance allows, so "
            f"{one['cold']} of the {one['moved']} moved partitions go to a worker without a "
            f"copy (table above); here {sum(map(is_cold, ones))} of the {len(ones)} kills "
            "with one standby and open cases read a partition from its start (later "
            "assignments differ from a fresh group's: faust keeps them sticky across the "
            "restarts). `ZHIDA_STANDBY_REPLICAS` = workers − 1 (2 for three) leaves none "
            "cold, at the price of every worker applying every partition's changelog; with "
            "two workers, 1 is already that.")
    for p in (p for p in data["phases"] if not _default_timing(p, data) and p["kills"]):
        s = summarize(p)
        same = [k for k in _kills(data, p["standby"]) if k["n"]]
        ref = (f" (the engine's {data['session']:g} s / {data['rebalance']:g} s with the same "
               f"standbys and open cases: {_s(med([k.get('first_s') for k in same]))}, "
               f"survivors ready {_s(med([k.get('survivor_ready_s') for k in same]))})"
               if same else "")
        out.append(
            f"- **Session {p['session']:g} s / rebalance {p['rebalance']:g} s** "
            f"({p['n']:,} open, standby {p['standby']}): first new case {_s(s['first_s'])}, "
            f"survivors ready {_s(s['survivor_ready_s'])}{ref}. "
            f"{p.get('build_rebalances', '–')} rebalance(s) while the build kept the machine "
            f"busy ({(p.get('build') or {}).get('seconds', '–')} s, load "
            f"{p.get('load_start')}), {s['rebalances']} per kill as expected (one per "
            "survivor): no false eviction seen. The risk is the margin: with the engine's "
            "1 s heartbeat a member whose heartbeats stall for about a session (a starved "
            "process on a saturated machine, a long pause) is evicted, and an eviction is "
            "a failover of its partitions. Real Kafka refuses sessions under "
            "`group.min.session.timeout.ms` (6 s by default), so there the levers are "
            "standbys and static membership.")
    out += notes(data)
    return out or ["(nothing measured)"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser("bench.failover", __doc__)

    def ints(s: str) -> list[int]:
        return [int(x.replace("_", "").replace("k", "000")) for x in s.split(",") if x]

    p.add_argument("--cases", type=ints, default=[0, 10_000, 300_000])
    p.add_argument("--standby", type=ints, default=[0, 1, 2])
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--rate", type=float, default=20.0, help="trickle complaints a second")
    p.add_argument("--window", type=int, default=20_000)
    p.add_argument("--timeout", type=float, default=180.0, help="per measured step, s")
    p.add_argument("--quiet-timeout", type=float, default=600.0)
    p.add_argument("--short-session", type=float, default=1.5,
                   help="session timeout of the last phase, s (0: skip it)")
    p.add_argument("--short-rebalance", type=float, default=1.0,
                   help="rebalance timeout of the last phase, s")
    p.add_argument("--short-session-cases", type=int, default=50_000)
    p.add_argument("--short-session-standby", type=int, default=1)
    add_page_args(p, OUT)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_or_render(run, parse(argv), render)


if __name__ == "__main__":
    sys.exit(main())
