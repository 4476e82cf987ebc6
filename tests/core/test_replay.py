"""``zhida replay``'s core (engine/core/replay.py): recorded commands decided again.

A ``Live`` harness runs the single writer and its ticker over one partition as
engine/runtime/writer.py and engine/runtime/timers.py do, and records every command it decides
(inputs, merge-group forwards, bounces, forgets, the ticker's firings, directives). Replaying
that log must give the live events exactly; a candidate policy must move reminders and
escalations the way a hand count says; the figures per unit must be the writer's own.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.core import World
from engine.core import directive as dv
from engine.core.figures import figures, stats
from engine.core.model import (
    Command,
    DirectiveUpdate,
    Expire,
    IssueDirective,
    JoinCase,
)
from engine.core.replay import diverged, figures_of, in_log_order, level_of, replay, unit_figures
from engine.core.replay_directives import directive_figures
from schemas.inbound import Directive, UnitUpdate
from tests.support.helpers import (
    CITY,
    DISTRICT,
    OTHER_STREET,
    STREET,
    T0,
    open_cmd,
    rate_cmd,
    update_cmd,
    world_with,
)
from tests.support.replay_live import Live, cid, complaint, directive_commands, m, upd

TZ = ZoneInfo("Asia/Shanghai")
OTHER_DISTRICT_STREET = "500104001"
DAY1, DAY3 = date(2026, 11, 23), date(2026, 11, 25)
# the policy of the `world` fixture (tests/support/fixtures.py): short stages, merging on
POLICY = """
[policy]
max_returns = 2
warn_fraction = 0.5
clock = "24x7"
merge_window = "PT2H"
[stages.normal]
triage = "PT30M"
ack = "PT1H"
resolve = "PT6H"
feedback = "PT2H"
supervise = "PT3H"
[stages.urgent]
triage = "PT20M"
ack = "PT30M"
resolve = "PT3H"
feedback = "PT1H"
supervise = "PT1H"
"""


END = m(30 * 60)  # 30 hours on: 15:00 local on DAY2, every short timer long fired


def story(world: World, lag: timedelta = timedelta(seconds=2)) -> Live:
    """Every kind of input once at least, taken in time order (so the log is in time order)."""
    live = Live(world, lag)
    ack1 = upd("ack", STREET, cid(1), 20)
    inputs = [
        live.routed(complaint(1), m(0)),  # k1: two complainants, rated twice, closed
        live.routed(complaint(2), m(1)),  # joins k1 (一事多诉)
        live.routed(complaint(2), m(2)),  # redelivered: where it went first, a duplicate
        live.routed(complaint(3, OTHER_STREET), m(3)),  # k3: late ack, unsatisfied, unrated
        live.routed(complaint(4, OTHER_DISTRICT_STREET), m(4)),  # k4: never acknowledged
        live.routed(complaint(5, category="street_lighting"), m(5)),  # k5: returned
        open_cmd("s1", source="sensed", category="waterlogging", at=m(6)),
        open_cmd("t1", location={"address": "某处"}, at=m(7)),  # triage at the city
        open_cmd("p1", unit=STREET, at=m(8)),  # suspended, resumed by hand
        *directive_commands(m(9)),  # to every district, none acks; a stale firing
        ack1,
        ack1,  # a client's retry: a duplicate
        upd("ack", "500104", cid(1), 21),  # neither the holder nor above it: rejected
        upd("resolve", STREET, cid(1), 40),
        rate_cmd("satisfied", cid(1), at=m(60)),
        rate_cmd("basically_satisfied", cid(1), at=m(61)),  # closed; its group forgets it
        # a join in flight to k1 when it closed: bounced, the report opens its own case
        Command(aggregate=cid(1), at=m(62), body=JoinCase(open=complaint(6),
                                                        own_case_id=cid(6))),
        upd("ack", OTHER_STREET, cid(3), 90),  # late: escalated at 63 first
        upd("resolve", OTHER_STREET, cid(3), 120),
        rate_cmd("unsatisfied", cid(3), at=m(130)),  # reopened
        upd("ack", OTHER_STREET, cid(3), 140),
        upd("resolve", OTHER_STREET, cid(3), 200),  # never rated: closed unrated
        upd("return", STREET, cid(5), 10),  # to the district
        upd("assign", DISTRICT, cid(5), 15, assign_to=OTHER_STREET),
        upd("ack", OTHER_STREET, cid(5), 25),
        upd("suspend", OTHER_STREET, cid(5), 30, reason="rain", until=m(150)),  # resumes
        upd("resolve", OTHER_STREET, cid(5), 300),
        rate_cmd("satisfied", cid(5), at=m(310)),
        upd("ack", STREET, "s1", 10),
        upd("resolve", STREET, "s1", 50),
        upd("verify", DISTRICT, "s1", 70),
        upd("assign", CITY, "t1", 12, assign_to=STREET),
        upd("ack", STREET, "t1", 100),
        upd("suspend", STREET, "p1", 20, reason="waiting", until=m(2400)),
        upd("resume", STREET, "p1", 400),
        upd("ack", STREET, "p1", 401),
    ]
    for cmd in sorted(inputs, key=lambda c: c.at):
        live.input(cmd)
    live.tick(END)
    return live


@pytest.fixture(scope="module")
def live(world: World) -> Live:
    return story(world)


@pytest.fixture(scope="module")
def tighter(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The module's policy tightened: acknowledgements (and normal triage) in 20 minutes."""
    text = POLICY.replace('ack = "PT1H"', 'ack = "PT20M"').replace("PT30M", "PT20M")
    return world_with(text, tmp_path_factory.mktemp("tighter"))


