"""一事多诉 and alarm grouping: the group's decision, the join on the case, the rating rule."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core import Accepted, Duplicate, World, apply, decide, file_after, merge, react
from engine.core.decide import Bounce
from engine.core.ids import case_id_for
from engine.core.model import (
    CaseFile,
    CaseState,
    Command,
    Complainant,
    GroupForget,
    GroupOpen,
    JoinCase,
    OpenCase,
)
from tests.support.helpers import STREET, T0, rate_cmd, update_cmd

WINDOW = timedelta(hours=2)
# the policy of the `world` fixture (tests/support/fixtures.py) in this module
POLICY = """
[policy]
merge_window = "PT2H"
merge_radius_m = 100
"""


def complaint(n: int, *, location: dict | None = None, category: str = "road_damage",
              at=T0) -> OpenCase:
    return OpenCase(source="complaint", key=f"k{n}", category=category, priority="normal",
                    location=location or {"unit": STREET}, summary="路面塌陷", reported_at=at,
                    complainant=Complainant(complaint_id=f"k{n}", channel="hotline"))


def alarm(n: int, severity: str = "warning", sensor: str = "s1") -> OpenCase:
    return OpenCase(source="sensed", key=f"e{n}", category="waterlogging", priority="normal",
                    location={"unit": STREET}, summary="积水", reported_at=T0,
                    sensor_id=sensor, severity=severity)


def to_group(world: World, report: OpenCase, at=T0) -> Command:
    key = merge.group_of(world, report)
    assert key is not None
    own = case_id_for(report.source, report.key)
    return Command(aggregate=key, at=at, body=GroupOpen(open=report, case_id=own))


class City:
    """Groups and cases driven through the core as the writer would, command by command."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.groups: dict[str, merge.GroupState] = {}
        self.cases: dict[str, CaseState] = {}
        self.files: dict[str, CaseFile] = {}
        self.outputs: list = []
        self.bounced = 0

    def report(self, report: OpenCase, at=T0) -> str:
        """Returns the case the report ended on."""
        cmd = to_group(self.world, report, at)
        routed = merge.route(self.groups.get(cmd.aggregate), cmd, WINDOW, 100.0)
        assert routed is not None
        self.groups[cmd.aggregate] = routed.group
        fwd = routed.forward
        assert fwd is not None  # an open always carries the report on
        if isinstance(fwd.body, OpenCase):
            fwd = fwd.model_copy(update={"body": fwd.body.model_copy(
                update={"group": cmd.aggregate})})
        return self.case(fwd)

    def case(self, cmd: Command) -> str:
        state = self.cases.get(cmd.aggregate)
        d = decide(state, cmd, self.world)
        if isinstance(d, Bounce):
            self.bounced += 1
            return self.case(d.command)
        if isinstance(d, Accepted):
            new = apply(state, cmd, d.events)
            self.files[cmd.aggregate] = file_after(self.files.get(cmd.aggregate), d.events, cmd)
            self.cases[cmd.aggregate] = new
            self.outputs += react(new, self.files[cmd.aggregate], d.events,
                                  self.world.topology)
            if new.state == "closed" and new.group:
                forgot = merge.route(
                    self.groups[new.group], Command(aggregate=new.group, at=cmd.at,
                                                    body=GroupForget(case_id=cmd.aggregate)),
                    WINDOW, 100.0)
                if forgot is not None:  # None: the group had dropped it (the window) already
                    self.groups[new.group] = forgot.group
        return cmd.aggregate

    def notices(self, kind: str) -> set[str]:
        return {o.value.complaint_id for o in self.outputs
                if o.channel == "notifications" and o.value.kind == kind}


def test_three_complaints_about_one_problem_make_one_case(world: World) -> None:
    c = City(world)
    ids = {c.report(complaint(i)) for i in range(3)}
    assert len(ids) == 1
    (cid,) = ids
    s = c.cases[cid]
    assert s.complainants == 3 and len(c.files[cid].complainants) == 3
    orders = [o for o in c.outputs if o.channel == "dispatch"]
    assert len(orders) == 1  # one case, one order
    merged = [o.value for o in c.outputs if o.channel == "case_events"
              and o.value.type == "merged"]
    assert [m.complainants for m in merged] == [2, 3]
    assert c.notices("received") == {"k0", "k1", "k2"}  # each told it was taken
    c.case(update_cmd("ack", STREET, cid))
    c.case(update_cmd("resolve", STREET, cid))
    assert c.notices("resolved") == {"k0", "k1", "k2"}  # all asked to rate
    resolved = [o.value for o in c.outputs if o.channel == "notifications"
                and o.value.kind == "resolved"]
    assert all(n.ask_rating for n in resolved)


