"""A city day under kill -9 (issue 23, item 4): a day of Chongqing at 100x on several workers.

    python -m bench.cityday [--workers 3] [--speed 100] [--kill-every 180] [--down 5]
                            [--duration S] [--rate-scale 1] [--json FILE] [--render-from FILE]

Everything the engine produced is read back and checked: every input accounted for, no case
without its order, per-case ``seq`` gap-free, nothing forked, dead letters only for forged
updates; and at the end the city figures of every worker equal a recount from
``zhida.case.events`` (engine/core/figures.py ``recount``). Writes docs/benchmarks-cityday.md.

One embedded broker and ``--workers`` workers of one group (default 3), each on its own data
dir, all on the second-scale policy bench/data/cityday-policy.toml (ack 20 s, resolve 60 s,
feedback 30 s, supervision 20 s; urgent halves; 一事多诉 window 72 s, the shipped 2 h at 100x).
The simulated day runs 86,400 / ``--speed`` seconds (864 s at 100x; ``--duration`` sets it).
The load (``CityDayLoad``, on bench/crashload_load.py's ``Load``) follows a day's shape by hour:
30,000 complaints (``--rate-scale`` scales the volume) with the hotline's curve (night lows,
peaks at 10:00 and 15:00), bodies from the engine's simulator (engine/tools/sim/generator.py: real
streets weighted to the central districts, the catalogue's categories with a real-life skew,
5 % located by coordinates or address, 5 % followed by neighbours calling about the same
thing); 5,000 alarms with a flatter curve, among them the evening storm at 17:30: 400
waterlogging alarms from the 4 sensors of one street within 5 s, with a burst from 20-60
sensors across its district; 20 directives in office hours from the city centre or a district
centre to all districts, to the streets of one or two districts, or to a list of units.

It reacts to what it reads as the units and citizens would, each after a delay drawn as a
share of the stage's time (the order's or the event's ``due``): the order's target acknowledges
(80 % early, 12 % after the reminder, 8 % late), or, from a street, returns the case (8 %,
twice at most: the second binds the district, 首接负责); a district holding a returned case
assigns it to another of its streets, the city centre a triaged or boundary case to a street;
3 % of orders are never answered. The holder resolves (3 % never); a citizen rates 85 % of
resolved complaints within the feedback window (72 % satisfied, 13 % basically, 15 %
unsatisfied: the case reopens, supervision +1), the rest close unrated; the level above
verifies a resolved sensed case (5 % never). Directive targets acknowledge (one target of
every fifth directive never), and report when asked. One case in 50 and one directive task in
50 also gets a forged ack from a unit with no right to it: it must be dead-lettered
``unauthorized``.

Every ``--kill-every`` seconds one worker, in turn, is SIGKILLed (its process group) and
restarted on its data dir ``--down`` seconds later (bench/crashload.py ``CrashRun``). After the
day the load stops and the run waits until it is quiet: every deadline seen on an event has
passed (plus 5 s) and no output came for 10 s, so no timer can still fire. An independent
librdkafka reader has read every output topic from offset 0 throughout; the check
(``check_cityday``) runs on all of it; then ``GET /units/500000/stats?from=<first day>&to=<last
day>`` is asked of every worker until it equals the recount of the events read back (or 60 s
pass): all fields, the city's and each district's. Intake→dispatch latency is what the load
saw: from sending a complaint to reading its first order (the reader's own lag included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from bench.cityday_check import (
    FIELDS,
    LOSS,
    check_cityday,
    differences,
    latency_figures,
    recounted,
)
from bench.cityday_load import DAY, CityDayLoad, CityDaySent, DayConfig
from bench.crashload import CrashConfig, CrashResult, CrashRun
from bench.crashload_check import Report
from bench.crashload_load import CITY, Load, SentLog
from bench.crashload_read import Reader, Record
from bench.harness import (
    ROOT,
    bench_parser,
    generated,
    machine,
    page_text,
    run_or_render,
    write_page,
)
from engine.data.policy import Policy
from engine.runtime.settings import Settings
from engine.tools.broker import EmbeddedBroker

OUT = ROOT / "docs" / "benchmarks-cityday.md"
POLICY = ROOT / "bench" / "data" / "cityday-policy.toml"


# ---------------------------------------------------------------------------- the run


class CityDayRun(CrashRun):
    """crashload's run (workers killed in turn, an independent reader) with the city day's
    load, a drain that waits until no deadline can still fire, and the figures compared."""

    quiet_for = 10.0  # no new output for this long...
    grace = 5.0  # ...and this long past the last deadline seen: nothing can fire any more
    figures_timeout = 60.0

    def __init__(self, bootstrap: str, workdir: Path, config: CrashConfig, day: DayConfig,
                 tz: ZoneInfo, progress: Callable[[str], None] | None = None) -> None:
        super().__init__(bootstrap, workdir, config, progress)
        self.day = day
        self.tz = tz
        self.sent: CityDaySent | None = None  # kept for a test to check the checker with
        self.records: list[Record] = []
        self.loadavg: list[float] = []  # 1-minute load average, every 10 s

    async def run(self) -> CrashResult:
        """crashload's run, with the machine's load average sampled: on shared cores the
        latencies depend on what else runs, and the page says so."""
        sampler = asyncio.create_task(self._sample_load())
        try:
            return await super().run()
        finally:
            sampler.cancel()

    async def _sample_load(self, every: float = 10.0) -> None:
        while True:
            self.loadavg.append(os.getloadavg()[0])
            await asyncio.sleep(every)  # a sampling period, not a synchronisation

    def _make_load(self, reader: Reader) -> Load:
        return CityDayLoad(self.bootstrap, reader, self.day)

    async def _drain(self, load: Load, sent: SentLog, reader: Reader) -> Report:
        assert isinstance(sent, CityDaySent)
        self.sent = sent
        deadline = time.monotonic() + self.cfg.drain_timeout
        while True:
            await self._quiet(reader, deadline)
            report = await asyncio.to_thread(check_cityday, sent, reader.snapshot())
            if report.complete or time.monotonic() >= deadline:
                return report
            self.log(f"quiet but incomplete: {report.by_rule()}; waiting for more outputs")
            wait = min(self.cfg.drain_stall, deadline - time.monotonic())
            if not await asyncio.to_thread(reader.wait_for_more, len(reader), wait):
                return report  # nothing more is coming: what is missing is lost

    async def _quiet(self, reader: Reader, deadline: float) -> None:
        """Until every deadline seen on a case or directive event has passed (+ ``grace``)
        and no output has come for ``quiet_for`` s; progress every 5 s."""
        cursor, horizon = 0, datetime.min.replace(tzinfo=UTC)
        last_new = said = time.monotonic()
        while True:
            new, cursor = reader.since(cursor)
            for r in new:
                if r.kind in ("event", "devent"):
                    b = r.body()
                    for k in ("due", "supervise_due"):
                        if isinstance(b.get(k), str):
                            horizon = max(horizon, datetime.fromisoformat(b[k]))
            mono = time.monotonic()
            last_new = mono if new else last_new
            left = (horizon - datetime.now(UTC)).total_seconds() + self.grace
            idle = mono - last_new
            if (left <= 0 and idle >= self.quiet_for) or mono >= deadline:
                self.log(f"quiet: {cursor:,} outputs, idle {idle:.1f} s, last deadline "
                         f"{-left + self.grace:.1f} s ago")
                return
            if mono - said >= 5:
                said = mono
                self.log(f"waiting for quiet: {cursor:,} outputs, idle {idle:.1f} s, last "
                         f"deadline in {left - self.grace:.1f} s")
            await asyncio.to_thread(reader.wait_for_more, cursor,
                                    min(max(left, self.quiet_for - idle, 0.1), 5.0))

    async def _finish(self, load: Load, reader: Reader, report: Report) -> dict[str, Any]:
        assert isinstance(load, CityDayLoad)
        self._phase = "figures"
        seen = len(reader)
        self.records = reader.snapshot()
        want = await asyncio.to_thread(recounted, self.records, self.tz)
        answers = [await asyncio.to_thread(self._ask, i, want) for i in range(len(self.workers))]
        kills = [asdict(k) for k in self.kills]
        for a in answers:
            self.log(f"w{a['worker']}: figures {'equal' if a['equal'] else 'DIFFERENT'} "
                     f"after {a['seconds']:.1f} s, coverage {a['coverage']}")
        return {"day": {**asdict(self.day), "speed": self.day.speed},
                "storm": {"street": load.storm_street, "district": load.storm_district},
                "figures": {"from": want.get("from"), "to": want.get("to"),
                            "recount": {n: want.get(n) for n in FIELDS},
                            "workers": answers, "outputs_after_quiet": len(reader) - seen},
                "latency": latency_figures(load.latency, kills),
                "loadavg": {"mean": round(statistics.fmean(self.loadavg), 2) if self.loadavg
                            else None, "max": max(self.loadavg, default=None)}}

    def _ask(self, i: int, want: dict[str, Any]) -> dict[str, Any]:
        """Worker ``i``'s city figures, asked until they equal ``want`` with every partition
        counted, or ``figures_timeout`` s pass (its peers' shares may be 5 s old)."""
        w, t0 = self.workers[i], time.monotonic()
        path = f"/units/{CITY}/stats?from={want.get('from')}&to={want.get('to')}"
        while True:
            try:
                status, raw = w.get(path)
                answer = orjson.loads(raw) if status == 200 else {"error": status}
            except (OSError, orjson.JSONDecodeError) as e:
                answer = {"error": repr(e)}
            diff = differences(answer, want) if want else ["nothing to recount"]
            cov = answer.get("coverage") or {}
            whole = cov.get("partitions") is not None and cov.get("counted") == cov["partitions"]
            elapsed = time.monotonic() - t0
            if (not diff and whole) or elapsed >= self.figures_timeout:
                return {"worker": i, "equal": not diff and whole, "seconds": round(elapsed, 2),
                        "coverage": cov, "differences": diff[:20],
                        "answer": {n: answer.get(n) for n in FIELDS}}
            time.sleep(0.5)  # polling a condition with a deadline, not a synchronisation


# ---------------------------------------------------------------------------- entry point


def configs(args: argparse.Namespace) -> tuple[CrashConfig, DayConfig]:
    seconds = args.duration or DAY / args.speed
    scale = args.rate_scale
    day = DayConfig(seconds=seconds, complaints=round(30_000 * scale),
                    alarms=round(5_000 * scale), storm=min(400, round(5_000 * scale) // 2),
                    directives=args.directives, seed=args.seed)
    env = {"ZHIDA_POLICY": str(args.policy)}
    if args.standby_replicas is not None:
        env["ZHIDA_STANDBY_REPLICAS"] = str(args.standby_replicas)
        env["ZHIDA_STANDBY_REPLICAS_UNSAFE"] = "1" if args.standby_replicas else "0"
    cfg = CrashConfig(duration=seconds, kill_every=args.kill_every, kills=args.kills, rate=0.0,
                      min_uptime=10.0, jitter=5.0, tail=10.0, ready_timeout=120.0,
                      drain_timeout=args.drain_timeout, forge_every=day.forge_every,
                      directive_every=0, seed=args.seed, worker_env=env,
                      workers=args.workers, down=args.down)
    return cfg, day


def standby_replicas(cfg: CrashConfig) -> int:
    """The workers' standby replicas: the flag's, else the engine's default."""
    given = cfg.worker_env.get("ZHIDA_STANDBY_REPLICAS") or os.environ.get(
        "ZHIDA_STANDBY_REPLICAS")
    return int(given) if given else int(Settings.model_fields["standby_replicas"].default)


async def run(args: argparse.Namespace) -> int:
    cfg, day = configs(args)
    workdir = args.workdir or ROOT / "var" / "cityday" / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    tz = ZoneInfo(Policy.load(args.policy).calendar.timezone)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
    progress(f"broker on {broker.bootstrap}, workdir {workdir}; {cfg.workers} workers, "
             f"{day.speed:g}x: {day.seconds:g} s of load, {day.complaints:,} complaints, "
             f"{day.alarms:,} alarms, {day.directives} directives, a kill every "
             f"{cfg.kill_every:g} s")
    try:
        result = await CityDayRun(broker.bootstrap, workdir, cfg, day, tz, progress).run()
    finally:
        broker.stop()
    print(result.summary())
    data = {"date": datetime.now(UTC), "machine": machine(), "result": result.to_json(),
            "policy": str(Path(args.policy).resolve().relative_to(ROOT))
            if Path(args.policy).resolve().is_relative_to(ROOT) else str(args.policy),
            "standby_replicas": standby_replicas(cfg)}
    data["result"]["config"].pop("worker_env", None)  # a path on this machine
    out_json = args.json or workdir / "result.json"
    out_json.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NAIVE_UTC))
    progress(f"JSON result: {out_json}")
    write_page(args.out, render(data))
    return 0 if ok(data) else 1