def test_the_story_went_as_told(live: Live) -> None:
    s = live.states
    assert s[cid(1)].state == "closed" and s[cid(1)].complainants == 2
    assert s[cid(3)].outcome == "unrated" and s[cid(3)].reopened == 1
    assert s[cid(6)].state != "closed"  # the bounced report's own case
    assert s[cid(5)].outcome == "satisfied" and s[cid(5)].unit == OTHER_STREET
    assert s["s1"].outcome == "verified"
    assert {"merged", "returned", "assigned", "suspended", "resumed", "reopened", "warned",
            "escalated", "closed", "triaged"} <= {e.type for h in live.events.values() for e in h}
    top = [e for e in live.events[cid(4)] if e.type == "escalated"]
    assert [level_of(e.supervisor, e.top, live.world.topology) for e in top] == [
        "district", "city", "top"]
    assert live.outcomes["Duplicate"] >= 2 and live.outcomes["Rejected"] == 1
    assert live.outcomes["Bounce"] == 1


def test_replay_with_the_recorded_firings_is_exact(live: Live) -> None:
    log = sorted(live.log, key=lambda c: c.at)  # what the tool does: by time, then offset
    assert log == live.log
    r = replay(log, live.world, recorded_firings=True, until=END)
    assert r.events == live.events
    assert r.states == live.states
    assert diverged(live.messages, r.events) == {}  # as zhida.case.events carries them
    assert r.directive_events == live.directive_events and r.directives == live.directives
    assert r.skipped == Counter({"group_open": 6, "group_forget": 3, "group_reopened": 1})
    # the live run's forward after the bounce: opened at once here, a duplicate when read
    assert r.duplicates == live.outcomes["Duplicate"] + 1
    assert r.ignored == live.outcomes["Ignored"] == 1  # the directive's stale firing
    assert r.bounced == 1 and r.rejected == Counter({"unauthorized": 1})
    assert r.fired == 0 and r.after_until == 0


