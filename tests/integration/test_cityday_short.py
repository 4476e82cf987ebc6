"""A city day under kill -9, short (issue 23, item 4; ``make bench-cityday`` is the long one).

It lives in tests/integration, so ``make test`` runs it (``make bench-cityday-short`` runs it
alone; ``CITYDAY_SEED=n`` replays one day). Two workers of one group on their own embedded
broker, the second-scale policy tests/data/cityday-short.toml, a day compressed into 36 s of
load (bench/cityday.py ``CityDayLoad``: complaints with neighbours' repeats, alarms with a storm
in one street, two directives, and the units' and citizens' answers: acks, returns and the
assignments after them, resolutions, ratings that reopen or close, verifications, forged acks),
one worker SIGKILLed and restarted. Everything read back must pass ``check_cityday`` (every
input accounted for, no case without its order, per-case seq gap-free, nothing forked, dead
letters only where meant), and once nothing can fire any more the city figures of both workers
must equal the recount of the case events read back. Then the checker is shown to catch what it
claims to: the same outputs with one thing taken away or forked each fail their rule.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from bench.cityday import FIELDS, CityDayRun, DayConfig, check_cityday, recounted
from bench.crashload import CrashConfig
from bench.crashload_read import Record, make_record
from engine.tools.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "tests" / "data" / "cityday-short.toml"
TZ = ZoneInfo("Asia/Shanghai")  # the policy's calendar zone (the default)
SECONDS = 36.0  # of load: ~27 complaints/s on average, ~50/s at the day's peaks
WORKERS = 2


def short_day(seed: int) -> tuple[CrashConfig, DayConfig]:
    day = DayConfig(seconds=SECONDS, complaints=960, alarms=210, storm=100, storm_seconds=3,
                    directives=2, directive_ack=6, directive_report=12, forge_every=25,
                    seed=seed)
    cfg = CrashConfig(duration=SECONDS, kill_every=20, kills=1, rate=0.0, min_uptime=5,
                      jitter=5, tail=5, ready_timeout=90, drain_timeout=90, forge_every=25,
                      directive_every=0, seed=seed, worker_env={"ZHIDA_POLICY": str(POLICY)},
                      workers=WORKERS, down=3)
    return cfg, day


@pytest.mark.timeout(300)
async def test_a_short_city_day_under_kill_9(tmp_path: Path) -> None:
    started = time.monotonic()
    seed = int(os.environ.get("CITYDAY_SEED") or random.randrange(1 << 16))  # to rerun one
    cfg, day = short_day(seed)
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    broker_proc = broker.proc
    try:
        run = CityDayRun(broker.bootstrap, tmp_path, cfg, day, TZ, progress=print)
        result = await run.run()
    finally:
        broker.stop()
    assert broker_proc is not None and broker_proc.poll() is not None, "broker outlived the test"
    summary = f"seed {seed}\n{result.summary()}"
    print(summary)
    print(f"wall time {time.monotonic() - started:.1f} s")
    c = result.report.counts
    types = result.report.event_types

    # the day happened: one kill, every kind of input, every kind of outcome
    assert len(result.kills) == 1, summary
    assert c["complaints_sent"] >= day.complaints * 0.95, summary
    assert c["alarms_sent"] >= day.alarms * 0.9 and c["storm_street_alarms"] >= day.storm * 0.9
    assert c["storm_street_cases"] <= 3, summary  # a storm in one street merges
    assert c["complaints_joined"] > 0 and c["alarms_joined"] > 0, summary
    ups = c["updates_by_action"]
    assert all(ups.get(a, 0) > 0 for a in ("ack", "return", "assign", "resolve", "verify",
                                          "forged")), summary
    assert c["ratings_sent"] > 0 and c["directives_completed"] >= 1, summary
    assert all(types.get(t, 0) > 0 for t in ("reopened", "warned", "escalated", "merged",
                                             "closed")), summary
    assert c["send_errors"] == 0 and not result.reader_errors, summary
    assert not result.not_ready_at_end, summary

    # nothing lost, nothing forked, every input one outcome
    assert result.report.ok, summary
    assert result.drain_complete, summary

    # the figures of both workers equal the recount, once quiet
    figures = result.extra["figures"]
    assert figures["outputs_after_quiet"] == 0, figures
    for w in figures["workers"]:
        assert w["equal"], w
        assert w["coverage"]["counted"] == w["coverage"]["partitions"], w
        assert w["answer"] == figures["recount"], w

    _the_checker_catches(run)


def _the_checker_catches(run: CityDayRun) -> None:
    """The same outputs, each time with one thing missing or forked: its rule fires."""
    sent, records = run.sent, run.records
    assert sent is not None and check_cityday(sent, records).ok

    def rules(recs: list[Record]) -> set[str]:
        return set(check_cityday(sent, recs).by_rule())

    events = [r for r in records if r.kind == "event"]
    by_case: dict[str, list[Record]] = {}
    for r in events:
        by_case.setdefault(str(r.f["case_id"]), []).append(r)
    complaint = next(cid for cid, rs in by_case.items()
                     if len(rs) >= 4 and rs[0].body().get("source") == "complaint"
                     and not any(r.f["type"] == "merged" for r in rs))
    copies = Counter((str(r.f["case_id"]), r.f["seq"]) for r in events)
    last = {cid: max(r.f["seq"] for r in rs) for cid, rs in by_case.items()}

    def inner(pred: Callable[[Record], bool]) -> Record:
        """An event with no redelivered copy and a later one on its case: without it, a gap."""
        return next(r for r in events if pred(r) and copies[(str(r.f["case_id"]), r.f["seq"])] == 1
                    and r.f["seq"] < last[str(r.f["case_id"])])

    acked = inner(lambda r: r.f["type"] == "acknowledged")
    alarm_join = inner(lambda r: r.f["type"] == "merged" and r.body().get("source") == "sensed")
    order = next(r for r in records if r.kind == "order" and r.f.get("case_id"))
    forged = next(r for r in records if r.kind == "dead" and r.f.get("reason") == "unauthorized")

    def without(*gone: Record) -> list[Record]:
        ids = {id(g) for g in gone}
        return [r for r in records if id(r) not in ids]

    assert "lost_input" in rules([r for r in records if r.f.get("case_id") != complaint])
    assert {"seq_gap", "unaccounted_update"} <= rules(without(acked))
    assert {"seq_gap", "unaccounted_alarms"} <= rules(without(alarm_join))
    assert "lost_order" in rules(without(order))
    assert "lost_dead_letter" in rules(without(forged))
    body = acked.body() | {"unit": "500000"}
    fork = make_record(acked.topic, acked.partition, 10**9, acked.key.encode(),
                       orjson.dumps(body), [])
    assert "seq_fork" in rules([*records, fork])
    # and the figures see a case event missing
    want = {n: recounted(records, TZ)[n] for n in FIELDS}
    assert want != {n: recounted(without(acked), TZ)[n] for n in FIELDS}
