"""bench/timers.py's page, section by section: the targets' verdicts, the machine, the method,
N armed, each step, the reading, memory, the counters at the end (``render`` in
bench/timers.py puts them together)."""

from __future__ import annotations

from typing import Any

from bench.harness import cpu_used, machine_table, mib
from bench.timers_load import (
    SHORT_KIND,
    TARGET_BURST,
    TARGET_BURST_RATIO,
    TARGET_FIRST_S,
    TARGET_N,
    TARGET_P99_S,
    WARN_FRACTION,
    le_text,
)
from engine.runtime import timers


def verdicts(d: dict[str, Any], n: int) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, how, ok) rows of the summary; ``n`` armed cases."""
    rows: list[tuple[str, str, str, bool | None]] = []
    lt = d.get("lateness") or {}
    lat = lt.get("lateness") or {}
    if lat:
        rows.append((f"firing lateness p99 < 1 s with {TARGET_N:,} armed, under normal intake",
                     f"p99 **{lat['p99_ms'] / 1000:.2f} s** (p50 {lat['p50_ms'] / 1000:.2f} s, "
                     f"max {lat['max_ms'] / 1000:.2f} s) over {lt['firings']:,} firings with "
                     f"{n:,} armed; engine histogram p99 {le_text(lt['histogram']['p99_le'])}",
                     "event arrival − instant due", lat["p99_ms"] < TARGET_P99_S * 1000))
    for b in d.get("bursts") or []:
        ok_once = b["once"]["exactly_once"] == b["size"]
        rows.append((f"{TARGET_BURST:,} due at one instant: intake during the burst ≥ 0.5× "
                     "without it",
                     f"**{b['ratio']:.2f}×** ({b['burst']['dispatched']:,.0f}/s during the "
                     f"{b['burst_seconds']:.1f} s burst vs {b['control']['dispatched']:,.0f}/s "
                     f"before; offered {b['rate']:g}/s; burst of {b['size']:,})"
                     if b.get("ratio") is not None else "not measured",
                     "complaints dispatched per second", (b.get("ratio") or 0)
                     >= TARGET_BURST_RATIO if b["size"] >= TARGET_BURST else None))
        rows.append(("… all fired once",
                     f"{b['once']['exactly_once']:,}/{b['size']:,} exactly once, "
                     f"{b['once']['never']:,} never, {b['once']['more_than_once']:,} twice or "
                     f"more; {b['duplicates']:,} duplicate records (same event id)",
                     "distinct `resumed` events per case", ok_once))
    k = d.get("kill")
    if k:
        rows.append(("after a SIGKILL, every deadline due while down fires once",
                     f"{k['once']['exactly_once']:,}/{k['size']:,} exactly once, "
                     f"{k['once']['never']:,} never, {k['once']['more_than_once']:,} twice or "
                     f"more; {k['duplicates']:,} duplicate records",
                     "distinct `resumed` events per case",
                     k["once"]["exactly_once"] == k["size"]))
        if k.get("ready_to_first") is not None:
            rows.append(("… the first within 5 s of `/readyz`",
                         f"**{k['ready_to_first']:.2f} s** (last {k['ready_to_last']:.2f} s; "
                         f"`/readyz` {k['launch_to_ready']:.1f} s after the restart)",
                         "first `resumed` arrival − `/readyz` 200",
                         k["ready_to_first"] < TARGET_FIRST_S))
    ix = d.get("index")
    if ix and ix.get("t_records"):
        rows.append(("memory the index adds per armed deadline: stated",
                     f"**{ix['t_disk_per_record']:,.0f} B on disk** per `t:` record "
                     f"({ix['t_raw_per_record']:,.0f} B key + value); no per-timer structure "
                     f"in the worker's heap; RSS per open case {d['rss_per_case']:,.0f} B",
                     "see Memory", True))
    return rows


def ok_mark(v: bool | None) -> str:
    return "" if v is None else (" ✅" if v else " ❌")


def _lat_row(label: str, p: dict[str, float]) -> str:
    if not p:
        return f"| {label} | – | – | – | – |"
    return (f"| {label} | {p['p50_ms']:,.0f} ms | {p['p99_ms']:,.0f} ms | "
            f"{p['max_ms']:,.0f} ms | {p['mean_ms']:,.0f} ms |")


def reading_lines(d: dict[str, Any], n: int) -> list[str]:
    """What the figures say, derived from them (no verdict beyond the targets')."""
    out: list[str] = []
    lt = d.get("lateness")
    if lt and lt.get("lateness"):
        tot, tk = lt["lateness"], lt["ticker_lateness"]
        line = (f"- **Lateness** with {n:,} armed: p50 {tot['p50_ms']:,.0f} ms, p99 "
                f"{tot['p99_ms']:,.0f} ms; the ticker's part (its 0.1 s period: a deadline "
                f"waits for the next tick) is {tk['p50_ms']:,.0f} ms at p50 and "
                f"{tk['max_ms']:,.0f} ms at most, the rest is the `Expire` command's trip "
                "through `case.commands` and the writer's batch. The ticker reads the sorted "
                "`t:` keys by a seek up to now, not a scan, so the armed entries that are not "
                "due are never read")
        bl = d.get("baseline")
        if bl and bl.get("lateness"):
            line += (f". The same load before the N were opened ({bl['armed']:,.0f} armed): "
                     f"p50 {bl['lateness']['p50_ms']:,.0f} ms, p99 "
                     f"{bl['lateness']['p99_ms']:,.0f} ms")
            cb, cn = bl.get("cpu") or {}, lt.get("cpu") or {}
            if cb.get("broker") is not None and cn.get("broker") is not None:
                line += (f"; the broker used {cb['broker']:.2f} of a core then and "
                         f"{cn['broker']:.2f} with the N's records in its memory storage, for "
                         "the same traffic (the worker "
                         f"{cb.get('worker', 0):.2f} and {cn.get('worker', 0):.2f})")
        out.append(line + ".")
    for b in d.get("bursts") or []:
        tl = {s_: (x, y) for s_, x, y in b.get("timeline") or []}
        ctl = b["control"]
        first = tl.get(0)
        bl = b["burst"].get("latency") or {}
        line = (f"- **Burst of {b['size']:,} at {b['rate']:g}/s offered**: the writer took the "
                f"resumes at ~{b['size'] / max(b['burst_seconds'], 1e-9):,.0f}/s while "
                f"dispatching {b['burst']['dispatched']:,.0f} complaints/s")
        if first is not None:
            line += (f"; the dip is in the first second after T ({first[0]} complaints "
                     f"dispatched against ~{ctl['dispatched']:,.0f}/s before), when the ticker "
                     "hands its first 1,000 firings (`MAX_IN_FLIGHT`) to `case.commands` at "
                     "once and complaints queue behind them on the same partitions; after "
                     "that it sends only as the writer clears entries, so intake and firings "
                     "interleave")
        if bl:
            line += (f". Intake latency meanwhile: produce → dispatched p50 "
                     f"{bl.get('p50_ms', 0):,.0f} ms, p99 {bl.get('p99_ms', 0):,.0f} ms "
                     f"(control p99 {(ctl.get('latency') or {}).get('p99_ms', 0):,.0f} ms): "
                     "about the writer time of the firings in flight ahead of a complaint")
        out.append(line + ".")
    k = d.get("kill")
    if k and k.get("ready_to_first") is not None:
        out.append(
            f"- **SIGKILL**: the restart on the kept data dir answered `/readyz` after "
            f"{k['launch_to_ready']:.1f} s (group join and changelog recovery, as in "
            f"benchmarks-scale.md; the partitions' ends come from a fetch past the end, "
            f"engine/runtime/kafka/offsets.py); the ticker sends the first "
            f"{timers.MAX_IN_FLIGHT:,} overdue "
            f"firings once the partitions are recovered, before faust resumes their streams "
            f"(`timers_recovered` in the worker's log), so they reach `case.commands` ahead "
            f"of the intake that queued while the worker was down; the first resume came "
            f"{k['ready_to_first']:.2f} s after `/readyz` and all {k['size']:,} within "
            f"{k['ready_to_last']:.2f} s, each exactly once "
            f"({k['duplicates']:,} duplicate records).")
    return out


def machine_lines(data: dict[str, Any]) -> list[str]:
    return [
        "",
        "## Machine",
        "",
        *machine_table(data, cpu_used(data.get("cpu"))),
        "",
        "Broker, load generator (this script) and worker share these cores.",
        "",
    ]


def method_lines(data: dict[str, Any]) -> list[str]:
    a = data["args"]
    n = a["cases"]
    lines = [
        "## Method",
        "",
        f"`python -m bench.timers --cases {n} --intake-rate {a['intake_rate']:g} --short-rate "
        f"{a['short_rate']:g} --short-seconds {a['short_seconds']:g} --burst-size "
        f"{a['burst_size']} --burst-rates {','.join(a['burst_rates'])} --kill-batch "
        f"{a['kill_batch']} --down-seconds {a['down_seconds']:g} --baseline-seconds "
        f"{a.get('baseline_seconds', 0):g} --open-via {a.get('open_via', 'intake')}` "
        "(`make bench-timers`). One "
        "fresh embedded broker and one engine worker (`python -m engine.tools.cli worker`, RocksDB "
        "store, 4 partitions) for the whole run, with this policy (`ZHIDA_POLICY`):",
        "",
        "```toml",
        data["policy"].rstrip(),
        "```",
        "",
        f"- **{n:,} armed**: {n:,} valid complaints (`bench/workload.py`: every complaint "
        "category, real street codes) "
        + ("are turned into the open-case commands the intake agent would forward, by the "
           "engine's own intake function, and written straight to `case.commands` in the "
           "bench producer's 256 KiB batches (see *Why the cases are opened by commands* "
           "below), "
           if a.get("open_via", "intake") == "commands" else "are produced to "
           "`intake.complaints` ")
        + "as fast as the engine takes them "
        "(`bench.scale.open_cases`); each opens a case whose one armed timer is its reminder "
        "15 days away, so `zhida_timers_armed` = N and nothing of them fires during the run. "
        "Worker RSS (`VmRSS`, settled) before and after.",
        f"- **Normal intake** during every step: complaints at {a['intake_rate']:g}/s (long "
        "deadlines too), paced in 20 ms ticks (none while the N are opened).",
        "- **Reading the outputs after the fact.** Nothing in this script consumes while a "
        "step is measured: the embedded broker (Tansu 0.6.0, memory storage) spends CPU on "
        "every fetch in proportion to what the fetched partitions hold, so a live reader "
        "polling the end of `case.events` would load the broker that the engine depends on "
        "(this run measures it: broker cores over 8 s with no extra reader and with one "
        "polling the end of `case.events` every 20 ms, at 0 cases and at N; see N armed). "
        "After each step the step's part of `case.events` is read, and an event's **arrival** "
        "is its record timestamp: the worker's producer stamps it when the case writer hands "
        "the event over (then the writer awaits delivery). Waiting for a step to finish uses "
        "the worker's counters (`zhida_timer_firings_total`, `zhida_case_events_total`), "
        "polled over HTTP every 0.25 s.",
        f"- **Step 1, lateness**: `{SHORT_KIND}` alarms (`intake.sensed`) at "
        f"{a['short_rate']:g}/s for {a['short_seconds']:g} s; each case climbs the ladder: "
        f"reminder at {a['short_ack'] * WARN_FRACTION:g} s (`warned`), 督办 at "
        f"{a['short_ack']:g} s (`escalated`, street late, district supervises), "
        f"{a['short_ack'] + a['short_supervise']:g} s (city supervises) and "
        f"{a['short_ack'] + 2 * a['short_supervise']:g} s (the city late: top), 4 firings per "
        "case. The deadlines count from the alarm's record timestamp (the command time). For "
        "every `warned`/`escalated` event: **arrival − the instant it was due**: the reminder "
        "point `at + 0.5 × (due − at)` of the case's `dispatched` event (case events do not "
        "carry `warn_at`), that event's `due`, then the previous `escalated` event's "
        "`supervise_due`. This includes the ticker's period (0.1 s), the `Expire` command's "
        "trip through `case.commands` (produce, the writer's fetch) and the writer's batch. "
        "The event's own `at` is the ticker's now at firing, so `at − instant` is the "
        "ticker's part alone. The engine's `zhida_timer_lateness_seconds` histogram (instant "
        "→ writer applying it) is given too, as bucket bounds. The same step runs first for "
        f"{a.get('baseline_seconds', 0):g} s before the N are opened (the baseline: the same "
        "load with nothing else armed).",
        f"- **Step 2, burst**: {a['burst_size']:,} of the armed cases get a unit update "
        "`{action: suspend, until: T}` from their holder (the unit the engine routed them to, "
        f"computed with the engine's `route`); T is one instant, so {a['burst_size']:,} "
        "`resume` timers fall due at T together. Once all are suspended, complaints are "
        "offered at the step's rate; the **control** window runs from 3 s after that until "
        "0.5 s before T (no timer due), the **burst** window from T to the last `resumed` "
        "event. Intake throughput = complaints whose `dispatched` event falls in the window / "
        "its length; latency = produce call → `dispatched` event for the "
        "complaints produced in the window. \"cap\" in `--burst-rates` is 80 % of the rate "
        "at which the N cases were opened.",
        f"- **Step 3, SIGKILL**: {a['kill_batch']:,} other armed cases are suspended until "
        f"instants spread over the {a['down_seconds']:g} s the worker is going to be down; "
        "its session is SIGKILLed (`os.killpg`) before the first, restarted on the same data "
        "dir 0.5 s after the last (complaints keep arriving meanwhile). Time to `/readyz` "
        "200, then from `/readyz` to the first and the last `resumed` event.",
        "- **Exactly once**: per case, the distinct events (by `seq`) of the firing's type; a "
        "record repeating an `event_id` is a duplicate (allowed after a crash: consumers drop "
        "it by id) and counted apart; the same `seq` with another type would be a fork.",
        "- **Memory**: worker RSS per case = (RSS at N − RSS at 0) / N. The index is not in "
        "the worker's heap: each armed timer is one RocksDB record `t:<due ms>:<case>` → "
        "`{kind, stage, at}` next to the case's state (the ticker keeps at most 1,000 firings "
        "in flight in memory). After the run the stopped worker's RocksDB is read back "
        "(records and key + value bytes per key kind), and the `t:` records alone are written "
        "to a fresh RocksDB with the same compression (Snappy), compacted, and measured with "
        "`du`: that is the disk the index takes per armed deadline. What it costs in RSS is "
        "bounded by RocksDB's per-partition write buffers and block cache "
        "(`ZHIDA_ROCKSDB_WRITE_BUFFER_MB`, `ZHIDA_ROCKSDB_BLOCK_CACHE_MB`), not by the number "
        "of timers; measuring it apart (N armed against N cases with none) would need N "
        "cases without a timer, which every open case has.",
        "",
    ]
    if a.get("open_via") == "commands":
        lines += [
            "### Why the cases are opened by commands",
            "",
            "The embedded broker's fetch lists every batch stored in the partition it reads, "
            "on every fetch, and holds each fetch for the consumer's wait (50 ms): about "
            "0.8 µs of broker CPU per stored batch per fetch, so 60,000 stored batches cost "
            "0.9 of a core to a consumer that only reads their tail "
            "([benchmarks-broker-fetch.md](benchmarks-broker-fetch.md)). The intake agent "
            "forwards each complaint as it comes, and under a bulk load that leaves close to "
            "one small batch per command on `case.commands`; every later fetch of the case "
            "writer then lists them all. That is what set the pace of the earlier 300,000 run "
            "(broker 1.0 core, worker 0.17, lateness p99 4.6 s, "
            "[benchmarks-timers-300k.md](benchmarks-timers-300k.md)) and stalled the 1M scale "
            "run, and it measures the broker's storage, not the timers. Written in 256 KiB "
            "batches, the same commands leave a few thousand batches, and the partitions the "
            "worker reads during the steps hold what the steps themselves add, as in a run "
            "with few cases. What the engine does with each command is unchanged: the case "
            "writer decides the very command the intake agent would have sent (made by "
            "`handlers.complaints.to_command`), writes the state, the timer and the outputs. "
            "Everything measured after the opening goes through the intake topics as usual. "
            "On Apache Kafka a fetch finds its position by index, so `--open-via intake` "
            "measures the whole path there.",
            "",
        ]
    return lines


def armed_lines(d: dict[str, Any], n: int) -> list[str]:
    o = d.get("open") or {}
    lines = ["## N armed", "", "| figure | measured |", "|---|---|"]
    if d.get("fresh_start") is not None:
        lines.append(f"| fresh worker to `/readyz` | {d['fresh_start']:.1f} s |")
    if o:
        lines.append(f"| open {n:,} cases | {o['seconds']:,.1f} s, **{o['rate']:,.0f} cases/s**; "
                     f"dead letters {o['deadletters']:.0f} |")
    if d.get("rss") is not None:
        lines.append(f"| worker RSS at 0 / at {n:,} cases | {mib(d['rss0'])} / **"
                     f"{mib(d['rss'])}** (peak {mib(d.get('hwm'))}) |")
        lines.append(f"| RSS per open (armed) case | **{d['rss_per_case']:,.0f} B** |")
    if d.get("armed_at_n") is not None:
        lines.append(f"| `zhida_timers_armed` at N | {d['armed_at_n']:,.0f} |")
    if d.get("store_disk") is not None:
        lines.append(f"| data dir on disk at N | {mib(d['store_disk'])} "
                     f"({d['store_disk'] / n:,.0f} B per case) |")
    for key, at in (("reader_cost0", "0 cases"), ("reader_cost", f"{n:,} cases")):
        if d.get(key):
            rc = d[key]
            lines.append(f"| broker cores at {at}, idle: nobody else reading / one more "
                         f"consumer polling the end of `case.events` | {rc['quiet']:.2f} / "
                         f"**{rc['reader']:.2f}** |")
    if d.get("broker_rss") is not None:
        lines.append(f"| broker RSS at the end (memory storage, for scale) | "
                     f"{mib(d['broker_rss'])} |")
    return lines


def lateness_lines(d: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    lt = d.get("lateness")
    if lt:
        lines += ["", "## Step 1: lateness with N armed", ""]
        steps = [(f"{x['armed']:,.0f} armed" + (" (before the N)" if key == "baseline" else ""),
                  x) for key in ("baseline", "lateness") if (x := d.get(key))]
        for _, x in steps:
            if x.get("error"):
                lines += [f"**{x['error'].splitlines()[0]}**", ""]

        def row(label: str, f: Any) -> str:
            return f"| {label} | " + " | ".join(f(x) for _, x in steps) + " |"

        def ms(p: dict[str, float], k: str) -> str:
            return f"{p[k]:,.0f} ms" if p else "–"

        lines += [
            "| | " + " | ".join(h for h, _ in steps) + " |",
            "|---|" + "---:|" * len(steps),
            row("alarms (achieved rate) / seconds", lambda x: f"{x['sent']:,} "
                f"({x['achieved_rate']:g}/s) / {x['short_seconds']:g} s"),
            row("firings read back / expected", lambda x: f"{x['firings']:,} / "
                f"{x['expected']:,}"),
            row("**lateness p50** (arrival − instant due)",
                lambda x: f"**{ms(x['lateness'], 'p50_ms')}**"),
            row("**lateness p99**", lambda x: f"**{ms(x['lateness'], 'p99_ms')}**"),
            row("lateness max", lambda x: ms(x["lateness"], "max_ms")),
            row("firings later than 1 s", lambda x: f"{x['late_over_1s']:,}"),
            row("ticker's part p50 / max (event `at` − instant)",
                lambda x: f"{ms(x['ticker_lateness'], 'p50_ms')} / "
                f"{ms(x['ticker_lateness'], 'max_ms')}"),
            row("the rest p50 / p99 (arrival − event `at`)",
                lambda x: f"{ms(x.get('path') or {}, 'p50_ms')} / "
                f"{ms(x.get('path') or {}, 'p99_ms')}"),
            row("engine histogram p50 / p99 (instant → writer)",
                lambda x: f"{le_text(x['histogram']['p50_le'])} / "
                f"{le_text(x['histogram']['p99_le'])}"),
            row("`zhida_timer_oldest_due_seconds` peak",
                lambda x: f"{x['oldest_due_max']:.2f} s" if x["oldest_due_max"] is not None
                else "–"),
            row("complaints offered / dispatched",
                lambda x: f"{x['intake']['offered']:g}/s / {x['intake']['dispatched']:g}/s"),
            row("complaint produce → dispatched p50 / p99",
                lambda x: f"{ms(x['intake'].get('latency') or {}, 'p50_ms')} / "
                f"{ms(x['intake'].get('latency') or {}, 'p99_ms')}"),
            row("cores used: worker / broker / this script",
                lambda x: " / ".join(f"{(x.get('cpu') or {}).get(k, 0):.2f}"
                                     for k in ("worker", "broker", "bench"))),
            row("ladder: cases by firings seen; wrong order; duplicates",
                lambda x: f"{x['per_case']}; {x['wrong_ladder_count']}; {x['duplicates']}"),
            "",
            "By kind, with N armed:",
            "",
            "| lateness (arrival − instant due) | p50 | p99 | max | mean |",
            "|---|---:|---:|---:|---:|",
        ]
        for k, label in (("warn", "reminders (`warned`)"), ("due", "stage due (`escalated` 1)"),
                         ("supervise", "supervision due (`escalated` 2, 3)")):
            lines.append(_lat_row(label, (lt.get("lateness_by_kind") or {}).get(k, {})))
    return lines


def burst_lines(d: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for i, b in enumerate(d.get("bursts") or [], 1):
        lines += ["", f"## Step 2.{i}: {b['size']:,} due at one instant, complaints offered at "
                      f"{b['rate']:g}/s", ""]
        for key in ("warning", "error"):
            if b.get(key):
                lines += [f"**{b[key].splitlines()[0]}**", ""]
        ctl, bu = b["control"], b["burst"]
        lines += [
            f"{b['size']:,} cases suspended in {b['suspend_seconds']:.1f} s; T = {b['t']}. "
            f"All resumed **{b['burst_seconds']:.1f} s** after T (first "
            f"{b['first_after_t']} s after T); per case "
            f"{b['once']['exactly_once']:,} exactly once, {b['once']['never']:,} never, "
            f"{b['once']['more_than_once']:,} more than once; {b['duplicates']:,} duplicate "
            f"records. `zhida_timer_oldest_due_seconds` peaked at "
            f"{b['oldest_due_max'] if b['oldest_due_max'] is not None else '–'} s; engine "
            f"histogram over the burst: {b['histogram']['count']:,.0f} firings, p50 "
            f"{le_text(b['histogram']['p50_le'])}, p99 {le_text(b['histogram']['p99_le'])}; "
            "stale commands ignored meanwhile (a firing the ticker sent again after 30 s in "
            f"flight, then found applied): {b.get('ignored', 0):,.0f}; cores used "
            f"during the burst, worker / broker / this script: "
            + " / ".join(f"{(b.get('cpu') or {}).get(k, 0):.2f}"
                         for k in ("worker", "broker", "bench")) + ".",
            "",
            "| window | length | offered | **dispatched** | produce → dispatched p50 | p99 | "
            "max | not dispatched |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, w in (("control (no timer due)", ctl), ("burst (T → last resume)", bu)):
            lat = w.get("latency") or {}
            lines.append(
                f"| {label} | {w['seconds']:.1f} s | {w['offered']:,.0f}/s | "
                f"**{w['dispatched']:,.0f}/s** | {lat.get('p50_ms', 0):,.0f} ms | "
                f"{lat.get('p99_ms', 0):,.0f} ms | {lat.get('max_ms', 0):,.0f} ms | "
                f"{w['not_dispatched']} |")
        rl = b["resume_lateness"]
        lines += [
            "",
            f"Ratio burst / control: **{b['ratio']}**. Resume lateness (arrival − T): p50 "
            f"{rl.get('p50_ms', 0) / 1000:.2f} s, p99 {rl.get('p99_ms', 0) / 1000:.2f} s, max "
            f"{rl.get('max_ms', 0) / 1000:.2f} s.",
            "",
            "Per second around T (complaints dispatched / cases resumed): "
            + ", ".join(f"{s:+d}: {x}/{y}" for s, x, y in b["timeline"]) + ".",
        ]
    return lines


def kill_lines(d: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    k = d.get("kill")
    if k:
        lines += ["", "## Step 3: SIGKILL with N armed", ""]
        for key in ("warning", "error"):
            if k.get(key):
                lines += [f"**{k[key].splitlines()[0]}**", ""]
        kl = k.get("lateness") or {}
        lines += [
            "| figure | measured | target |", "|---|---|---|",
            f"| resumes due while down | {k['size']:,} over {k['down_seconds']:g} s "
            f"(fired before the kill: {k['fired_before_kill']}) | |",
            f"| down (SIGKILL → restart) | {k['down_seconds_actual']:.1f} s | |",
            f"| restart → `/readyz` 200 | **{k['launch_to_ready']:.1f} s** (SIGKILL → ready "
            f"{k['kill_to_ready']:.1f} s) | |",
            f"| `/readyz` → first resume read back | **{k.get('ready_to_first', '–')} s**"
            f"{ok_mark(k['ready_to_first'] < TARGET_FIRST_S if 'ready_to_first' in k else None)}"
            " | < 5 s |",
            f"| `/readyz` → last resume read back | {k.get('ready_to_last', '–')} s | |",
            f"| exactly once | {k['once']['exactly_once']:,}/{k['size']:,} (never "
            f"{k['once']['never']}, more than once {k['once']['more_than_once']}); "
            f"{k['duplicates']:,} duplicate records | each once |",
            f"| lateness (arrival − instant due) | p50 {kl.get('p50_ms', 0) / 1000:.1f} s, "
            f"max {kl.get('max_ms', 0) / 1000:.1f} s (the instants passed while down) | |",
            f"| worker RSS after the restart | {mib(k.get('rss_after'))} | |",
        ]
    return lines


def memory_lines(d: dict[str, Any]) -> list[str]:
    ix = d.get("index")
    lines = ["", "## Memory", ""]
    if ix:
        kinds = {"s:": "state", "f:": "file", "h:": "history", "t:": "timer index",
                 "m:": "marks", "p:": "policy"}
        lines += ["| key kind | records | key + value bytes | per record |",
                  "|---|---:|---:|---:|"]
        for kind, label in kinds.items():
            cnt = ix["records"].get(kind, 0)
            b = ix["bytes"].get(kind, 0)
            lines.append(f"| `{kind}` {label} | {cnt:,} | {b:,} | "
                         f"{b / cnt if cnt else 0:,.0f} B |")
        armed = (d.get("final") or {}).get("armed")
        lines += [
            "",
            f"- `t:` records in RocksDB after the run: {ix['t_records']:,}; "
            f"`zhida_timers_armed` before the stop: {armed if armed is None else f'{armed:,.0f}'}"
            + (" (equal)" if armed is not None and int(armed) == ix["t_records"] else
               " (**differ**)") + ".",
            f"- The `t:` records alone in a fresh RocksDB (Snappy, compacted): "
            f"{mib(ix['t_only_disk'])} on disk, **{ix['t_disk_per_record']:,.0f} B per armed "
            f"deadline** ({ix['t_raw_per_record']:,.0f} B of key + value before compression).",
            f"- Data dir of the worker at the end: {mib(d.get('store_disk_end'))} for "
            f"{ix['all_raw'] / 1024 / 1024:,.0f} MiB of key + value; the index is "
            f"{ix['bytes'].get('t:', 0) / max(ix['all_raw'], 1):.0%} of the raw bytes.",
            f"- Worker RSS per open case (every one armed): {d['rss_per_case']:,.0f} B, of "
            "which the index has no per-timer part in the heap (see Method).",
            "- On the changelog, arming writes one `t:` record of the size above and "
            "disarming one tombstone (the key, ~40 B); an opened case arms once.",
        ]
    elif d.get("index_error"):
        lines.append(f"Reading the RocksDB back failed: {d['index_error']}")
    else:
        lines.append("Not measured in this run.")
    return lines


def final_lines(data: dict[str, Any], d: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    f = d.get("final")
    if f:
        lines += ["", "## At the end", "",
                  "`zhida_timer_firings_total` by kind: "
                  + ", ".join(f"{k} {v or 0:,.0f}" for k, v in f["firings"].items())
                  + f" (counted since the last restart); ignored (stale) commands "
                  f"{f['ignored'] or 0:,.0f}; dead letters {f['deadletters'] or 0:,.0f}; "
                  f"oldest due {f['oldest_due']} s. Forks (one seq, two event types): "
                  f"{len(d.get('forks') or [])}. Sessions left after the run: "
                  f"{', '.join(data.get('left') or []) or 'none'}."]
    return lines