def test_a_candidate_equal_to_the_live_policy_fires_as_a_prompt_ticker(world: World) -> None:
    """The simulated clock is the ticker without lag: same policy, same events."""
    live = story(world, lag=timedelta(0))
    r = replay(live.log, world, recorded_firings=False, until=END)
    assert r.events == live.events
    assert r.directive_events == live.directive_events and r.directives == live.directives
    expires = sum(c.body.kind == "expire" for c in live.log)
    tasks = sum(c.body.kind == "directive_expire" for c in live.log)
    assert r.skipped["expire"] == expires and r.skipped["directive_expire"] == tasks
    assert r.fired == expires + tasks - 1  # the recorded stale firing is not the clock's


def test_figures_per_unit_are_the_writers(live: Live) -> None:
    r = replay(live.log, live.world, recorded_firings=True, until=END)
    units = [CITY, DISTRICT, STREET, OTHER_STREET, "500104", OTHER_DISTRICT_STREET]
    got = unit_figures(r.events, live.world, DAY1, DAY3, END, units)
    topo = live.world.topology
    for u in units:
        want = stats(u, DAY1, DAY3, live.days, live.now, topo)
        assert {k: got[u][k] for k in figures({})} == {k: want[k] for k in figures({})}, u
    # the live column from the published messages: the same; and from the replay's own
    # tally, with or without the history kept
    assert unit_figures(live.messages, live.world, DAY1, DAY3, END, units) == got
    assert figures_of(r.counts, live.world, DAY1, DAY3, units) == got
    lean = replay(live.log, live.world, recorded_firings=True, until=END, keep_events=False)
    assert lean.events == {} and lean.states == r.states and lean.counts == r.counts
    city = got[CITY]
    events = [e for h in live.events.values() for e in h]
    assert city["reminders"] == sum(e.type == "warned" for e in events)
    assert city["escalations"] == sum(e.type == "escalated" for e in events)
    assert sum(city["escalations_by_level"].values()) == city["escalations"]
    assert city["escalations_by_level"]["top"] == 4  # k4, t1, p1, k6 reached the centre
    assert city["closed_unrated"] == 1 and city["reopened"] == 1
    assert got[OTHER_DISTRICT_STREET]["escalations_by_level"] == {
        "district": 1, "city": 0, "top": 0}  # only its own breach is credited to it
    assert got["500104"]["escalations_by_level"] == {"district": 1, "city": 1, "top": 0}


def test_figures_at_until_count_what_had_happened_then(live: Live) -> None:
    early = unit_figures(live.events, live.world, DAY1, DAY3, m(30), [CITY])[CITY]
    assert early["resolved"] == 0 and early["escalations"] == 0
    assert early["backlog"] == 7  # k1, k3, k4, k5, s1, t1, p1
    assert early["created"] == 7


def test_skipped_kinds_are_counted(world: World) -> None:
    live = story(world)
    late = upd("ack", STREET, "p1", 31 * 60)
    r = replay([*live.log, late], world, recorded_firings=False, until=END)
    expires = sum(c.body.kind == "expire" for c in live.log)
    tasks = sum(c.body.kind == "directive_expire" for c in live.log)
    assert r.skipped == Counter({"group_open": 6, "group_forget": 3, "group_reopened": 1,
                                 "expire": expires,
                                 "directive_expire": tasks})
    assert r.after_until == 1


# ---- a policy version change inside the period ----


def test_cases_opened_under_an_older_policy_replay_under_it(world: World,
                                                            tmp_path: Path) -> None:
    newer = world_with(POLICY.replace('ack = "PT1H"', 'ack = "PT45M"'), tmp_path)
    newer.policies[world.policy.digest] = world.policy
    live = Live(world)
    live.input(open_cmd("old", at=m(0)))
    live.world = newer  # the operator deploys a new file; "old" keeps its version
    live.input(open_cmd("new", at=m(10)))
    live.input(upd("ack", STREET, "old", 50))
    live.tick(END)
    digests = {c: h[0].policy for c, h in live.events.items()}
    assert digests == {"old": world.policy.digest, "new": newer.policy.digest}
    exact = replay(live.log, newer, recorded_firings=True, until=END, opened_under=digests)
    assert exact.events == live.events
    wrong = replay(live.log, newer, recorded_firings=True, until=END)
    assert "old" in diverged(live.events, wrong.events)
    with pytest.raises(KeyError, match="deadbeef"):  # a version the world was not given
        replay(live.log, newer, recorded_firings=True, until=END, opened_under={"old": "deadbeef"})