def ok(data: dict[str, Any]) -> bool:
    """The run's verdict: no violation and every worker's figures equal to the recount."""
    r = data["result"]
    workers = r.get("extra", {}).get("figures", {}).get("workers", [])
    return bool(r["report"]["ok"] and workers and all(w["equal"] for w in workers))


def _n(x: Any) -> str:
    """A count with thousands separators; a rate as is; absent as —."""
    if x is None:
        return "—"
    return f"{x:,}" if isinstance(x, int) else f"{x:g}" if isinstance(x, float) else str(x)


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} s"


def render(data: dict[str, Any]) -> str:
    """The page from the run's figures alone (no I/O), so a test renders it from a sample."""
    m, r = data["machine"], data["result"]
    cfg, rep, extra = r["config"], r["report"], r.get("extra", {})
    day, fig, lat = extra.get("day", {}), extra.get("figures", {}), extra.get("latency", {})
    c, by_rule = rep["counts"], rep["violations_by_rule"]
    kills = r["kills"]
    workers = fig.get("workers", [])
    restarts = [k["restart_to_ready"] for k in kills]
    lost = {k: n for k, n in by_rule.items() if k in LOSS}
    forks = {k: by_rule.get(k, 0) for k in ("seq_fork", "seq_gap", "seq_order")}
    equal = bool(workers) and all(w["equal"] for w in workers)
    mark = {True: "✅", False: "❌"}
    lines = [
        "# A city day under kill -9",
        "",
        *generated("bench.cityday"),
        "",
        f"Measured {data['date']:%Y-%m-%d %H:%M} UTC on {m.get('cores')} cores "
        f"({m.get('cpu')}), {m.get('ram_gib')} GiB, commit {m.get('commit')}: the embedded "
        f"broker (Tansu), {cfg['workers']} workers of one group and the load on the same "
        f"machine, policy `{data.get('policy')}`, standby replicas "
        f"{_n(data.get('standby_replicas'))}. A day at {day.get('speed', 0):g}x: "
        f"{r['load_seconds']:.0f} s of load, then {r['drain_seconds']:.0f} s until quiet; "
        f"one worker SIGKILLed every {cfg['kill_every']:g} s in turn and restarted "
        f"{cfg['down']:g} s later ({len(kills)} kill{'' if len(kills) == 1 else 's'}). "
        f"Total {r['total_seconds'] / 60:.1f} min; the 1-minute load average over the run: "
        f"mean {_n(extra.get('loadavg', {}).get('mean'))}, max "
        f"{_n(extra.get('loadavg', {}).get('max'))} on {m.get('cores')} cores (whatever else "
        "ran on the machine shares them: the latencies depend on it, the checks do not).",
        "",
        "| target (issue 23) | measured | |",
        "|---|---|---|",
        f"| 0 inputs lost or stuck | {sum(lost.values())} violations of the loss rules "
        f"({lost or 'none'}) | {mark[not lost]} |",
        f"| 0 forked histories | forks {forks['seq_fork']}, gaps {forks['seq_gap']}, out of "
        f"order {forks['seq_order']} | {mark[not any(forks.values())]} |",
        "| the city figures of every worker equal the recount from `zhida.case.events` | "
        + "; ".join(f"w{w['worker']}: {'equal' if w['equal'] else 'different'} "
                    f"({w['seconds']:.1f} s, {(w.get('coverage') or {}).get('counted')}/"
                    f"{(w.get('coverage') or {}).get('partitions')} partitions)"
                    for w in workers) + f" | {mark[equal]} |",
        f"| every worker ready again within 20 s of its restart | "
        f"{'max ' + _s(max(restarts)) if restarts else 'no kill'} | "
        f"{mark[all(x <= 20 for x in restarts)]} |",
        f"| every check (bench/crashload_check.py's and the city day's) | "
        f"{'no violation' if rep['ok'] else by_rule} | {mark[rep['ok']]} |",
        "",
        *_inputs_table(c, day, extra),
        *_kills_table(kills, lat),
        *_figures_table(fig, workers),
        *_outputs_lines(c, rep),
        *_latency_lines(lat),
        *_violations_lines(rep),
    ]
    return page_text(lines, __doc__)


