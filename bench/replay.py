"""Replay's core on a synthetic month of a city: commands per second and memory.

    python -m bench.replay [--scale 1.0] [--seed 2026] [--cpu N]

Why: ``zhida replay`` (issue 25, docs/replay.md) decides a month of recorded inputs again
offline, with the pure core and no faust in the loop; the target is a month of a city,
1,000,000 inputs of ~300,000 cases, in under 5 minutes on one core. This measures that part:
``engine.core.replay.replay`` and ``unit_figures``, not the brokers' read (which a real run
adds, at the broker's pace).

The month is made in memory, the same for a seed: ``--scale`` × 300,000 complaints opened at
random instants over 30 days (more by day than by night) at random streets of the shipped
topology, each in a complaint category of the shipped catalogue, routed as the engine routes
it (``engine.core.routing.route``: the holder acts). Then each case's inputs, at random delays:
acknowledged (92 %, after ~40 min on average), 3 % of the acknowledged returned by their street
first (the district acknowledges), resolved (90 % of the acknowledged, after ~20 h), rated
(70 % of the resolved, after ~6 h: satisfied 80 %, basically 12 %, unsatisfied 8 %). About
3.4 inputs a case: ~1,000,000 at scale 1. Sorted by time, as replay reads them.

Timed, one process on one core (``--cpu`` pins it; the machine's other work is in the load
average on the page): the what-if replay (``recorded_firings=False``) under the shipped
policy (engine/data/policy.toml), so the simulated ticker fires every reminder, escalation and
unrated close the month holds; then ``unit_figures`` for the city and its 38 districts. Wall
and CPU seconds of each with ``time.perf_counter``/``time.process_time``; the resident memory
(``VmRSS``) after generating the month and its peak (``VmHWM``) at the end, both of the whole
process (the month's commands in memory, as the CLI holds them, included).
"""

from __future__ import annotations

import gc
import os
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    ROOT,
    add_page_args,
    bench_parser,
    generated,
    keep_results,
    load_json,
    loadavg,
    machine,
    mib,
    page_text,
    progress,
    set_label,
    vm_status,
    write_page,
)
from engine.core.model import ApplyRating, ApplyUpdate, Command, Complainant, OpenCase
from engine.core.routing import route
from engine.core.world import World
from engine.runtime.world import load_world
from schemas.inbound import CitizenFeedback, UnitUpdate

OUT = ROOT / "docs" / "benchmarks-replay.md"
CASES = 300_000  # at scale 1
DAYS = 30
START = datetime(2026, 11, 1, tzinfo=UTC) - timedelta(hours=8)  # midnight in Chongqing
TARGET_S = 300.0  # issue 25: a month in under 5 minutes on one core
COMPLAINANT = Complainant(complaint_id="bench", channel="hotline")  # shared: no PII made up
RATINGS = (("satisfied", 0.80), ("basically_satisfied", 0.12), ("unsatisfied", 0.08))


def _instant(rnd: random.Random) -> datetime:
    """A moment of the month, three times as likely by day (8-20 h) as by night."""
    while True:
        t = rnd.random() * DAYS * 86_400
        hour = (t / 3600 + 0) % 24  # START is local midnight
        if 8 <= hour < 20 or rnd.random() < 1 / 3:
            return START + timedelta(seconds=t)