# ---- what-if: a hand count ----

WHATIF = """
[policy]
warn_fraction = 0.5
clock = "24x7"
[stages.normal]
ack = "{ack}"
resolve = "P5D"
feedback = "P3D"
supervise = "PT3H"
"""
UNTIL = m(7 * 60 + 30)


@pytest.mark.parametrize(("ack", "reminders", "levels", "on_time"), [
    ("PT1H", 2, {"district": 1, "city": 1, "top": 1}, 1.0),  # the live policy
    ("PT30M", 3, {"district": 2, "city": 1, "top": 1}, 0.5),  # tighter
    ("PT2H", 1, {"district": 1, "city": 1, "top": 0}, 1.0),  # looser
])
def test_a_candidate_moves_reminders_and_escalations_as_a_hand_count_says(
        tmp_path: Path, ack: str, reminders: int, levels: dict[str, int],
        on_time: float) -> None:
    """A acked at 40 min, B at 20 min, C never; the clock stops at 7 h 30.

    live (ack 1 h, reminder at 30 min): A and C reminded; C breaches at 1 h (the district
    supervises), 4 h (the city), 7 h (top). Tighter (30 min, reminder 15 min): all three
    reminded, A breaches at 30 min too (acked late), C at 30 min, 3 h 30, 6 h 30. Looser
    (2 h, reminder 1 h): only C reminded, breaches at 2 h and 5 h; 8 h is after the end."""
    for d in ("live", "candidate"):
        (tmp_path / d).mkdir()
    base = world_with(WHATIF.format(ack="PT1H"), tmp_path / "live")
    candidate = world_with(WHATIF.format(ack=ack), tmp_path / "candidate")
    live = Live(base)
    for case in ("A", "B", "C"):
        live.input(open_cmd(case, unit=STREET, at=T0))
    live.input(upd("ack", STREET, "B", 20))
    live.input(upd("ack", STREET, "A", 40))
    live.tick(UNTIL)
    r = replay(live.log, candidate, recorded_firings=False, until=UNTIL)
    assert {h[0].policy for h in r.events.values()} == {candidate.policy.digest}
    got = unit_figures(r.events, base, DAY1, DAY3, UNTIL, [CITY, DISTRICT, STREET])
    assert figures_of(r.counts, base, DAY1, DAY3, [CITY, DISTRICT, STREET]) == got
    city, street = got[CITY], got[STREET]
    assert city["reminders"] == reminders == street["reminders"]
    assert city["escalations_by_level"] == levels
    assert city["escalations"] == sum(levels.values())
    assert street["escalations"] == levels["district"]  # the street's own breaches
    assert street["on_time_ack_rate"] == on_time and street["responded"] == 2
    assert city["overdue"] == 1 and city["backlog"] == 3  # C, late at the end in every run
    exact = replay(live.log, base, recorded_firings=True, until=UNTIL)
    live_figures = unit_figures(exact.events, base, DAY1, DAY3, UNTIL, [CITY])[CITY]
    assert live_figures["reminders"] == 2 and live_figures["escalations"] == 3


# ---- directives ----

STREETS = (STREET, OTHER_STREET, "500103004", "500103005")


def directive_ack(target: str, minutes: float) -> Command:
    return Command(aggregate="D2", at=m(minutes), body=DirectiveUpdate(
        target=target, update=UnitUpdate(update_id=f"a-{target}", actor=target, action="ack",
                                         directive_id="D2", at=m(minutes))))