def _inputs_table(c: dict[str, Any], day: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    ups = c.get("updates_by_action", {})
    ratings = c.get("ratings_by_value", {})
    storm = extra.get("storm", {})
    return [
        "## Inputs and what became of them",
        "",
        "| input | sent | outcome |",
        "|---|---:|---|",
        f"| complaints | {_n(c.get('complaints_sent'))} | {_n(c.get('complaints_opened'))} "
        f"opened a case, {_n(c.get('complaints_joined'))} joined an open one (一事多诉) |",
        f"| alarms | {_n(c.get('alarms_sent'))} | {_n(c.get('alarm_cases'))} cases, "
        f"{_n(c.get('alarms_joined'))} joined one |",
        f"| … the storm (street {storm.get('street')}, {day.get('storm_hour', 0):g} h) | "
        f"{_n(c.get('storm_alarms'))} | the street's {_n(c.get('storm_street_alarms'))} "
        f"waterlogging alarms opened {_n(c.get('storm_street_cases'))} case(s), the others "
        "joined; the rest fell across its district |",
        f"| unit updates | {_n(c.get('updates_sent'))} | "
        + ", ".join(f"{k} {_n(n)}" for k, n in sorted(ups.items()))
        + f"; {_n(c.get('updates_as_event'))} as events (directive tasks included), "
        f"{_n(c.get('updates_dead_lettered'))} dead-lettered |",
        f"| ratings | {_n(c.get('ratings_sent'))} | "
        + ", ".join(f"{k} {_n(n)}" for k, n in sorted(ratings.items()))
        + f"; {_n(c.get('ratings_late'))} came after the feedback deadline had closed the "
        f"case (dead-lettered `invalid_transition`), {_n(c.get('ratings_refused_in_time'))} "
        "of them sent (their `at`) by that deadline |",
        f"| directives | {_n(c.get('directives_sent'))} | {_n(c.get('tasks_sent'))} tasks, "
        f"{_n(c.get('directive_acks_sent'))} acks, {_n(c.get('reports_sent'))} reports; "
        f"{_n(c.get('directives_completed'))} of {_n(c.get('directives_to_complete'))} "
        "completed that could |",
        "",
    ]


def _kills_table(kills: list[dict[str, Any]], lat: dict[str, Any]) -> list[str]:
    after = {round(a["at"], 3): a for a in lat.get("after_kills", [])}
    rows = [f"| {i} | w{k['worker']} | {k['at']:.0f} s | {k['uptime']:.0f} s | "
            f"{_s(k['restart_to_ready'])} | {_s(after.get(round(k['at'], 3), {}).get('worst_p99'))}"
            f" | {_s(after.get(round(k['at'], 3), {}).get('under_1s_after'))} |"
            for i, k in enumerate(kills, 1)]
    return ["## Kills", "",
            "| kill | worker | at (load) | up for | restart to ready | worst p99 in the next "
            "60 s | p99 under 1 s again after |",
            "|---:|---|---:|---:|---:|---:|---:|", *rows, ""]


def _figures_table(fig: dict[str, Any], workers: list[dict[str, Any]]) -> list[str]:
    want = fig.get("recount", {})
    head = " | ".join(f"w{w['worker']}" for w in workers)
    rows = [f"| `{n}` | {_n(want.get(n))} | "
            + " | ".join(_n(w["answer"].get(n)) for w in workers) + " |" for n in FIELDS]
    diffs = [f"- w{w['worker']}: {'; '.join(w['differences'])}" for w in workers
             if w["differences"]]
    return [f"## Figures: the city (500000), {fig.get('from')} to {fig.get('to')}", "",
            "Recounted from the case events read back (`engine/core/figures.py` `recount`, "
            "each case's events once per seq) against `GET /units/500000/stats` of each "
            "worker once the run was quiet; every district's figures (`children`) are "
            f"compared too. Outputs after quiet: {fig.get('outputs_after_quiet')}.", "",
            f"| figure | recount | {head} |", "|---|---:|" + "---:|" * len(workers), *rows,
            "", *diffs, *([""] if diffs else [])]


def _outputs_lines(c: dict[str, Any], rep: dict[str, Any]) -> list[str]:
    types = dict(sorted(rep.get("event_types", {}).items(), key=lambda kv: -kv[1]))
    return ["## Outputs read back", "",
            f"{_n(c.get('events'))} case events ({_n(c.get('events_duplicates'))} redelivered "
            f"copies) on {_n(c.get('cases'))} cases ({_n(c.get('cases_open'))} still open at "
            f"the end), {_n(c.get('orders'))} orders "
            f"({', '.join(f'{k} {_n(n)}' for k, n in c.get('orders_by_kind', {}).items())}), "
            f"{_n(c.get('notices'))} notifications, {_n(c.get('dead'))} dead letters "
            f"({', '.join(f'{k} {_n(n)}' for k, n in rep.get('dead_letter_reasons', {}).items())}"
            ").", "",
            "Case events by type: " + ", ".join(f"`{k}` {_n(n)}" for k, n in types.items())
            + ".", ""]


def _latency_lines(lat: dict[str, Any]) -> list[str]:
    return ["## Intake → first order, as the load saw it", "",
            f"{_n(lat.get('n'))} complaints that opened a case: p50 {_s(lat.get('p50'))}, "
            f"p99 {_s(lat.get('p99'))}, max {_s(lat.get('max'))} (from sending the complaint "
            "to reading its first order: the reader's lag included; the kills' effect per "
            "kill above).", ""]


def _violations_lines(rep: dict[str, Any]) -> list[str]:
    vs = rep.get("violations", [])
    if not vs:
        return []
    return ["## Violations", "", *[f"- `{v['rule']}` {v['subject']}: {v['detail']}"
                                   for v in vs[:30]],
            *([f"- … {len(vs) - 30} more"] if len(vs) > 30 else []), ""]


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("bench.cityday", __doc__)
    p.add_argument("--workers", type=int, default=3, help="workers of one group (default 3)")
    p.add_argument("--speed", type=float, default=100.0, help="the day runs this many times "
                   "faster than real time (default 100: 864 s)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of load for the day (overrides --speed)")
    p.add_argument("--rate-scale", type=float, default=1.0,
                   help="scales the day's volume (30,000 complaints, 5,000 alarms)")
    p.add_argument("--kill-every", type=float, default=180.0, help="seconds between SIGKILLs")
    p.add_argument("--kills", type=int, default=None, help="exact number of kills")
    p.add_argument("--down", type=float, default=5.0, help="seconds a killed worker stays down")
    p.add_argument("--directives", type=int, default=20)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--standby-replicas", type=int, default=None,
                   help="the workers' ZHIDA_STANDBY_REPLICAS (default: the engine's default)")
    p.add_argument("--policy", type=Path, default=POLICY)
    p.add_argument("--drain-timeout", type=float, default=600.0,
                   help="cap on the wait for quiet and complete outputs after the load")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="the JSON result (default "
                   "<workdir>/result.json)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--render-from", type=Path, default=None,
                   help="only render the page from a JSON result of an earlier run")
    return run_or_render(run, p.parse_args(argv), render, load)


def load(path: Path) -> dict[str, Any]:
    """A run's JSON result in the shape ``render`` takes."""
    data = orjson.loads(path.read_bytes())
    data["date"] = datetime.fromisoformat(data["date"])
    return data


if __name__ == "__main__":
    sys.exit(main())
