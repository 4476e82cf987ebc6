"""``zhida demo``: embedded broker + a worker process + the simulator, then a summary.

Everything runs on this machine in a temporary directory (broker log, worker log, worker
data, the demo's SLA policy); it is removed after a successful or interrupted run and kept,
with its path printed, after a failure. The worker's SLA deadlines are the default policy divided by
``--speed``, so the engine's deadlines and the simulated centres share one clock: a centre
that acknowledges late in simulated time is late for the engine too. So are the merge and
hotspot windows: two simulated hours of 一事多诉 merge into one case, and a place's later
complaints open cases of their own (routed by a ruling's precedent, if any); counts such as
``hotspot_min_reports`` are kept.

The summary ends with what the engine learnt (``zhida.insights`` and the precedent-routed
cases, read by the simulator): hotspots, disputes, rulings, and the top hotspot, whose
current counts come from ``GET /hotspots`` when the worker answers it.

With ``--keep`` the demo prints the board's address after the summary and keeps the broker and
the worker up until Ctrl-C (or SIGTERM), so the board can be looked at with the demo's figures
in it; then it stops them as below, exit 0.

The broker and the worker are stopped in a ``finally`` block (worker: SIGINT, ≤10 s, then
SIGKILL to its process group; broker: ``EmbeddedBroker.stop``), and the demo checks that no
process it started is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from engine.data import policy as policy_module
from engine.data.topology import CITY_TOPIC_KEY, Topology
from engine.tools import keys
from engine.tools.broker import EmbeddedBroker, free_port
from engine.tools.inert import visible
from engine.tools.process import READY_TIMEOUT, WorkerError, WorkerProcess
from engine.tools.sim import SimStats
from engine.tools.sim.cli import ProgressLine, fmt_ms, run_simulation

_duration = TypeAdapter(timedelta)
WINDOWS = ("merge_window", "hotspot_window")  # [policy] durations on the simulation's clock


class DemoError(Exception):
    pass


# ---- the demo's policy: deadlines on the simulation's clock ----


def scaled_policy(speed: float, dest: Path, source: Path | None = None) -> Path:
    """Write the SLA policy with every stage duration, and the merge and hotspot windows,
    divided by ``speed`` (a zero window stays zero: merging off)."""
    raw = tomllib.loads(Path(source or policy_module.DATA).read_text(encoding="utf-8"))
    for table in ("stages", "categories"):
        for name, stages in raw.get(table, {}).items():
            raw[table][name] = {
                k: _scale(v, speed) for k, v in stages.items()
            }
    general = raw.setdefault("policy", {})
    for key in WINDOWS:
        general[key] = _scale(general.get(key, policy_module.General.model_fields[key].default),
                              speed)
    dest.write_text(_toml(raw), encoding="utf-8")
    return dest


def _scale(value: Any, speed: float) -> Any:
    if not isinstance(value, str):
        return value  # a number or a table: not a duration
    try:
        seconds = _duration.validate_python(value).total_seconds()
    except Exception:
        return value  # not a duration: keep it
    if seconds <= 0:
        return value
    return f"PT{max(seconds / speed, 0.001):.3f}S"


def _toml(data: dict[str, Any], path: tuple[str, ...] = ()) -> str:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    out = []
    if scalars and path:
        out.append(f"[{'.'.join(path)}]")
    out += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    if out:
        out.append("")
    for k, v in tables.items():
        out.append(_toml(v, (*path, k)))
    return "\n".join(out)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---- metrics ----


class Metrics:
    def __init__(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples
        ]

    def total(self, name: str, **labels: str) -> int:
        return int(sum(v for n, ls, v in self.samples
                       if n == name and all(ls.get(k) == x for k, x in labels.items())))

    def by_label(self, name: str, label: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for n, ls, v in self.samples:
            if n == name and label in ls and v:
                out[ls[label]] = out.get(ls[label], 0) + int(v)
        return out


# ---- leftovers ----


def processes_matching(needles: list[str]) -> list[tuple[int, str]]:
    """Live processes (not zombies) whose command line contains one of ``needles``."""
    found = []
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(n in cmd for n in needles):
            found.append((int(d.name), cmd.strip()))
    return found


# ---- the summary ----


def summary(stats: SimStats, m: Metrics, topo: Topology, args: argparse.Namespace,
            top: dict[str, Any] | None = None) -> list[str]:
    ev = m.by_label("zhida_case_events_total", "type")
    dead = m.by_label("zhida_deadletters_total", "reason")
    dups = m.total("zhida_duplicates_total")
    taken = m.total("zhida_inputs_total", topic="complaints") \
        + m.total("zhida_inputs_total", topic="sensed")
    dispatched = ev.get("dispatched", 0) + ev.get("triaged", 0)
    storms = "; ".join(f"storm: {n} waterlogging alarms in {topo.name(d)}"
                       for d, n in stats.storms)
    r = stats.ratings
    busiest = " · ".join(f"{topo.name(d)} {n}" for d, n in stats.busiest(5)) or "n/a"
    city = stats.orders_by_topic.get(CITY_TOPIC_KEY, 0)
    lines = [
        "",
        f"Zhida demo: {stats.sent} inputs in {args.duration:g} s at {args.rate:g}/s "
        f"({stats.complaints} complaints, {stats.alarms} sensor alarms"
        + (f"; {storms}" if storms else "") + ")",
        f"simulated time runs x{args.speed:g}; the worker's SLA deadlines are scaled to match",
        "",
        f"  received      {taken:6d}   inputs taken by the engine ({stats.sent} sent, "
        f"{ev.get('created', 0)} cases created, {dups} duplicates dropped)",
        f"  dispatched    {dispatched:6d}   ({ev.get('dispatched', 0)} straight to the owning "
        f"unit, {ev.get('triaged', 0)} to the city triage queue; {stats.assigns} assigned on "
        f"from triage)",
        f"  acknowledged  {ev.get('acknowledged', 0):6d}   ({stats.late_acks} signed for after "
        "the ack deadline)",
        f"  resolved      {ev.get('resolved', 0):6d}",
        f"  closed        {ev.get('closed', 0):6d}   ({ev.get('verified', 0)} alarms verified; "
        f"citizens rated {r['satisfied']} satisfied, {r['basically_satisfied']} basically "
        f"satisfied, {r['unsatisfied']} unsatisfied → {ev.get('reopened', 0)} reopened; "
        f"{stats.unanswered} will not answer)",
        f"  returned      {ev.get('returned', 0):6d}   ({stats.returns} 退单 sent; "
        f"{ev.get('assigned', 0) - stats.assigns} re-assigned by districts, the rest handled "
        f"by them; {ev.get('assisted', 0)} assists, {ev.get('suspended', 0)} suspensions)",
        f"  reopened      {ev.get('reopened', 0):6d}   (unsatisfied ratings, supervision +1)",
        *insight_lines(stats, topo, top if top is not None else stats.top_hotspot),
        f"  unauthorized  {dead.get('unauthorized', 0):6d}   refused: {stats.forged} forged "
        "updates from units with no right to the case"
        + (f", {stats.forged_signatures} signed with another unit's key"
           if getattr(args, "keys", True) else ""),
        f"  reminders     {ev.get('warned', 0):6d}   催办 (yellow) to units near a deadline",
        f"  escalations   {ev.get('escalated', 0):6d}   督办 (red): "
        f"{stats.supervision.get('district', 0)} to districts, "
        f"{stats.supervision.get('city', 0)} to the city centre, "
        f"{max(ev.get('escalated', 0) - sum(stats.supervision.values()), 0)} breaches at the "
        f"top; {stats.silent} orders never signed for, {stats.supervised_acks} signed for by "
        "the supervising level",
        f"  dead letters  {sum(dead.values()):6d}"
        + (f"   ({', '.join(f'{k} {v}' for k, v in sorted(dead.items()))})" if dead else ""),
        "",
        f"  busiest districts (case orders): {busiest}; city level {city}",
        f"  intake→dispatch latency: p50 {fmt_ms(stats.percentile(50))}, "
        f"p99 {fmt_ms(stats.percentile(99))} (n={len(stats.latencies_ms)}, "
        "from producing the input to reading its first order)",
    ]
    merges = m.by_label("zhida_merges_total", "outcome")
    joined = merges.get("joined", 0)
    after = next(i for i, line in enumerate(lines) if line.startswith("  received")) + 1
    placed = m.by_label("zhida_placements_total", "outcome")
    by_method = m.by_label("zhida_placements_total", "method")
    lines.insert(after, (
        f"  placed        {placed.get('placed', 0):6d}   ({by_method.get('point', 0)} by "
        f"coordinates, {by_method.get('address', 0)} by address, the rest by unit code); "
        f"{placed.get('boundary', 0)} near a district line to the city (boundary), "
        f"{placed.get('triage', 0)} to triage"))
    lines.insert(after, f"  merged        {joined:6d}   reports joined an open case (一事多诉, "
                 f"repeated alarms): one problem, one case, one order; "
                 f"{m.total('zhida_alarm_storms_total')} alarm storms reported")
    lines += directive_lines(stats, topo)
    missing = stats.undispatched - joined  # a joined report gets no order of its own
    if missing > 0:
        lines.append(f"  {missing} inputs had no order by the end of the run")
    if stats.errors:
        lines.append(f"  simulator errors: {stats.errors}")
    return lines


def insight_lines(stats: SimStats, topo: Topology, top: dict[str, Any] | None) -> list[str]:
    """Hotspots, disputes, rulings and precedent-routed cases, and the top hotspot."""
    ins = stats.insights
    return [
        f"  hotspots      {ins['hotspot']:6d}   每月一题: complaints of one category at one "
        f"place reached the policy's count"
        + (f"; top: {describe_hotspot(top, topo)}" if top else ""),
        f"  disputes      {ins['dispute']:6d}   扯皮: a case returned by a second unit went to "
        f"their common superior ({stats.disputed_returns} 退单 by the disputed streets); "
        f"{ins['ruling']} rulings; {stats.precedent_cases} later cases routed by precedent "
        "straight to the ruled unit",
    ]


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return visible(str(value), 20)
    return visible(value, 20)


def _degrees(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) \
            and -1000 < value < 1000:
        return float(value)
    return None


def describe_hotspot(h: dict[str, Any], topo: Topology) -> str:
    """``category at place, N reports (…)``: every value from the message made inert and cut."""
    place = h.get("place")
    if isinstance(place, str):
        where = (f"{topo.name(place)} ({place})" if place in topo
                 else visible(place, 40))
    elif isinstance(place, dict):
        lat, lon, r = _degrees(place.get("lat")), _degrees(place.get("lon")), \
            place.get("radius_m")
        if lat is not None and lon is not None:
            where = f"the point {lat:.5f}, {lon:.5f}" + (
                f" (within {_number(r)} m)" if r is not None else "")
        else:
            where = visible(orjson.dumps(place).decode(), 80)
    else:
        where = visible(place, 40)
    return (f"{visible(h.get('category'), 40)} at {where}, {_number(h.get('reports'))} "
            f"reports ({_number(h.get('cases'))} cases, {_number(h.get('repeat_callers'))} "
            "repeat callers)")


def top_hotspot(worker: WorkerProcess) -> dict[str, Any] | None:
    """The first of ``GET /hotspots`` (ranked by reports, kept current); None when the worker
    does not answer it."""
    try:
        status, body = worker.get("/hotspots")
        if status != 200:
            return None
        found = orjson.loads(body).get("hotspots")
    except Exception:
        return None
    return found[0] if isinstance(found, list) and found and isinstance(found[0], dict) \
        else None


def directive_lines(stats: SimStats, topo: Topology) -> list[str]:
    """Each directive as its issuer sees it: receipts, time to full receipt, escalations."""
    if not stats.directives:
        return []
    lines = ["", f"  directives (政令一键智达): {len(stats.directives)} issued; "
             f"{stats.directive_silent} tasks never signed for by their unit"]
    for t in stats.directives.values():
        full = (f"all signed {t.fully_acknowledged_after:.1f} s after issue"
                if t.fully_acknowledged_after is not None else "not all signed")
        lines.append(
            f"    {t.title} ({topo.name(t.issuer)} → {t.targets} units): "
            f"acknowledged {len(t.acknowledged)}/{t.targets} ({t.ack_ratio:.1%}), {full}; "
            f"reported {len(t.reported)}; {len(t.reminders)} reminders, "
            f"{len(t.escalations)} escalations" + ("; completed" if t.completed else ""))
    return lines


# ---- main ----


def keep_up(worker: WorkerProcess) -> None:
    """``--keep``: show where the board is and wait for Ctrl-C or SIGTERM, either of which ends
    the wait normally (the caller's ``finally`` stops broker and worker). A worker that dies
    meanwhile is a failure: the board it served is gone."""
    print(f"\n  board: {worker.url('/board')}  (broker and worker stay up; Ctrl-C stops them)",
          flush=True)
    try:
        while worker.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        print(file=sys.stderr, flush=True)  # past the terminal's "^C"
        return
    except SystemExit as e:  # SIGTERM (_raise_on_sigterm): asked to stop, like Ctrl-C
        if e.code != 128 + signal.SIGTERM:
            raise
        return
    code = worker.returncode
    raise DemoError(f"the worker exited with {code} while kept up; its log ends with:\n"
                    f"{worker.log_tail()}")


def _raise_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(args: argparse.Namespace) -> int:
    topo = Topology.load()
    workdir = Path(tempfile.mkdtemp(prefix="zhida-demo-"))
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    broker = EmbeddedBroker(log_path=workdir / "broker.log")
    worker: WorkerProcess | None = None
    progress = ProgressLine(sys.stderr, inline=True)
    ok = False
    code = 1

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        say(f"demo directory {workdir}")
        broker.start()
        say(f"broker: embedded Tansu on {broker.bootstrap} (pid {broker.proc.pid})"
            if broker.proc else f"broker: {broker.bootstrap}")
        policy = scaled_policy(args.speed, workdir / "policy.toml") if args.speed > 0 else None
        jwks = private = None
        if getattr(args, "keys", True):  # signed messages, the default (docs/security.md)
            jwks, private = workdir / "keys" / "jwks.json", workdir / "keys" / "private"
            t = time.perf_counter()
            keys.issue(jwks, topo.units, private)
            say(f"keys: {len(topo.units)} units, one Ed25519 key pair each, in "
                f"{time.perf_counter() - t:.1f} s ({jwks})")
        worker = WorkerProcess(broker.bootstrap, args.http_port or free_port(),
                               workdir / "data", workdir / "worker.log", policy=policy,
                               keys=jwks, name="the worker")
        worker.spawn()
        say(f"worker: pid {worker.pid}, http {worker.url('')}, log {worker.log_path}")
        try:
            took = worker.wait_ready(READY_TIMEOUT)
        except WorkerError as e:
            raise DemoError(str(e)) from None
        say(f"worker ready in {took:.1f} s; simulating {args.rate:g}/s for {args.duration:g} s, "
            f"drain up to {args.drain:g} s, speed x{args.speed:g}, seed {args.seed}")
        stats = asyncio.run(run_simulation(
            broker.bootstrap, os.environ.get("ZHIDA_PREFIX", "zhida."), args.rate,
            args.duration, args.seed, args.drain, args.speed, progress, topology=topo,
            keys_dir=private))
        progress.finish()
        status, body = worker.get("/metrics")
        if status != 200:
            raise DemoError(f"GET /metrics answered {status}")
        for line in summary(stats, Metrics(body.decode()), topo, args, top_hotspot(worker)):
            print(line, flush=True)
        if getattr(args, "keep", False):
            keep_up(worker)
        ok = True
        code = 0
    except DemoError as e:
        progress.finish()
        say(f"demo failed: {e}")
    except Exception as e:
        progress.finish()
        say(f"demo failed: {type(e).__name__}: {e}")
    except KeyboardInterrupt:
        progress.finish()
        say("interrupted")
        code = 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        worker_pid = worker.pid if worker else None
        broker_pid = broker.proc.pid if broker.proc else None
        how = worker.stop().how if worker else "not started"
        broker.stop()
        needles = [str(workdir), f"tcp://{broker.bootstrap}"]
        left = processes_matching(needles)
        for pid, _ in left:  # ours by their command line: our temp dir or our broker's port
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        still = processes_matching(needles)
        if left:
            say(f"processes left behind and killed: {', '.join(str(p) for p, _ in left)}")
        print(f"  stopped: worker (pid {worker_pid}) {how}, broker (pid {broker_pid}) stopped; "
              + ("no process left running" if not still
                 else f"STILL RUNNING: {', '.join(str(p) for p, _ in still)}"), flush=True)
        if still:
            code = 1
        if (ok and code == 0) or code == 130:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"logs kept in {workdir}")
    return code