def directive_run(world: World) -> Live:
    """The district directs four streets (ack within the policy's ack stage): one acks at
    12 min, one at 40, one at 90 and one never; the clock stops at 7 h 30."""
    d = Directive.model_validate({
        "directive_id": "D2", "issuer": DISTRICT, "title": "防汛检查", "body": "立即排查",
        "targets": {"units": list(STREETS)}, "ack_within": "PT1H", "issued_at": T0.isoformat()})
    live = Live(world)
    live.input(Command(aggregate="D2", at=T0, body=IssueDirective(directive=d)))
    for target, minutes in zip(STREETS, (12, 40, 90), strict=False):
        live.input(directive_ack(target, minutes))
    live.input(directive_ack(STREET, 100))  # a client's retry: a duplicate
    live.tick(UNTIL)
    return live


def ladder(events: list[dv.DirectiveEvent]) -> list[tuple[int, str | None, str | None]]:
    """The escalations: (whole minutes after T0, the target, the supervisor)."""
    return [((e.at - T0) // timedelta(minutes=1), e.target, e.supervisor) for e in events
            if e.type == "escalated"]


def test_a_directive_replays_exactly_and_a_candidate_moves_its_ladder(tmp_path: Path) -> None:
    """Live (the directive's ack within 1 h, reminder at half of it, supervision 3 h): the
    streets acking at 40 and 90 and the silent one are reminded at 30; the one acking at 90
    is supervised by the district at 60; the silent one at 60 (the district), 240 (the city)
    and 420 (top). Stopped at 5 h: 3 reminders, 3 escalations. A candidate reminding at a
    tenth (6 min) and supervising in 1 h: all four reminded; the silent one supervised at
    60, 120 (the city) and 180 (top), the one acking at 90 at 60: 4 reminders, 4 escalations."""
    for d in ("live", "candidate"):
        (tmp_path / d).mkdir()
    base = world_with(WHATIF.format(ack="PT1H"), tmp_path / "live")
    candidate = world_with(WHATIF.format(ack="PT1H").replace("0.5", "0.1").replace(
        'supervise = "PT3H"', 'supervise = "PT1H"'), tmp_path / "candidate")
    live = directive_run(base)
    events = [e for h in live.directive_events.values() for e in h]
    assert sum(e.type == "warned" for e in events) == 3
    assert ladder(events) == [(60, "500103004", DISTRICT), (60, "500103005", DISTRICT),
                              (240, "500103005", CITY), (420, "500103005", None)]
    exact = replay(live.log, base, recorded_firings=True, until=UNTIL)
    assert exact.directive_events == live.directive_events
    assert exact.directives == live.directives and exact.duplicates == 1
    assert exact.skipped == Counter() and exact.directive_reminders == Counter({"D2": 3})
    five = m(300)
    units = [CITY, DISTRICT, STREET]
    cut = replay(live.log, base, recorded_firings=True, until=five)
    assert cut.after_until == 1  # the firing at 420 (top): after the cut, not replayed
    got = directive_figures(cut.directives, base, units, cut.directive_reminders)
    assert got[CITY] == got[DISTRICT] == {
        "issued": 1, "tasks": 4, "acknowledged": 3, "ack_ratio": 0.75, "fully_acknowledged": 0,
        "time_to_full_ack_seconds": None, "escalated": 3, "reminders": 3}
    assert got[STREET]["issued"] == 0 and got[STREET]["ack_ratio"] is None
    r = replay(live.log, candidate, recorded_firings=False, until=five)
    assert r.skipped == Counter({"directive_expire": 7}) and r.fired == 8
    cand = directive_figures(r.directives, base, units, r.directive_reminders)[CITY]
    assert (cand["reminders"], cand["escalated"], cand["ack_ratio"]) == (4, 4, 0.75)
    assert ladder(r.directive_events["D2"]) == [
        (60, "500103004", DISTRICT), (60, "500103005", DISTRICT), (120, "500103005", CITY),
        (180, "500103005", None)]
    lean = replay(live.log, candidate, recorded_firings=False, until=five, keep_events=False)
    assert lean.directive_events == {} and lean.directives == r.directives


def test_a_candidate_that_keeps_a_case_open_takes_the_join_the_live_run_bounced(
        world: World, tmp_path: Path) -> None:
    """Live: k1 closes unrated at its feedback due and a later report bounces to its own
    case. A longer feedback window keeps k1 open: the report joins it, and the live run's
    forwarded OpenCase for the report's own case is not replayed (no case twice)."""
    live = Live(world)
    live.input(live.routed(complaint(1), m(0)))
    live.input(upd("ack", STREET, cid(1), 10))
    live.input(upd("resolve", STREET, cid(1), 20))  # feedback due at 140
    live.input(Command(aggregate=cid(1), at=m(150), body=JoinCase(open=complaint(7),
                                                                own_case_id=cid(7))))
    live.tick(END)
    assert cid(7) in live.states and live.states[cid(1)].outcome == "unrated"
    longer = world_with(POLICY.replace('feedback = "PT2H"', 'feedback = "PT5H"'), tmp_path)
    r = replay(live.log, longer, recorded_firings=False, until=END)
    assert cid(7) not in r.states and r.states[cid(1)].complainants == 2
    assert r.skipped["open_joined"] == 1 and r.bounced == 0


def test_a_report_joined_once_and_bounced_once_keeps_its_own_case(world: World) -> None:
    """The report joined b, then a copy in flight reached closed a and opened its own case:
    the candidate's own bounce opens it too (the live forward is not taken for a join)."""
    live = Live(world, lag=timedelta(0))
    live.input(open_cmd("a", at=m(0)))
    live.input(open_cmd("b", unit=OTHER_STREET, at=m(1)))
    for cmd in (upd("ack", STREET, "a", 5), upd("resolve", STREET, "a", 6),
                rate_cmd("satisfied", "a", at=m(7))):
        live.input(cmd)
    for case in ("b", "a"):
        live.input(Command(aggregate=case, at=m(8), body=JoinCase(open=complaint(20),
                                                                own_case_id=cid(20))))
    live.tick(END)
    assert cid(20) in live.states and live.states["b"].complainants == 2
    r = replay(live.log, world, recorded_firings=False, until=END)
    assert r.events == live.events and r.skipped["open_joined"] == 0


# ---- the order of the log ----


def test_in_log_order_keeps_each_partition_in_offset_order() -> None:
    a = [open_cmd("a", at=m(0)), upd("ack", STREET, "a", 5), upd("resolve", STREET, "a", 3)]
    b = [open_cmd("b", at=m(1)), upd("ack", STREET, "b", 4)]
    merged = list(in_log_order({1: b, 0: a}))
    assert [c for c in merged if c.aggregate == "a"] == a  # 5 before 3, as the writer read it
    assert [c for c in merged if c.aggregate == "b"] == b
    assert [c.at for c in merged][:3] == [m(0), m(1), m(4)]


def test_after_a_downtime_the_log_order_is_not_the_time_order(world: World) -> None:
    """The worker was down from 50 to 80 min: on its return the ticker fires the 60 min due
    (stamped 80), then the writer reads the ack taken at 55 (stamped with its record's time).
    The writer's order is the log's: replaying in ``at`` order would ack first and lose the
    escalation; ``in_log_order`` keeps it."""
    live = Live(world)
    live.input(open_cmd("d", at=m(0)))
    live.tick(m(50))
    live.write(Command(aggregate="d", at=m(80), body=Expire(timer="due", stage="ack",
                                                          instant=m(60))))
    live.write(upd("ack", STREET, "d", 55))
    assert [e.type for e in live.events["d"]][-2:] == ["escalated", "acknowledged"]
    exact = replay(in_log_order({0: live.log}), world, recorded_firings=True, until=END)
    assert exact.events == live.events
    by_time = replay(sorted(live.log, key=lambda c: c.at), world, recorded_firings=True,
                     until=END)
    assert diverged(live.events, by_time.events) == {"d": 4} and by_time.ignored == 1


# ---- random scenarios ----

PLACES = (STREET, OTHER_STREET, OTHER_DISTRICT_STREET)
ACTIONS = ("@next",) * 8 + ("return", "assign", "suspend", "resume", "verify", "progress",
                            "assist")
NEXT = {"triage": "ack", "dispatched": "ack", "acknowledged": "resolve",
        "suspended": "resume", "resolved": "verify"}  # a complaint's resolved: its rating
KINDS = ("update",) * 6 + ("report",) * 2 + ("rate", "join", "again")
RATINGS = ("satisfied", "basically_satisfied", "unsatisfied")
# (kind, which, action, actor, rating, place, minutes that pass first)
step = st.tuples(st.sampled_from(KINDS), st.integers(0, 99), st.sampled_from(ACTIONS),
                 st.sampled_from(["@holder"] * 4 + ["@parent", CITY]),
                 st.sampled_from(RATINGS), st.integers(0, 5), st.integers(0, 40))


def drive(world: World, steps: list[tuple], lag: timedelta) -> Live:
    """Reports (some about one problem, some sent again), joins in flight and unit actions
    taken in time order; redelivered inputs keep their first time, as intake stamps them."""
    live = Live(world, lag)
    clock = T0
    inputs: list[Command] = []
    for n, (kind, *rest, minutes) in enumerate(steps):
        clock += timedelta(minutes=minutes)
        cmd = _input(live, clock, n, kind, *rest, inputs=inputs)
        if cmd is not None:
            inputs.append(cmd)
            live.input(cmd)
    live.tick(clock + timedelta(days=2))
    return live


def _input(live: Live, clock: datetime, n: int, kind: str, i: int, action: str, actor: str,
           rating: str, place: int, *, inputs: list[Command]) -> Command | None:
    if kind == "report":  # ten reports, each always about the same place and category
        k = i % 10
        report = complaint(k, PLACES[k % 3], "road_damage" if k < 6 else "street_lighting")
        return live.routed(report, clock)
    if kind == "again":
        return inputs[i % len(inputs)] if inputs else None
    cases = sorted(live.states)
    if not cases:
        return None
    case = cases[i % len(cases)]
    s = live.states[case]
    if kind == "join":
        k = 20 + place
        return Command(aggregate=case, at=clock, body=JoinCase(
            open=complaint(k, s.unit, s.category), own_case_id=cid(k)))
    if kind == "rate":
        return rate_cmd(rating, case, at=clock, feedback_id=f"f{n - place % 2}")
    if action == "@next":
        action = NEXT.get(s.state, "ack")
        if action == "verify" and s.source == "complaint":
            return rate_cmd(rating, case, at=clock, feedback_id=f"f{n}")
        actor = "@parent" if action == "verify" else "@holder"
    who = {"@holder": s.unit, "@parent": live.world.topology.parent(s.unit) or s.unit}
    fields = {"assign": {"assign_to": OTHER_STREET}, "assist": {"assist_units": [STREET]},
              "suspend": {"reason": "r", "until": clock + timedelta(hours=2)}}
    return update_cmd(action, who.get(actor, actor), case, at=clock, update_id=f"u{n}",
                      **fields.get(action, {}))


# a rejected command after the cut, then an older input delivered again that applies
REDELIVERED_AFTER_THE_CUT = [
    ("report", 0, "@next", "@holder", "satisfied", 0, 56),
    ("update", 0, "progress", "@holder", "satisfied", 0, 15),  # rejected: not acked yet
    ("update", 0, "@next", "@holder", "satisfied", 0, 50),  # acked at 121
    ("update", 0, "return", "@parent", "satisfied", 0, 1),  # rejected at 122
    ("again", 1, "@next", "@holder", "satisfied", 0, 0),  # the progress again: applies
    ("update", 0, "@next", "@holder", "satisfied", 0, 0)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=10, max_size=60), lag=st.sampled_from([0, 1, 90]),
       cut=st.integers(0, 48 * 60))