def test_other_category_place_or_window_opens_its_own_case(world: World) -> None:
    c = City(world)
    a = c.report(complaint(1))
    assert c.report(complaint(2, category="street_lighting")) != a
    assert c.report(complaint(3, location={"unit": "500103003"})) != a
    assert c.report(complaint(5), at=T0 + WINDOW - timedelta(seconds=1)) == a
    assert c.report(complaint(4), at=T0 + WINDOW + timedelta(seconds=1)) != a


def test_points_merge_within_the_radius_only(world: World) -> None:
    c = City(world)
    here = {"lat": 29.5750, "lon": 106.5310}  # 观音桥, 江北区
    near = {"lat": 29.5750 + 0.0005, "lon": 106.5310}  # ~55 m north
    far = {"lat": 29.5750 + 0.003, "lon": 106.5310}  # ~330 m north, same district
    a = c.report(complaint(1, location=here))
    assert c.report(complaint(2, location=near)) == a
    assert c.report(complaint(3, location=far)) != a


def test_a_closed_case_is_forgotten_and_a_join_in_flight_bounces(world: World) -> None:
    c = City(world)
    a = c.report(complaint(1))
    for cmd in (update_cmd("ack", STREET, a), update_cmd("resolve", STREET, a),
                rate_cmd("satisfied", a)):
        c.case(cmd)
    assert c.cases[a].state == "closed"
    assert c.report(complaint(2)) != a  # the group forgot it: a new case
    # a join that was already on its way when the case closed: its own case, not lost
    late = Command(aggregate=a, at=T0, body=JoinCase(open=complaint(9), own_case_id="own9"))
    assert isinstance(decide(c.cases[a], late, world), Bounce)
    assert c.case(late) == "own9" and c.cases["own9"].state == "dispatched"


def test_a_repeated_report_is_a_duplicate_not_a_second_complainant(world: World) -> None:
    c = City(world)
    a = c.report(complaint(1))
    c.report(complaint(2))
    join = Command(aggregate=a, at=T0, body=JoinCase(open=complaint(2), own_case_id="x"))
    assert isinstance(decide(c.cases[a], join, world), Duplicate)
    assert c.report(complaint(1)) == a  # the opener again: its own case, a duplicate there
    assert c.cases[a].complainants == 2


def test_alarms_group_by_street_and_critical_raises_to_urgent(world: World) -> None:
    c = City(world)
    a = c.report(alarm(1, sensor="s1"))
    assert c.report(alarm(2, sensor="s1")) == a  # the same sensor again
    assert c.report(alarm(3, sensor="s2")) == a  # another sensor, same street and kind
    due = c.cases[a].due
    assert c.cases[a].alarms == 3 and c.cases[a].priority == "normal"
    c.report(alarm(4, severity="critical", sensor="s3"))
    s = c.cases[a]
    assert s.priority == "urgent" and s.alarms == 4 and s.due <= due
    assert len([o for o in c.outputs if o.channel == "dispatch"]) == 1


def test_worst_rating_counts(world: World) -> None:
    c = City(world)
    a = c.report(complaint(1))
    c.report(complaint(2))
    c.case(update_cmd("ack", STREET, a))
    c.case(update_cmd("resolve", STREET, a))
    c.case(rate_cmd("satisfied", a))
    assert c.cases[a].state == "resolved"  # the other complainant may still rate
    c.case(rate_cmd("basically_satisfied", a))
    assert c.cases[a].state == "closed" and c.cases[a].outcome == "basically_satisfied"
    b = c.report(complaint(3, category="street_lighting"))
    c.report(complaint(4, category="street_lighting"))
    c.case(update_cmd("ack", STREET, b))
    c.case(update_cmd("resolve", STREET, b))
    c.case(rate_cmd("unsatisfied", b))  # the worst: reopened at once
    assert c.cases[b].state == "dispatched" and c.cases[b].reopened == 1