def month(world: World, scale: float, seed: int) -> tuple[list[Command], Counter[str]]:
    """The month's inputs in time order, and how many of each kind."""
    rnd = random.Random(seed)
    topo = world.topology
    streets = topo.streets
    categories = [world.catalogue.by_code[c] for c in world.catalogue.codes("complaint")]
    out: list[Command] = []
    kinds: Counter[str] = Counter()
    n = int(CASES * scale)
    for i in range(n):
        case_id = f"ZDBENCH{i:08d}"
        at = _instant(rnd)
        category = rnd.choice(categories)
        location = {"unit": rnd.choice(streets)}
        holder = route(topo, category, location).unit
        out.append(Command(aggregate=case_id, at=at, body=OpenCase(
            source="complaint", key=f"b-{i}", category=category.code,
            priority=category.priority, location=location, summary="路面塌陷",
            reported_at=at, complainant=COMPLAINANT)))
        kinds["open"] += 1
        if rnd.random() >= 0.92:
            continue
        at += timedelta(minutes=rnd.expovariate(1 / 40))
        parent = topo.parent(holder)
        if topo.level(holder) == "street" and parent and rnd.random() < 0.03:
            out.append(_update(case_id, holder, "return", at, f"r{i}", reason="不属本街道"))
            kinds["return"] += 1
            holder = parent
            at += timedelta(minutes=rnd.expovariate(1 / 40))
        out.append(_update(case_id, holder, "ack", at, f"a{i}"))
        kinds["ack"] += 1
        if rnd.random() >= 0.90:
            continue
        at += timedelta(hours=rnd.expovariate(1 / 20))
        out.append(_update(case_id, holder, "resolve", at, f"s{i}"))
        kinds["resolve"] += 1
        if rnd.random() >= 0.70:
            continue
        at += timedelta(hours=rnd.expovariate(1 / 6))
        x, rating = rnd.random(), "unsatisfied"
        for name, p in RATINGS:
            if x < p:
                rating = name
                break
            x -= p
        out.append(Command(aggregate=case_id, at=at, body=ApplyRating(feedback=CitizenFeedback(
            feedback_id=f"f{i}", case_id=case_id, rating=rating, at=at))))
        kinds["rate"] += 1
    out.sort(key=lambda c: c.at)
    return out, kinds


def _update(case_id: str, actor: str, action: str, at: datetime, uid: str, **more: Any
            ) -> Command:
    return Command(aggregate=case_id, at=at, body=ApplyUpdate(update=UnitUpdate(
        update_id=uid, actor=actor, action=action, at=at, case_id=case_id, **more)))


def measure(scale: float, seed: int) -> dict[str, Any]:
    from engine.core.replay import replay, unit_figures

    world = load_world(today=START.date())
    t = time.perf_counter()
    commands, kinds = month(world, scale, seed)
    generated_s = time.perf_counter() - t
    gc.collect()
    rss_month = vm_status(os.getpid()).get("VmRSS")
    progress(f"{len(commands):,} inputs of {kinds['open']:,} cases generated in "
             f"{generated_s:.1f} s ({mib(rss_month)} resident); replaying")
    until = START + timedelta(days=DAYS)
    w0, c0 = time.perf_counter(), time.process_time()
    out = replay(commands, world, recorded_firings=False, until=until)
    w1, c1 = time.perf_counter(), time.process_time()
    units = [world.topology.city, *world.topology.districts]
    figures = unit_figures(out.events, world, START.astimezone(until.tzinfo).date(),
                           (until - timedelta(days=1)).date(), until, units)
    w2, c2 = time.perf_counter(), time.process_time()
    status = vm_status(os.getpid())
    city = figures[world.topology.city]
    events = sum(len(v) for v in out.events.values())
    progress(f"replay {w1 - w0:.1f} s ({len(commands) / (w1 - w0):,.0f} inputs/s), "
             f"unit_figures {w2 - w1:.1f} s, peak {mib(status.get('VmHWM'))}")
    return {
        "scale": scale, "seed": seed, "cases": kinds["open"], "inputs": len(commands),
        "kinds": dict(kinds), "generate_s": generated_s,
        "replay_s": w1 - w0, "replay_cpu_s": c1 - c0,
        "figures_s": w2 - w1, "figures_cpu_s": c2 - c1,
        "decided": out.decided, "fired": out.fired, "events": events,
        "rejected": sum(out.rejected.values()), "duplicates": out.duplicates,
        "rss_month": rss_month, "rss_peak": status.get("VmHWM"),
        "city": {k: city[k] for k in ("received", "on_time_ack_rate", "on_time_resolve_rate",
                                      "overdue", "reminders", "escalations",
                                      "escalations_by_level", "closed_unrated", "reopened")},
        "policy": world.policy.digest,
    }


