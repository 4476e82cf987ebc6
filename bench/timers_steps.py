"""bench/timers.py's run on one worker: its policy, N armed cases, then step 1 (lateness with N
armed), step 2 (a burst of resumes due at one instant) and step 3 (a SIGKILL with deadlines
due while down), and the timer index read back from the stopped worker's RocksDB."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from bench.harness import Failed, du, metric, mib, progress, settled_rss, vm_status
from bench.scale_steps import (
    CHUNK,
    Ctx,
    ScaleWorker,
    complaint_chunk,
    environment,
    fresh_start,
    open_cases,
)
from bench.timers_load import (
    LADDER,
    LONG,
    SHORT_KIND,
    WARN_FRACTION,
    Intake,
    Poller,
    Tracker,
    cev,
    count,
    dist,
    fired,
    hist_summary,
    histogram,
    reader_cost,
    sleep_until,
    wait_count,
    wall_iso,
)
from engine.core.ids import case_id_for
from engine.core.routing import route
from engine.data.catalogue import Catalogue


def policy_text(args: argparse.Namespace) -> str:
    stages = "\n".join(f'{s} = "{LONG}"'
                       for s in ("triage", "ack", "resolve", "feedback", "supervise"))
    return (
        "# bench/timers.py: complaints stay armed (every stage 30 days, the reminder at 15),\n"
        f"# {SHORT_KIND} alarms climb the whole ladder in "
        f"{args.short_ack + 2 * args.short_supervise:g} s\n"
        "[policy]\n"
        'clock = "24x7"\n'
        'merge_window = "PT0S"\n'  # every alarm its own case: the ladder is what is measured
        f"warn_fraction = {WARN_FRACTION}\n"
        "\n[stages.normal]\n" + stages + "\n\n[stages.urgent]\n" + stages + "\n\n"
        f"[categories.{SHORT_KIND}]\n"
        f'ack = "PT{args.short_ack:g}S"\n'
        f'supervise = "PT{args.short_supervise:g}S"\n'
    )


# ---------------------------------------------------------------- the cases the steps use

def bulk_cases(ctx: Ctx, label: str, start: int, count: int) -> list[tuple[str, str]]:
    """(case id, holder) of the bulk cases ``start`` … ``start + count - 1``: the complaints
    regenerated as bench.scale produced them, the holder by the engine's own routing."""
    topo = ctx.topology
    cat = Catalogue.load()
    out: list[tuple[str, str]] = []
    for chunk in range(start // CHUNK, (start + count - 1) // CHUNK + 1):
        for i, (key, value) in enumerate(complaint_chunk(ctx, label, chunk, CHUNK)):
            idx = chunk * CHUNK + i
            if not start <= idx < start + count:
                continue
            c = orjson.loads(value)
            category = cat.get(c["category"], "complaint")
            assert category is not None
            out.append((case_id_for("complaint", key.decode()),
                        route(topo, category, c["location"]).unit))
    return out


async def suspend_all(ctx: Ctx, w: ScaleWorker, tracker: Tracker, cases: list[tuple[str, str]],
                      untils: list[float], group: str) -> float:
    """Unit updates ``suspend until`` from each case's holder, at most --window ahead of the
    ``suspended`` events the worker counts. Returns seconds."""
    assert ctx.producer is not None
    for cid, _ in cases:
        tracker.watch(cid, group)
    t = time.perf_counter()
    sent = 0
    now_iso = wall_iso(time.time())
    base = await count(w, cev("suspended"))
    if base is None:
        raise Failed("no /metrics from the worker")
    while sent < len(cases):
        done = await count(w, cev("suspended"))
        if sent - ((done or base) - base) >= ctx.args.window:
            await asyncio.sleep(0.2)
            continue
        futures = []
        for i in range(sent, min(sent + 1000, len(cases))):
            cid, holder = cases[i]
            body = {"update_id": f"{ctx.tag}-{group}-{i}", "actor": holder,
                    "action": "suspend", "at": now_iso, "case_id": cid,
                    "reason": "bench.timers: 暂停至同一时刻", "until": wall_iso(untils[i])}
            futures.append(await ctx.producer.send(w.names.unit_updates, orjson.dumps(body),
                                                   key=cid.encode()))
        await asyncio.gather(*futures)
        sent = min(sent + 1000, len(cases))
    await wait_count(w, f"{group}: suspended", cev("suspended"), base + len(cases))
    return time.perf_counter() - t


def once(tracker: Tracker, ids: list[str], type_: str) -> dict[str, Any]:
    """Per case: how many distinct ``type_`` events (by seq)."""
    per = Counter(sum(1 for e in tracker.events(c) if e.type == type_) for c in ids)
    return {"cases": len(ids), "exactly_once": per.get(1, 0), "never": per.get(0, 0),
            "more_than_once": sum(v for k, v in per.items() if k > 1)}


# ---------------------------------------------------------------- step 1: lateness

async def step_lateness(ctx: Ctx, w: ScaleWorker, tracker: Tracker, intake: Intake,
                        poller: Poller, seconds: float, label: str) -> dict[str, Any]:
    a = ctx.args
    assert ctx.producer is not None
    armed = metric(await w.metrics(), "zhida_timers_armed") or 0.0
    out: dict[str, Any] = {"short_rate": a.short_rate, "short_seconds": seconds,
                           "intake_rate": a.intake_rate, "armed": armed}
    streets = ctx.topology.streets
    total = int(a.short_rate * seconds)
    ids: list[str] = []
    text0 = await w.metrics()
    h0 = histogram(text0)
    f0 = fired("warn", "due", "supervise")(text0)
    t_start = time.time()
    start = time.perf_counter()
    progress(f"{label}: {armed:,.0f} armed; {total:,} {SHORT_KIND} alarms at "
             f"{a.short_rate:g}/s for {seconds:g} s, complaints at {a.intake_rate:g}/s")
    last_report = start
    for i in range(total):
        due = start + i / a.short_rate
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        event_id = f"{ctx.tag}-{label}-{i:06d}"
        cid = case_id_for("sensed", event_id)
        tracker.watch(cid, label)
        ids.append(cid)
        body = {"event_id": event_id, "sensor_id": f"{ctx.tag}-{label}-mc-{i:06d}",
                "kind": SHORT_KIND,
                "severity": "warning", "location": {"unit": streets[i % len(streets)]},
                "observed_at": wall_iso(time.time())}
        await ctx.producer.send(w.names.sensed, orjson.dumps(body), key=body["sensor_id"].encode())
        if time.perf_counter() - last_report >= a.progress:
            last_report = time.perf_counter()
            n = (await count(w, fired("warn", "due", "supervise")) or f0) - f0
            progress(f"  … {i + 1:,}/{total:,} alarms sent; {n:,.0f} firings applied; "
                     f"worker RSS {mib(vm_status(w.pid).get('VmRSS'))}")
        intake.check()
    await ctx.producer.flush()
    out["sent"] = total
    out["achieved_rate"] = round(total / (time.perf_counter() - start), 1)
    ladder = a.short_ack + 2 * a.short_supervise
    expected = total * len(LADDER)
    try:
        await wait_count(w, f"{label}: firings", fired("warn", "due", "supervise"),
                         f0 + expected, checks=(intake.check,), timeout=ladder + a.stall)
    except Failed as e:
        out["error"] = str(e)
        progress(f"  {e}")
    await asyncio.sleep(1.0)  # late duplicates, if any
    t_end = time.time()
    out["histogram"] = hist_summary(h0, histogram(await w.metrics()))
    await tracker.catch_up()
    # every firing next to the instant it was due
    late: dict[str, list[float]] = {k: [] for k in ("warn", "due", "supervise")}
    tick: list[float] = []
    path: list[float] = []
    late_all: list[float] = []
    wrong: list[str] = []
    per_case = Counter()
    for cid in ids:
        evs = tracker.events(cid)
        disp = next((e for e in evs if e.type == "dispatched"), None)
        firings = [e for e in evs if e.type in ("warned", "escalated")]
        per_case[len(firings)] += 1
        if disp is None or disp.due is None:
            continue
        prev_sup: float | None = None
        for e in firings:
            if e.type == "warned":
                kind, instant = "warn", disp.at + (disp.due - disp.at) * WARN_FRACTION
            elif prev_sup is None:
                kind, instant = "due", disp.due
            else:
                kind, instant = "supervise", prev_sup
            if e.type == "escalated":
                prev_sup = e.supervise_due
            late[kind].append(e.arrival - instant)
            late_all.append(e.arrival - instant)
            tick.append(e.at - instant)
            path.append(e.arrival - e.at)
        kinds = [(e.type, e.level, bool(e.top)) for e in firings]
        if len(firings) == len(LADDER) and kinds != [("warned", 0, False), ("escalated", 1, False),
                                                     ("escalated", 2, False),
                                                     ("escalated", 3, True)]:
            wrong.append(f"{cid}: {kinds}")
    out["firings"] = len(late_all)
    out["expected"] = expected
    out["lateness"] = dist(late_all)
    out["lateness_by_kind"] = {k: dist(v) for k, v in late.items() if v}
    out["ticker_lateness"] = dist(tick)
    out["path"] = dist(path)
    out["late_over_1s"] = sum(1 for v in late_all if v > 1.0)
    out["per_case"] = {str(k): v for k, v in sorted(per_case.items())}
    out["wrong_ladder"] = wrong[:5]
    out["wrong_ladder_count"] = len(wrong)
    out["duplicates"] = tracker.duplicates[label]
    out["oldest_due_max"] = poller.oldest_max(t_start, t_end)
    out["intake"] = intake.window(t_start, t_start + seconds)
    out["cpu"] = poller.cpu(t_start, t_end)
    out["seconds"] = round(t_end - t_start, 1)
    return out


# ---------------------------------------------------------------- step 2: burst

async def step_burst(ctx: Ctx, w: ScaleWorker, tracker: Tracker, intake: Intake, poller: Poller,
                     cases: list[tuple[str, str]], rate: float, open_rate: float,
                     group: str) -> dict[str, Any]:
    a = ctx.args
    n = len(cases)
    ids = [c for c, _ in cases]
    out: dict[str, Any] = {"size": n, "rate": rate}
    # T: after the suspensions (at half the opening rate, to be safe) and a control window
    est = 2 * n / max(open_rate, 1.0) + 5
    t_burst = round(time.time() + est + a.control_seconds + 3, 3)
    out["t"] = wall_iso(t_burst)
    progress(f"step 2 ({group}): suspending {n:,} cases until {out['t']} "
             f"(in {t_burst - time.time():.0f} s), then complaints at {rate:g}/s")
    out["suspend_seconds"] = round(await suspend_all(ctx, w, tracker, cases, [t_burst] * n,
                                                     group), 1)
    progress(f"  {n:,} suspended in {out['suspend_seconds']:.1f} s; complaints now at "
             f"{rate:g}/s; {t_burst - time.time():.0f} s to the burst")
    intake.rate = rate
    dsp0, sent0 = await count(w, cev("dispatched")), len(intake.sent)
    c1 = time.time() + 3.0  # steady offered rate first
    c2 = t_burst - 0.5
    if c2 - c1 < 5:
        out["warning"] = (f"the suspensions took longer than planned: control window only "
                          f"{max(c2 - c1, 0):.1f} s")
    await sleep_until(t_burst - 1.0)
    text0 = await w.metrics()
    h0 = histogram(text0)
    r0 = fired("resume")(text0)
    await sleep_until(t_burst)
    progress(f"  T: {n:,} resume timers due now")
    try:
        await wait_count(w, f"{group}: resumed", fired("resume"), r0 + n,
                         checks=(intake.check,))
    except Failed as e:
        out["error"] = str(e)
        progress(f"  {e}")
    t_done = time.time()
    # a little more of the same offered rate, then let the complaints of the burst finish
    await asyncio.sleep(5.0)
    text1 = await w.metrics()
    out["histogram"] = hist_summary(h0, histogram(text1))
    out["ignored"] = ((metric(text1, "zhida_commands_ignored_total") or 0.0)
                      - (metric(text0, "zhida_commands_ignored_total") or 0.0))
    intake.rate = a.intake_rate
    with contextlib.suppress(Failed):
        await wait_count(w, f"{group}: complaints of the window", cev("dispatched"),
                         (dsp0 or 0.0) + len(intake.sent) - sent0, timeout=60.0)
    await tracker.catch_up()
    arr = tracker.arrivals(ids, "resumed")
    t_last = max(arr) if arr else t_done
    out["burst_seconds"] = round(t_last - t_burst, 2)
    out["cpu"] = poller.cpu(t_burst, t_last)
    out["control"] = intake.window(c1, c2)
    out["burst"] = intake.window(t_burst, max(t_last, t_burst + 1.0))
    ctl = out["control"]["dispatched"]
    out["ratio"] = round(out["burst"]["dispatched"] / ctl, 3) if ctl else None
    out["resume_lateness"] = dist([x - t_burst for x in arr])
    out["first_after_t"] = round(min(arr) - t_burst, 3) if arr else None
    out["once"] = once(tracker, ids, "resumed")
    out["duplicates"] = tracker.duplicates[group]
    out["oldest_due_max"] = poller.oldest_max(t_burst, t_last + 2)
    # per second, for the report: complaints dispatched and cases resumed
    timeline = []
    disp = sorted(e.arrival for c in intake.sent for e in tracker.events(c)
                  if e.type == "dispatched" and c1 - 5 <= e.arrival < t_last + 5)
    for s in range(-5, int(t_last - t_burst) + 5):
        lo, hi = t_burst + s, t_burst + s + 1
        timeline.append((s, sum(1 for x in disp if lo <= x < hi),
                         sum(1 for x in arr if lo <= x < hi)))
    out["timeline"] = timeline
    progress(f"  burst: {n:,} resumed in {out['burst_seconds']:.1f} s after T; complaints "
             f"dispatched {out['burst']['dispatched']:,.0f}/s during it vs "
             f"{ctl:,.0f}/s before (ratio {out['ratio']}); exactly once "
             f"{out['once']['exactly_once']:,}/{n:,}")
    return out


# ---------------------------------------------------------------- step 3: SIGKILL

async def step_kill(ctx: Ctx, w: ScaleWorker, tracker: Tracker, intake: Intake,
                    cases: list[tuple[str, str]], open_rate: float) -> dict[str, Any]:
    a = ctx.args
    k = len(cases)
    ids = [c for c, _ in cases]
    group = "kill"
    out: dict[str, Any] = {"size": k, "down_seconds": a.down_seconds}
    est = 2 * k / max(open_rate, 1.0) + 5
    t_kill = time.time() + est
    lead = min(1.0, a.down_seconds / 4)
    span = a.down_seconds - 2 * lead
    untils = [round(t_kill + lead + span * i / max(k - 1, 1), 3) for i in range(k)]
    progress(f"step 3: suspending {k:,} cases until instants spread over "
             f"{wall_iso(untils[0])} … {wall_iso(untils[-1])}; SIGKILL planned in {est:.0f} s")
    out["suspend_seconds"] = round(await suspend_all(ctx, w, tracker, cases, untils, group), 1)
    if time.time() > t_kill:
        out["warning"] = (f"the suspensions ended {time.time() - t_kill:.1f} s after the "
                          "planned SIGKILL")
    await sleep_until(t_kill)
    t0 = time.perf_counter()
    t_killed = time.time()
    w.kill()
    progress(f"  SIGKILLed the worker; {k:,} resumes fall due while it is down; restart in "
             f"{max(untils[-1] + 0.5 - time.time(), 0):.1f} s")
    await tracker.catch_up()  # while it is down: what the old process had done
    out["fired_before_kill"] = tracker.n(group, "resumed")
    await sleep_until(untils[-1] + 0.5)
    t_launch = time.perf_counter()
    w.launch()
    ready = await w.ready_after(t0, a.ready_timeout)
    t_ready = time.time()
    out["down_seconds_actual"] = round(t_launch - t0, 2)
    out["kill_to_ready"] = round(ready, 2)
    out["launch_to_ready"] = round(ready - (t_launch - t0), 2)
    progress(f"  /readyz 200 {out['launch_to_ready']:.1f} s after the restart "
             f"({ready:.1f} s after the SIGKILL)")
    try:  # the counters of the new process start at 0
        await wait_count(w, "step 3: resumed", fired("resume"), k - out["fired_before_kill"],
                         checks=(intake.check,))
    except Failed as e:
        out["error"] = str(e)
        progress(f"  {e}")
    await asyncio.sleep(2.0)  # duplicates, if a replay sends any
    await tracker.catch_up()
    arr = []
    for cid, until in zip(ids, untils, strict=True):
        for e in tracker.events(cid):
            if e.type == "resumed" and e.arrival >= t_killed:
                arr.append((e.arrival, until))
    if arr:
        first, last = min(x for x, _ in arr), max(x for x, _ in arr)
        out["ready_to_first"] = round(first - t_ready, 2)
        out["ready_to_last"] = round(last - t_ready, 2)
        out["lateness"] = dist([x - u for x, u in arr])
    out["killed_at"] = wall_iso(t_killed)
    out["once"] = once(tracker, ids, "resumed")
    out["duplicates"] = tracker.duplicates[group]
    out["rss_after"], _ = await settled_rss(w.pid, max_polls=10)
    progress(f"  first resume {out.get('ready_to_first', '–')} s after /readyz, last "
             f"{out.get('ready_to_last', '–')} s; exactly once {out['once']['exactly_once']:,}"
             f"/{k:,}, duplicates {out['duplicates']:,}")
    return out


# ---------------------------------------------------------------- the index on disk

def index_on_disk(data_dir: Path, workdir: Path) -> dict[str, Any]:
    """After the worker stopped: records and key+value bytes per key kind in its RocksDB, and
    the ``t:`` records alone written to a fresh RocksDB (same compression, compacted): its
    size on disk per record."""
    import rocksdict

    dbs = sorted((data_dir / "v1" / "tables").glob("cases-*.db"))
    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    only = workdir / "index-only.db"
    shutil.rmtree(only, ignore_errors=True)
    opts = rocksdict.Options(raw_mode=True)
    opts.set_compression_type(rocksdict.DBCompressionType.snappy())
    target = rocksdict.Rdict(str(only), opts)
    try:
        for path in dbs:
            db = rocksdict.Rdict(str(path), access_type=rocksdict.AccessType.read_only())
            try:
                it = db.iter()
                it.seek_to_first()
                batch = rocksdict.WriteBatch(raw_mode=True)
                while it.valid():
                    k, v = it.key(), it.value()
                    kind = k[:2].decode(errors="replace")
                    count[kind] += 1
                    size[kind] += len(k) + len(v)
                    if kind == "t:":
                        batch.put(k, v)
                    it.next()
                del it
                target.write(batch)
            finally:
                db.close()
        target.flush()
        target.compact_range(None, None)
    finally:
        target.close()
    disk, apparent = du(only)
    t = count.get("t:", 0)
    out = {"records": dict(count), "bytes": dict(size), "t_records": t,
           "t_raw_per_record": size.get("t:", 0) / t if t else None,
           "t_only_disk": disk, "t_only_apparent": apparent,
           "t_disk_per_record": disk / t if t else None,
           "all_raw": sum(size.values())}
    shutil.rmtree(only, ignore_errors=True)
    return out


# ---------------------------------------------------------------- the run

def armed(text: str) -> float:
    """Reads ``zhida_timers_armed`` from a /metrics text."""
    return metric(text, "zhida_timers_armed") or 0.0


def _say_lateness(label: str, lt: dict[str, Any]) -> None:
    p = lt.get("lateness") or {}
    progress(f"  {label}: {lt['firings']:,}/{lt['expected']:,} firings, lateness p50 "
             f"{p.get('p50_ms', 0):,.0f} ms, p99 {p.get('p99_ms', 0):,.0f} ms, max "
             f"{p.get('max_ms', 0):,.0f} ms; intake p99 "
             f"{(lt['intake'].get('latency') or {}).get('p99_ms', 0):,.0f} ms; cores used "
             f"{lt.get('cpu')}")


async def measure(base: Ctx, policy: Path) -> dict[str, Any]:
    a = base.args
    d: dict[str, Any] = {"ok": False}
    async with environment(base, "t") as (ctx, broker_proc):
        w = ScaleWorker(ctx, "t", policy)
        tracker: Tracker | None = None
        intake: Intake | None = None
        poller: Poller | None = None
        try:
            await fresh_start(ctx, w, d)
            progress(f"worker ready in {d['fresh_start']:.1f} s, RSS {mib(d['rss0'])}")
            d["reader_cost0"] = await reader_cost(ctx.bootstrap, w.names.case_events,
                                                  broker_proc.pid)
            tracker = Tracker(ctx.bootstrap, w.names.case_events)
            await tracker.mark_end()
            intake = Intake(ctx, w, tracker, a.intake_rate)
            intake.start()
            poller = Poller(w, broker_proc.pid)
            poller.start()
            if a.baseline_seconds > 0:
                d["baseline"] = await step_lateness(ctx, w, tracker, intake, poller,
                                                    a.baseline_seconds, "baseline")
                _say_lateness("baseline", d["baseline"])
            intake.rate = 0.0  # no intake while the N open
            await asyncio.sleep(1.0)
            armed0 = metric(await w.metrics(), "zhida_timers_armed") or 0.0
            progress(f"opening {a.cases:,} cases (complaints, every stage {LONG})")
            t_open = time.perf_counter()
            d["open"] = await open_cases(ctx, w, a.cases, via=a.open_via)
            # the counter open_cases polls includes the baseline's cases: wait for all N
            await wait_count(w, "armed", armed, armed0 + a.cases)
            o = d["open"]
            o["seconds"] = round(time.perf_counter() - t_open, 2)
            o["rate"] = round(a.cases / o["seconds"], 1)
            progress(f"  {a.cases:,} cases open in {o['seconds']:,.1f} s ({o['rate']:,.0f}/s); "
                     "waiting for RSS to settle")
            d["rss"], _ = await settled_rss(w.pid)
            d["hwm"] = vm_status(w.pid).get("VmHWM")
            d["rss_per_case"] = (d["rss"] - d["rss0"]) / a.cases if d["rss"] else None
            d["store_disk"], d["store_apparent"] = du(w.data_dir)
            text = await w.metrics()
            d["armed_at_n"] = metric(text, "zhida_timers_armed")
            progress(f"  RSS {mib(d['rss'])} ({(d['rss_per_case'] or 0):,.0f} B per case), "
                     f"store {mib(d['store_disk'])}, armed {d['armed_at_n'] or 0:,.0f}")
            d["reader_cost"] = await reader_cost(ctx.bootstrap, w.names.case_events,
                                                 broker_proc.pid)
            progress(f"  broker cores with no reader / one reader at the end of case.events: "
                     f"{d['reader_cost']['quiet']} / {d['reader_cost']['reader']}")
            await tracker.mark_end()  # the N's own events are not read
            intake.rate = a.intake_rate
            d["lateness"] = await step_lateness(ctx, w, tracker, intake, poller,
                                                a.short_seconds, "step 1")
            _say_lateness("step 1", d["lateness"])
            nxt = 0
            d["bursts"] = []
            for j, rate in enumerate(a.burst_rates):
                r = (round(0.8 * o["rate"] / 50) * 50 or 50) if rate == "cap" else float(rate)
                cases = bulk_cases(ctx, w.label, nxt, a.burst_size)
                nxt += a.burst_size
                b = await step_burst(ctx, w, tracker, intake, poller, cases, r, o["rate"],
                                     f"burst{j + 1}")
                b["rate_arg"] = rate
                d["bursts"].append(b)
            if a.kill_batch:
                cases = bulk_cases(ctx, w.label, nxt, a.kill_batch)
                d["kill"] = await step_kill(ctx, w, tracker, intake, cases, o["rate"])
            # intake off, and everything it sent processed, before the final figures
            await intake.stop()
            readings: list[float | None] = []
            for _ in range(60):  # until the armed count holds still for 3 s
                await asyncio.sleep(1.0)
                readings.append(await count(w, armed))
                if len(readings) >= 4 and len(set(readings[-4:])) == 1:
                    break
            text = await w.metrics()
            d["final"] = {
                "armed": metric(text, "zhida_timers_armed"),
                "firings": {k: metric(text, "zhida_timer_firings_total", kind=k)
                            for k in ("warn", "due", "supervise", "resume")},
                "ignored": metric(text, "zhida_commands_ignored_total"),
                "deadletters": metric(text, "zhida_deadletters_total"),
                "oldest_due": metric(text, "zhida_timer_oldest_due_seconds"),
                "rss": vm_status(w.pid).get("VmRSS"),
            }
            d["forks"] = tracker.forks[:5]
            d["ok"] = True
        except Failed as e:
            d["error"] = str(e)
            progress(f"FAILED: {e}")
        finally:
            for part in (intake, poller):
                if part is not None:
                    await part.stop()
            d["stop"] = w.stop()
        if d.get("ok"):
            progress("worker stopped; reading its RocksDB back")
            try:
                d["index"] = index_on_disk(w.data_dir, base.workdir)
                d["store_disk_end"], _ = du(w.data_dir)
            except Exception as e:  # a measurement, not a reason to lose the run
                d["index_error"] = repr(e)
        d["broker_rss"] = vm_status(broker_proc.pid).get("VmRSS")
    return d