@given(st.lists(st.sampled_from(["satisfied", "basically_satisfied", "unsatisfied"]),
                min_size=1, max_size=6), st.integers(1, 6))
def test_rating_outcome_properties(ratings: list[str], complainants: int) -> None:
    r = tuple(ratings)
    out = merge.rating_outcome(r, complainants)
    if "unsatisfied" in r:
        assert out == "unsatisfied"
    elif len(r) >= complainants:
        assert out == merge.worst(r) and out in r
        assert all(merge.RATING_ORDER.index(out) <= merge.RATING_ORDER.index(x) for x in r)
    else:
        assert out is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 200)), min_size=1, max_size=25))
def test_every_report_ends_on_exactly_one_open_case(world: World,
                                                    reports: list[tuple[int, int]]) -> None:
    """Any order of reports about two places and two categories: each lands on one case of
    its own (category, place), complainants add up, one order per case."""
    c = City(world)
    places = (STREET, "500103003")
    cats = ("road_damage", "street_lighting")
    landed: dict[str, int] = {}
    for n, (kind, minute) in enumerate(sorted(reports, key=lambda r: r[1])):
        report = complaint(n, location={"unit": places[kind % 2]}, category=cats[kind // 2])
        cid = c.report(report, at=T0 + timedelta(minutes=minute))
        s = c.cases[cid]
        assert s.category == report.category
        landed[cid] = landed.get(cid, 0) + 1
    assert sum(s.complainants for s in c.cases.values()) == len(reports)
    assert all(c.cases[cid].complainants == n for cid, n in landed.items())
    orders = [o for o in c.outputs if o.channel == "dispatch"]
    assert len(orders) == len(c.cases)


def test_a_report_sent_again_goes_where_it_went_first(world: World) -> None:
    """The intake is at-least-once: a complaint read again after a kill reaches its group a
    second time, after the group has learnt newer cases. It lands where it went the first
    time (found by the city day under kill -9: one complaint received on two cases)."""
    c = City(world)
    a = c.report(complaint(1))
    assert c.report(complaint(2)) == a
    # a case opened later in the group (another place's report cannot join: same group)
    later = c.report(complaint(3, location={"unit": STREET}), at=T0 + WINDOW + timedelta(seconds=1))
    assert later != a
    assert c.report(complaint(2), at=T0 + WINDOW + timedelta(seconds=2)) == a
    assert c.cases[a].complainants == 2 and c.cases[later].complainants == 1


def test_a_repeated_join_to_a_case_closed_since_is_a_duplicate(world: World) -> None:
    c = City(world)
    a = c.report(complaint(1))
    assert c.report(complaint(2)) == a
    for cmd in (update_cmd("ack", STREET, a), update_cmd("resolve", STREET, a),
                rate_cmd("satisfied", a), rate_cmd("satisfied", a)):
        c.case(cmd)
    assert c.cases[a].state == "closed"
    again = Command(aggregate=a, at=T0, body=JoinCase(
        open=complaint(2), own_case_id=case_id_for("complaint", "k2")))
    assert isinstance(decide(c.cases[a], again, world), Duplicate)  # not a bounce
    assert c.report(complaint(2)) == a  # and from the group: the same case
    assert c.bounced == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 300), st.booleans()),
                min_size=1, max_size=30))
def test_a_report_sent_any_number_of_times_has_one_case(world: World,
                                                     reports: list[tuple[int, int, bool]]
                                                     ) -> None:
    """Reports of one group, some sent again later (at-least-once intake), some cases
    closing in between: every report's copies end on one case, counted once there."""
    c = City(world)
    went: dict[int, set[str]] = {}
    for i, (n, minute, close) in enumerate(sorted(reports, key=lambda r: r[1])):
        at = T0 + timedelta(minutes=minute, seconds=i)
        cid = c.report(complaint(n), at=at)
        went.setdefault(n, set()).add(cid)
        s = c.cases[cid]
        if close and s.state == "dispatched":
            for cmd in (update_cmd("ack", STREET, cid), update_cmd("resolve", STREET, cid)):
                c.case(cmd)
            for _ in range(c.cases[cid].complainants):
                c.case(rate_cmd("satisfied", cid))
    assert all(len(cases) == 1 for cases in went.values()), went
    assert sum(s.complainants for s in c.cases.values()) == len(went)