@example(steps=REDELIVERED_AFTER_THE_CUT, lag=0, cut=121)
def test_any_recorded_run_replays_exactly(world: World, tighter: World, steps: list[tuple],
                                          lag: int, cut: int) -> None:
    live = drive(world, steps, timedelta(seconds=lag))
    until = T0 + timedelta(days=30)
    r = replay(live.log, world, recorded_firings=True, until=until)
    assert r.events == live.events
    assert diverged(live.messages, r.events) == {}
    # the clock stopped earlier: each case as it stood then, as recount cuts the live one
    early = T0 + timedelta(minutes=cut)
    e = replay(live.log, world, recorded_firings=True, until=early)
    assert diverged(live.messages, e.events, early) == {}
    assert all(h[-1].at <= early for h in e.events.values())
    assert figures_of(e.counts, world, DAY1, DAY3, [CITY]) == unit_figures(
        live.messages, world, DAY1, DAY3, early, [CITY])
    # a candidate: every case under it, histories without gaps, its tally its events'
    c = replay(live.log, tighter, recorded_firings=False, until=until)
    assert {h[0].policy for h in c.events.values()} <= {tighter.policy.digest}
    assert all([e.seq for e in h] == list(range(1, len(h) + 1)) for h in c.events.values())
    assert figures_of(c.counts, world, DAY1, DAY3, [CITY]) == unit_figures(
        c.events, world, DAY1, DAY3, until, [CITY])
    if lag == 0:  # the simulated clock is a prompt ticker
        c = replay(live.log, world, recorded_firings=False, until=until)
        assert c.events == live.events
    units = [CITY, DISTRICT, "500104"]
    got = unit_figures(r.events, world, DAY1, DAY1 + timedelta(days=40), until, units)
    for u in units:
        want = stats(u, DAY1, DAY1 + timedelta(days=40), live.days, live.now, world.topology)
        assert {k: got[u][k] for k in figures({})} == {k: want[k] for k in figures({})}, u
    assert figures_of(r.counts, world, DAY1, DAY1 + timedelta(days=40), units) == got