def render(data: dict[str, Any]) -> str:
    """The page from the figures alone (no I/O), so a test can render it from a sample."""
    m, r = data["machine"], data["result"]
    total = r["replay_s"] + r["figures_s"]
    per_s = r["inputs"] / r["replay_s"] if r["replay_s"] else 0.0
    per_cpu_s = r["inputs"] / r["replay_cpu_s"] if r["replay_cpu_s"] else 0.0
    both_cpu = r["replay_cpu_s"] + r["figures_cpu_s"]
    month_s = both_cpu / r["inputs"] * 1_000_000 if r["inputs"] else float("inf")
    c = r["city"]
    levels = c["escalations_by_level"]
    kinds = ", ".join(f"{k} {v:,}" for k, v in r["kinds"].items())
    lines = [
        "# Replay: a synthetic month decided again by the core",
        "",
        *generated("bench.replay", "bench-replay"),
        "",
        f"Measured {data['date']:%Y-%m-%d %H:%M} UTC with",
        "",
        "```",
        data["command"],
        "```",
        "",
        "| | |",
        "|---|---|",
        f"| cores (`os.cpu_count()`) | {m['cores']} ({m['cpu']}); the run pinned to "
        f"{data.get('cpu', 'no core')} |",
        f"| RAM | {m['ram_gib']} GiB |",
        f"| Python | {m['python']} |",
        f"| engine commit | `{m['commit'] or '?'}` (working tree at the time of the run) |",
        f"| load average (1 min) at start / end | {data['load'][0]} / {data['load'][1]} |",
        "",
        f"Scale {r['scale']:g}: **{r['inputs']:,} inputs** of {r['cases']:,} cases over "
        f"{DAYS} days ({kinds}), generated in {r['generate_s']:.1f} s (not timed). Under "
        f"the shipped policy `{r['policy']}`:",
        "",
        "| | wall | CPU | per input |",
        "|---|---:|---:|---:|",
        f"| `replay` (what-if: the simulated ticker fires {r['fired']:,} timers; "
        f"{r['decided']:,} decisions, {r['events']:,} events) | **{r['replay_s']:.1f} s** | "
        f"{r['replay_cpu_s']:.1f} s | {r['replay_s'] / r['inputs'] * 1e6:.0f} µs |",
        f"| `unit_figures` (the city and its 38 districts) | {r['figures_s']:.1f} s | "
        f"{r['figures_cpu_s']:.1f} s | {r['figures_s'] / r['inputs'] * 1e6:.0f} µs |",
        f"| both | **{total:.1f} s** | {r['replay_cpu_s'] + r['figures_cpu_s']:.1f} s | |",
        "",
        f"**{per_cpu_s:,.0f} inputs/s of CPU time** ({per_s:,.0f}/s by the wall clock, "
        "on a machine others were using too: the load average above): a month of "
        f"1,000,000 inputs in about **{month_s:,.0f} CPU-s**, replay and figures together, "
        f"scaled linearly from this run (target: under {TARGET_S:.0f} s on one core). "
        "Resident memory: "
        f"{mib(r['rss_month'])} with the month's commands in memory, **{mib(r['rss_peak'])} "
        "peak** (the candidate's states and events added).",
        "",
        f"What the candidate month says for the city: {c['received']:,} orders received, "
        f"on-time acknowledgement {_pct(c['on_time_ack_rate'])}, resolution "
        f"{_pct(c['on_time_resolve_rate'])}, {c['reminders']:,} reminders, "
        f"{c['escalations']:,} escalations (to a district {levels['district']:,}, to the "
        f"city {levels['city']:,}, top {levels['top']:,}), {c['closed_unrated']:,} closed "
        f"unrated, {c['reopened']:,} reopened, {c['overdue']:,} overdue at the end; "
        f"{r['rejected']:,} recorded inputs the candidate's states refused.",
        "",
    ]
    lines += [f"Note: {n}" for n in data.get("notes", [])]
    return page_text(lines, __doc__)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("bench.replay", __doc__)
    p.add_argument("--scale", type=float, default=1.0,
                   help="cases as a share of 300,000 (default %(default)s: ~1,000,000 inputs)")
    p.add_argument("--seed", type=int, default=2026, help="random seed (default %(default)s)")
    p.add_argument("--cpu", type=int, default=None,
                   help="pin the process to this core (default: not pinned)")
    add_page_args(p, OUT)
    args = p.parse_args(argv)
    set_label("replay")
    if args.render_from:
        data = load_json(args.render_from)
        data["date"] = datetime.fromisoformat(data["date"])
        write_page(args.out, render(data))
        return 0
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    argv = sys.argv[1:] if argv is None else argv
    load = [loadavg()]
    result = measure(args.scale, args.seed)
    load.append(loadavg())
    data = {"date": datetime.now(UTC), "machine": machine(), "load": load, "result": result,
            "command": " ".join(["python -m bench.replay", *argv]),
            "cpu": f"core {args.cpu}" if args.cpu is not None else "no core"}
    keep_results(Path(tempfile.mkdtemp(prefix="zhida-bench-replay-")),
                  {**data, "date": data["date"].isoformat()}, [])
    write_page(args.out, render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
