"""Supervision figures: a hand-computed scenario through the real core, and the invariants of
the incremental counters over random command sequences (engine/core/figures.py), among them
that ``recount`` of the events as they go out on ``zhida.case.events`` gives the same
counters."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core import Accepted, World, apply, decide, file_after, react
from engine.core import figures as figures_module
from engine.core.decide import STAGE_STARTS
from engine.core.figures import (
    DAY_COUNTERS,
    NOW_COUNTERS,
    Days,
    Delta,
    as_event,
    day_of,
    figures,
    merge,
    recount,
    stats,
    tally,
)
from engine.core.model import CaseEvent, CaseFile, CaseState, Command, Expire, OpenCase
from engine.core.sla import next_timer
from schemas.codec import encode
from tests.support.helpers import T0, open_cmd, rate_cmd, update_cmd

TZ = ZoneInfo("Asia/Shanghai")
CITY, D, S1, S2 = "500000", "500103", "500103001", "500103003"  # 渝中区: 七星岗, 解放碑
D2, S3 = "500104", "500104001"  # 大渡口区: 新山村
DAY1, DAY2 = date(2026, 11, 23), date(2026, 11, 24)
# T0 is 09:00Z = 17:00 in Chongqing on DAY1; DAY2 starts at T0 + 7h (16:00Z)

# the policy of the `world` fixture (tests/support/fixtures.py) in this module
POLICY = """
[policy]
max_returns = 2
warn_fraction = 0.5
clock = "24x7"
[stages.normal]
triage = "PT30M"
ack = "PT1H"
resolve = "PT6H"
feedback = "PT2H"
supervise = "PT3H"
[stages.urgent]
triage = "PT30M"
ack = "PT1H"
resolve = "PT6H"
feedback = "PT2H"
supervise = "PT3H"
"""


def h(hours: float = 0, minutes: int = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes)


class City:
    """Cases driven through decide/apply; every accepted command tallied into the stores the
    writer keeps (day -> {unit -> counters}, and now {unit -> counters}), as a worker would.
    Also keeps each command's delta and the events as JSON bodies, as ``zhida.case.events``
    carries them (react + the codec the worker sends with)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.states: dict[str, CaseState] = {}
        self.files: dict[str, CaseFile] = {}
        self.history: dict[str, list[CaseEvent]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.deltas: list[tuple[str, datetime, Delta]] = []  # (case, command at, delta)
        self.days: Days = {}
        self.now: dict[str, dict[str, int]] = {}

    def send(self, cmd: Command) -> bool:
        before = self.states.get(cmd.aggregate)
        d = decide(before, cmd, self.world)
        if not isinstance(d, Accepted):
            return False
        after = apply(before, cmd, d.events)
        self.states[cmd.aggregate] = after
        self.history.setdefault(cmd.aggregate, []).extend(d.events)
        file = self.files[cmd.aggregate] = file_after(self.files.get(cmd.aggregate), d.events, cmd)
        self.messages.setdefault(cmd.aggregate, []).extend(
            orjson.loads(encode(o.value)) for o in react(after, file, d.events,
                                                         self.world.topology)
            if o.channel == "case_events")
        delta = tally(before, after, d.events, TZ)
        self.deltas.append((cmd.aggregate, cmd.at, delta))
        add_delta(self.days, self.now, delta)
        assert all(v > 0 for c in self.now.values() for v in c.values())
        assert all(v > 0 for u in self.days.values() for c in u.values() for v in c.values())
        return True

    def advance(self, case_id: str, until: datetime) -> None:
        """Fire the case's timers due by ``until``, in order (the ticker's job)."""
        while (t := next_timer(self.states[case_id])) is not None and t.at <= until:
            assert self.send(Command(aggregate=case_id, at=t.at,
                                     body=Expire(timer=t.kind, stage=t.stage, instant=t.at)))

    def at(self, cmd: Command) -> None:
        if cmd.aggregate in self.states:
            self.advance(cmd.aggregate, cmd.at)
        assert self.send(cmd), cmd

    def stats(self, unit: str, start: date = DAY1, end: date = DAY2) -> dict:
        return stats(unit, start, end, self.days, self.now, self.world.topology)


def add_delta(days: Days, now: dict[str, dict[str, int]], delta: Delta) -> None:
    """What the writer does with a command's delta: add it to the day and now records."""
    for (unit, day), c in delta.days.items():
        merge(days.setdefault(day, {}), {unit: c})
    merge(now, delta.now)


def as_of(city: City, until: datetime) -> tuple[Days, dict[str, dict[str, int]]]:
    """The incremental counters as they stood at ``until``: each case's commands in order up
    to its first one after ``until`` (what ``recount`` keeps with ``now``)."""
    days: Days = {}
    now: dict[str, dict[str, int]] = {}
    stopped: set[str] = set()
    for case_id, at, delta in city.deltas:
        if case_id in stopped or at > until:
            stopped.add(case_id)
            continue
        add_delta(days, now, delta)
    return days, now


def upd(action: str, actor: str, case_id: str, at: datetime, **fields: object) -> Command:
    return update_cmd(action, actor, case_id, at=at, **fields)


@pytest.fixture(scope="module")
def scenario(world: World) -> City:
    """Six cases; timers fired up to NOW = T0 + 10h (03:00 on DAY2).

    Policy: ack 1h, resolve 6h, feedback 2h, supervise 3h, reminder at half the stage.
    c1 S1: ack +20m (due +1h, on time); resolve +2h (due +6h20m, on time); satisfied +3h.
    c2 S1: reminder +30m; due +1h: 督办 S1 late (escalation S1); ack +1h30m (late);
           resolve +4h (due +7h30m, on time); basically satisfied +5h.
    c3 S1: S1 returns +10m → order to D; D acks +20m (on time); resolves +1h (on time);
           unsatisfied +2h → reopened, a new order to D; D acks +2h10m (on time, resolve due
           +8h10m); reminder +5h10m (D, DAY1); +8h10m 督办: D late (DAY2). Open, overdue at D.
    c4 S2: ack +15m (on time, resolve due +6h15m); reminder +3h15m; +6h15m 督办 S2 late
           (DAY1); resolve +8h30m (late, DAY2): supervision ends. Open (awaiting rating).
    c5 S3: never acknowledged: reminder +30m, +1h 督办 S3 late, +4h D2 late, +7h the city late
           (top) at exactly 00:00 of DAY2. Open, overdue at S3.
    c6 triage at the city (unplaceable address); the city assigns it to S2 +10m (order);
           S2 acks +20m (on time, resolve due +6h20m); reminder +3h20m; +6h20m 督办 S2 late
           (DAY1); +9h20m D late (DAY2). Open, overdue at S2.
    """
    c = City(world)
    for cid, unit in [("c1", S1), ("c2", S1), ("c3", S1), ("c4", S2), ("c5", S3)]:
        c.at(open_cmd(cid, unit=unit, at=T0))
    c.at(open_cmd("c6", location={"address": "某处"}, at=T0))
    c.at(upd("ack", S1, "c1", h(minutes=20)))
    c.at(upd("resolve", S1, "c1", h(2)))
    c.at(rate_cmd("satisfied", "c1", at=h(3)))
    c.at(upd("ack", S1, "c2", h(1, 30)))
    c.at(upd("resolve", S1, "c2", h(4)))
    c.at(rate_cmd("basically_satisfied", "c2", at=h(5)))
    c.at(upd("return", S1, "c3", h(minutes=10)))
    c.at(upd("ack", D, "c3", h(minutes=20)))
    c.at(upd("resolve", D, "c3", h(1)))
    c.at(rate_cmd("unsatisfied", "c3", at=h(2)))
    c.at(upd("ack", D, "c3", h(2, 10)))
    c.at(upd("ack", S2, "c4", h(minutes=15)))
    c.at(upd("resolve", S2, "c4", h(8, 30)))
    c.at(upd("assign", CITY, "c6", h(minutes=10), assign_to=S2))
    c.at(upd("ack", S2, "c6", h(minutes=20)))
    for cid in c.states:
        c.advance(cid, h(10))
    return c


def test_the_cases_went_as_the_story_says(scenario: City) -> None:
    s = scenario.states
    assert {k: (v.state, v.unit) for k, v in s.items()} == {
        "c1": ("closed", S1), "c2": ("closed", S1), "c3": ("acknowledged", D),
        "c4": ("resolved", S2), "c5": ("dispatched", S3), "c6": ("acknowledged", S2)}
    escalated = [(e.case_id, e.late_unit, day_of(e.at, TZ))
                 for h_ in scenario.history.values() for e in h_ if e.type == "escalated"]
    assert sorted(escalated) == sorted([
        ("c2", S1, "2026-11-23"), ("c3", D, "2026-11-24"), ("c4", S2, "2026-11-23"),
        ("c5", S3, "2026-11-23"), ("c5", D2, "2026-11-23"), ("c5", CITY, "2026-11-24"),
        ("c6", S2, "2026-11-23"), ("c6", D, "2026-11-24")])


def test_day_counters_by_unit_and_local_day(scenario: City) -> None:
    assert scenario.days == {
        "2026-11-23": {
            # c1, c2, c3 placed here; c1 on time, c2 late; c3 returned; c1, c2 resolved
            S1: {"created": 3, "received": 3, "responded": 2, "responded_on_time": 1,
                 "returned": 1, "resolved": 2, "resolved_on_time": 2, "rated": 2,
                 "satisfied": 1, "basically_satisfied": 1, "closed": 2, "warnings": 1,
                 "escalations": 1},
            # c4 placed; c6 assigned: two orders, both acknowledged on time
            S2: {"created": 1, "received": 2, "responded": 2, "responded_on_time": 2,
                 "warnings": 2, "escalations": 2},
            # c3: the returned order and the reopened one, both acknowledged on time
            D: {"received": 2, "responded": 2, "responded_on_time": 2, "resolved": 1,
                "resolved_on_time": 1, "rated": 1, "unsatisfied": 1, "reopened": 1,
                "warnings": 1},
            S3: {"created": 1, "received": 1, "warnings": 1, "escalations": 1},
            D2: {"escalations": 1},
            CITY: {"created": 1, "received": 1},  # c6 triage
        },
        "2026-11-24": {
            S2: {"resolved": 1},  # c4, late
            D: {"escalations": 2},  # c3 (its own stage), c6 (its supervision deadline)
            CITY: {"escalations": 1},  # c5 reached the top at 00:00 local
        },
    }
    assert scenario.now == {S2: {"backlog": 2, "overdue": 1}, D: {"backlog": 1, "overdue": 1},
                            S3: {"backlog": 1, "overdue": 1}}


def test_street_figures(scenario: City) -> None:
    got = scenario.stats(S1)
    assert got.pop("children") == []
    assert got == {
        "unit": S1, "from": "2026-11-23", "to": "2026-11-24",
        "received": 3, "responded": 2, "response_rate": 0.6667,  # 2/3: c3 was returned
        "resolved": 2, "resolution_rate": 0.6667,  # 2/3
        "rated": 2, "satisfied": 2, "satisfaction_rate": 1.0,  # satisfied + basically
        "on_time_ack_rate": 0.5,  # c1 on time, c2 late
        "on_time_resolve_rate": 1.0,
        "overdue": 0, "yellow": 0, "reopened": 0, "reopen_rate": 0.0, "escalations": 1,
        "backlog": 0, "disputes": 0, "precedent_dispatches": 0}


def test_district_figures_roll_up_its_streets_and_itself(scenario: City) -> None:
    got = scenario.stats(D)
    children = {c["unit"]: c for c in got.pop("children")}
    assert got == {
        "unit": D, "from": "2026-11-23", "to": "2026-11-24",
        # orders: S1 3 + S2 2 + D 2 = 7; acknowledged: 2 + 2 + 2 = 6
        "received": 7, "responded": 6, "response_rate": 0.8571,
        # resolved: S1 2 (c1, c2) + S2 1 (c4) + D 1 (c3) = 4 of 7
        "resolved": 4, "resolution_rate": 0.5714,
        # settled ratings: c1 satisfied, c2 basically, c3 unsatisfied
        "rated": 3, "satisfied": 2, "satisfaction_rate": 0.6667,
        # on time: S1 1 + S2 2 + D 2 = 5 of 6 acks; resolves: c1, c2, c3 of 4 (c4 late)
        "on_time_ack_rate": 0.8333, "on_time_resolve_rate": 0.75,
        "overdue": 2,  # c3 at D, c6 at S2
        "yellow": 0,  # no open case is reminded but not yet late at the end
        "reopened": 1, "reopen_rate": 0.25,  # 1 of 4 resolutions
        "escalations": 5,  # S1: c2; S2: c4, c6; D: c3, c6
        "backlog": 3,  # c3 at D, c4 and c6 at S2
        "disputes": 0, "precedent_dispatches": 0}  # one return, by one unit
    assert set(children) == set(scenario.world.topology.children(D))
    s1 = scenario.stats(S1)
    del s1["from"], s1["to"], s1["children"]
    assert children[S1] == s1
    assert children[S2] == {
        "unit": S2, "received": 2, "responded": 2, "response_rate": 1.0, "resolved": 1,
        "resolution_rate": 0.5, "rated": 0, "satisfied": 0, "satisfaction_rate": None,
        "on_time_ack_rate": 1.0, "on_time_resolve_rate": 0.0, "overdue": 1, "yellow": 0,
        "reopened": 0,
        "reopen_rate": 0.0, "escalations": 2, "backlog": 2, "disputes": 0,
        "precedent_dispatches": 0}
    # a street with nothing: every rate null (nothing counted), never 0 or 1
    quiet = children["500103004"]
    assert {k: v for k, v in quiet.items() if k.endswith("_rate")} == dict.fromkeys(
        ["response_rate", "resolution_rate", "satisfaction_rate", "on_time_ack_rate",
         "on_time_resolve_rate", "reopen_rate"])
    assert quiet["received"] == quiet["backlog"] == 0


def test_city_figures(scenario: City) -> None:
    got = scenario.stats(CITY)
    children = {c["unit"]: c for c in got.pop("children")}
    assert got == {
        "unit": CITY, "from": "2026-11-23", "to": "2026-11-24",
        # 渝中 7 + S3 1 (c5) + the city 1 (c6 triage) = 9 orders for 6 cases
        "received": 9, "responded": 6, "response_rate": 0.6667,
        "resolved": 4, "resolution_rate": 0.4444,
        "rated": 3, "satisfied": 2, "satisfaction_rate": 0.6667,
        "on_time_ack_rate": 0.8333, "on_time_resolve_rate": 0.75,
        "overdue": 3,  # c3, c5, c6
        "yellow": 0,
        "reopened": 1, "reopen_rate": 0.25,
        "escalations": 8,  # every escalated event: 渝中 5 + S3 + D2 + the city's top
        "backlog": 4,  # c3, c4, c5, c6
        "disputes": 0, "precedent_dispatches": 0}
    assert children[D2]["received"] == 1 and children[D2]["escalations"] == 2
    assert children[D2]["overdue"] == children[D2]["backlog"] == 1
    assert children[D]["received"] == 7


def test_a_period_counts_only_its_local_days(scenario: City) -> None:
    first = scenario.stats(CITY, DAY1, DAY1)
    # DAY2 held c4's late resolution and three escalations (c3 D, c6 D, c5 top)
    assert (first["from"], first["to"]) == ("2026-11-23", "2026-11-23")
    assert (first["resolved"], first["escalations"]) == (3, 5)
    assert first["on_time_resolve_rate"] == 1.0
    assert (first["overdue"], first["backlog"]) == (3, 4)  # now, whatever the period
    second = scenario.stats(S2, DAY2, DAY2)
    assert (second["received"], second["resolved"], second["response_rate"]) == (0, 1, None)
    assert scenario.stats(CITY, date(2026, 11, 25), date(2026, 11, 30))["received"] == 0
    with pytest.raises(ValueError):
        scenario.stats(CITY, DAY2, DAY1)
    with pytest.raises(KeyError):
        scenario.stats("999", DAY1, DAY2)


def test_day_is_the_local_day_in_the_given_zone() -> None:
    assert day_of(datetime(2026, 11, 23, 15, 59, 59, tzinfo=ZoneInfo("UTC")), TZ) \
        == "2026-11-23"
    assert day_of(datetime(2026, 11, 23, 16, 0, tzinfo=ZoneInfo("UTC")), TZ) == "2026-11-24"
    assert day_of(datetime(2026, 11, 23, 16, 0), TZ) == "2026-11-24"  # naive: UTC


def test_merge_adds_in_place_and_drops_zeros() -> None:
    into = {"a": {"backlog": 1, "overdue": 1}, "b": {"backlog": 2}}
    merge(into, {"a": {"overdue": -1}, "b": {"backlog": -2}, "c": {"backlog": 1, "x": 0}})
    assert into == {"a": {"backlog": 1}, "c": {"backlog": 1}}


def test_counter_names_are_what_tally_writes(scenario: City) -> None:
    seen = {n for u in scenario.days.values() for c in u.values() for n in c}
    assert seen <= set(DAY_COUNTERS)
    assert {n for c in scenario.now.values() for n in c} <= set(NOW_COUNTERS)
    assert set(figures({})) == {
        "received", "responded", "response_rate", "resolved", "resolution_rate", "rated",
        "satisfied", "satisfaction_rate", "on_time_ack_rate", "on_time_resolve_rate",
        "overdue", "yellow", "reopened", "reopen_rate", "escalations", "backlog"}
    assert not Delta()


# ---- properties over random command sequences ----

STREETS = [S1, S2, S3, "500103-CG"]
OPENINGS = [("complaint", "road_damage", {"unit": S1}), ("complaint", "road_damage",
                                                        {"unit": S3}),
            ("sensed", "waterlogging", {"unit": S2}),
            ("complaint", "road_damage", {"address": "某处"}),
            ("sensed", "bridge_structure", {"unit": S3})]
ACTIONS = ["ack", "ack", "resolve", "resolve", "return", "assign", "suspend", "resume",
           "verify", "verify", "progress", "assist"]
step = st.tuples(
    st.integers(0, 2),  # which case
    st.sampled_from(["update"] * 5 + ["rate"] * 2 + ["tick"] * 3),
    st.sampled_from(ACTIONS),
    st.sampled_from(["@holder"] * 4 + ["@parent", CITY]),
    st.sampled_from(STREETS),
    st.sampled_from(["satisfied", "basically_satisfied", "unsatisfied"]),
    st.integers(0, 240),  # minutes that pass
)


def drive(world: World, openings: list[int], steps: list[tuple]) -> City:
    c = City(world)
    clock = T0
    for i, k in enumerate(openings):
        source, category, location = OPENINGS[k]
        c.at(open_cmd(f"p{i}", source=source, category=category, location=location, at=clock))
    for n, (i, kind, action, actor, other, rating, minutes) in enumerate(steps):
        cid = f"p{i % len(openings)}"
        s = c.states[cid]
        clock += timedelta(minutes=minutes)
        if kind == "tick":
            t = next_timer(s)
            if t is not None:
                clock = max(clock, t.at)
                c.advance(cid, t.at)
            continue
        if kind == "rate":
            c.send(rate_cmd(rating, cid, at=clock, feedback_id=f"f{n}"))
            continue
        who = {"@holder": s.unit, "@parent": world.topology.parent(s.unit) or s.unit}
        fields = {"assign": {"assign_to": other}, "assist": {"assist_units": [other]},
                  "suspend": {"reason": "r", "until": clock + timedelta(hours=5)}}
        c.send(update_cmd(action, who.get(actor, actor), cid, at=clock, update_id=f"u{n}",
                          **fields.get(action, {})))
    return c


COUNTS = ("received", "responded", "resolved", "rated", "satisfied", "overdue", "reopened",
          "escalations", "backlog")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(openings=st.lists(st.integers(0, len(OPENINGS) - 1), min_size=1, max_size=3),
       steps=st.lists(step, max_size=40))
def test_incremental_counters_equal_a_recount(world: World, openings: list[int],
                                              steps: list[tuple]) -> None:
    c = drive(world, openings, steps)  # City.send asserts no counter ever goes negative
    assert recount(c.history, TZ) == (c.days, c.now)
    # every event counted once, on its local day
    events = [e for h_ in c.history.values() for e in h_]
    total: dict[str, int] = {}
    for units in c.days.values():
        for counters in units.values():
            for n, v in counters.items():
                total[n] = total.get(n, 0) + v
    for name, typ in [("escalations", "escalated"), ("warnings", "warned"),
                      ("reopened", "reopened"), ("closed", "closed"), ("resolved", "resolved"),
                      ("responded", "acknowledged"), ("created", "created")]:
        assert total.get(name, 0) == sum(e.type == typ for e in events), name

    topo = world.topology
    span = (DAY1 - timedelta(days=1), DAY2 + timedelta(days=30))
    city = stats(CITY, *span, c.days, c.now, topo)
    # the city = its districts + the units above any district (the centre, city departments)
    parts = [stats(d, *span, c.days, c.now, topo) for d in topo.districts]
    city_level = [u for u in topo.units if topo.district_of(u) is None]
    own = {u: stats(u, *span, c.days, c.now, topo) for u in city_level}
    for name in COUNTS:
        below = sum(p[name] for p in parts)
        # a city-level unit's own counters: its subtree minus its children's subtrees
        above = sum(o[name] - sum(ch[name] for ch in o["children"]) for o in own.values())
        assert city[name] == below + above, name
        assert city[name] == sum(ch[name] for ch in city["children"]) + \
            own[CITY][name] - sum(ch[name] for ch in own[CITY]["children"]), name
    # per order: at most one response and one resolution, so no rate above 1 over all time
    for f in [city, *parts, *city["children"]]:
        for name, v in f.items():
            if name.endswith("_rate") and v is not None:
                assert 0 <= v <= 1, (name, f)


# ---- recount from the events on zhida.case.events ----


def _as_on_the_topic(c: City, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """Each case's event bodies out of order, some twice: a reader gets redelivered copies."""
    out = {}
    for case_id, bodies in c.messages.items():
        copies = bodies + [b for b in bodies if rng.random() < 0.2]
        rng.shuffle(copies)
        out[case_id] = copies
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(openings=st.lists(st.integers(0, len(OPENINGS) - 1), min_size=1, max_size=3),
       steps=st.lists(step, max_size=40), seed=st.integers(0, 2**16),
       cut=st.integers(-60, 60 * 48))
def test_recount_of_the_topic_equals_the_incremental_counters(
        world: World, openings: list[int], steps: list[tuple], seed: int, cut: int) -> None:
    c = drive(world, openings, steps)
    topic = _as_on_the_topic(c, random.Random(seed))
    assert recount(topic, TZ) == (c.days, c.now)
    until = T0 + timedelta(minutes=cut)
    days, now = as_of(c, until)
    assert recount(topic, TZ, until) == (days, now)


def test_recount_of_the_scenario(scenario: City) -> None:
    """The hand-computed days and now of the story, from its events alone."""
    days, now = recount(scenario.messages, TZ)
    assert (days, now) == (scenario.days, scenario.now)
    assert "2026-11-24" in days and now[D] == {"backlog": 1, "overdue": 1}
    for until in (T0 - timedelta(minutes=1), h(1), h(3, 30), h(7), h(10)):
        assert recount(scenario.messages, TZ, until) == as_of(scenario, until), until
    assert recount(scenario.messages, TZ, T0 - timedelta(minutes=1)) == ({}, {})
    # a naive ``now`` is UTC, as in day_of
    assert recount(scenario.messages, TZ, h(7).replace(tzinfo=None)) == as_of(scenario, h(7))


def test_as_event_takes_messages_models_and_events(scenario: City) -> None:
    from schemas.outbound import CaseEventMessage

    body = scenario.messages["c3"][-1]
    event = scenario.history["c3"][-1]
    assert as_event(body).type == event.type and as_event(body).at == event.at
    model = CaseEventMessage.model_validate(body)
    assert as_event(model) == as_event(body)
    assert as_event(event) is event
    assert recount({"c3": [model]}, TZ) == recount({"c3": [body]}, TZ)


def test_recount_knows_the_stage_starts_decide_knows() -> None:
    assert figures_module._STAGE_STARTS == STAGE_STARTS


# ---- 扯皮 and precedents ----


def test_disputes_at_the_arbiter_and_precedent_dispatches_at_the_routed_unit(
        world: World) -> None:
    """d1: S1 returns it (to D), D assigns it to S2, S2 returns it: a dispute, the case goes
    to the arbiter D; D assigns it to S1: the ruling. d2, a later report of the place, is
    dispatched to S1 by that precedent (its OpenCase carries it, as the place's group
    forwards it), not to S2 where its location is."""
    c = City(world)
    c.at(open_cmd("d1", unit=S1, at=T0))
    c.at(upd("return", S1, "d1", h(minutes=10)))
    c.at(upd("assign", D, "d1", h(minutes=20), assign_to=S2))
    c.at(upd("return", S2, "d1", h(minutes=30)))
    c.at(upd("assign", D, "d1", h(minutes=40), assign_to=S1))
    disputed = [e for e in c.history["d1"] if e.dispute]
    assert [(e.type, e.unit, bool(e.ruling)) for e in disputed] == [
        ("returned", D, False), ("assigned", S1, True)]
    ruling = disputed[1].ruling
    opened = open_cmd("d2", unit=S2, at=h(1))
    assert isinstance(opened.body, OpenCase)
    c.at(opened.model_copy(update={"body": opened.body.model_copy(update={
        "precedent": ruling, "precedent_unit": S1})}))
    assert [(e.type, e.unit, e.precedent) for e in c.history["d2"][1:2]] == [
        ("dispatched", S1, ruling)]
    day = DAY1.isoformat()
    assert c.days[day][D]["disputes"] == 1 and "disputes" not in c.days[day].get(S2, {})
    assert c.days[day][S1]["precedent_dispatches"] == 1
    assert "precedent_dispatches" not in c.days[day][S2]  # d1's first dispatch: the rules
    d, city, s2 = c.stats(D), c.stats(CITY), c.stats(S2)
    assert (d["disputes"], d["precedent_dispatches"]) == (1, 1)
    assert (city["disputes"], city["precedent_dispatches"]) == (1, 1)
    assert (s2["disputes"], s2["precedent_dispatches"]) == (0, 0)
    children = {ch["unit"]: ch for ch in d["children"]}
    assert children[S1]["precedent_dispatches"] == 1 and children[S1]["disputes"] == 0
    assert c.stats(D, DAY2, DAY2)["disputes"] == 0  # counted on the event's local day
    assert "disputes" not in figures({}) and "precedent_dispatches" not in figures({})
    # the core's events and the topic's messages (``dispute`` on the return) recount alike
    assert recount(c.history, TZ) == (c.days, c.now)
    assert recount(c.messages, TZ) == (c.days, c.now)