def test_level_of_names_where_the_supervision_went(world: World) -> None:
    topo = world.topology
    assert level_of(DISTRICT, False, topo) == "district"
    assert level_of("500103-CG", False, topo) == "district"  # a district's department
    assert level_of(CITY, False, topo) == "city"
    assert level_of("500000-JT", False, topo) == "city"  # a city department
    assert level_of(None, True, topo) == "top"



def test_a_ruling_and_the_case_its_precedent_routed_replay_exactly(world: World) -> None:
    """Issue 26: the precedent is the live group's decision, recorded on the forwarded
    ``OpenCase``; replay decides the dispute, the ruling and the routed case again, exactly,
    and a candidate policy keeps the precedent's routing."""
    live = Live(world, lag=timedelta(0))
    live.input(live.routed(complaint(1), m(1)))
    live.input(upd("return", STREET, cid(1), 2, reason="不归我们"))
    live.input(upd("assign", DISTRICT, cid(1), 3, assign_to=OTHER_STREET))
    live.input(upd("return", OTHER_STREET, cid(1), 4, reason="也不归我们"))
    live.input(upd("assign", DISTRICT, cid(1), 5, assign_to=OTHER_STREET))  # the ruling
    live.input(live.routed(complaint(2), m(200)))  # after the merge window: its own case
    (routed,) = [e for e in live.events[cid(2)] if e.type == "dispatched"]
    assert routed.unit == OTHER_STREET and routed.precedent is not None
    assert [e.dispute is not None for e in live.events[cid(1)] if e.type == "returned"] == [
        False, True]
    r = replay(live.log, world, recorded_firings=True, until=END)
    assert r.events == live.events and diverged(live.messages, r.events) == {}
    candidate = replay(live.log, world, recorded_firings=False, until=END)
    assert [e.unit for e in candidate.events[cid(2)] if e.type == "dispatched"] == [OTHER_STREET]
