"""The SLA ladder: reminder, escalation level by level to the city, once each; suspension."""

from datetime import date, timedelta
from pathlib import Path

from engine.core import Accepted, Ignored, World, apply, decide, file_after, react
from engine.core.model import CaseFile, CaseState, Command, Expire
from engine.core.sla import Timer, next_timer
from engine.runtime.world import load_world
from tests.support.helpers import CITY, DISTRICT, STREET, T0, open_cmd, rate_cmd, update_cmd

# the policy of the `world` fixture (tests/support/fixtures.py) in this module
POLICY = """
[policy]
warn_fraction = 0.5
clock = "24x7"
[stages.normal]
triage = "PT10M"
ack = "PT1H"
resolve = "PT4H"
feedback = "PT2H"
supervise = "PT30M"
[stages.urgent]
triage = "PT5M"
ack = "PT30M"
resolve = "PT2H"
feedback = "PT1H"
supervise = "PT15M"
"""


class Case:
    """One case driven through the core, keeping its file and every output."""

    def __init__(self, world: World, cmd: Command) -> None:
        self.world = world
        self.state: CaseState | None = None
        self.file: CaseFile | None = None
        self.outputs: list = []
        self.events: list = []
        assert isinstance(self.send(cmd), Accepted)

    def send(self, cmd: Command):
        d = decide(self.state, cmd, self.world)
        if isinstance(d, Accepted):
            self.state = apply(self.state, cmd, d.events)
            self.file = file_after(self.file, d.events)
            self.events += d.events
            self.outputs += react(self.state, self.file, d.events, self.world.topology)
        return d

    def fire(self, timer: Timer | None = None):
        t = timer or next_timer(self.state)
        assert t is not None, "no timer armed"
        return self.send(Command(aggregate=self.state.case_id, at=t.at,
                                 body=Expire(timer=t.kind, stage=t.stage, instant=t.at)))

    def orders(self, kind: str) -> list:
        return [o.value for o in self.outputs if o.channel == "dispatch" and o.value.kind == kind]


def test_stage_deadline_and_reminder_point_come_from_the_frozen_policy(world: World) -> None:
    c = Case(world, open_cmd())
    s = c.state
    assert s.policy == world.policy.digest
    assert (s.stage, s.due, s.warn_at) == ("ack", T0 + timedelta(hours=1),
                                          T0 + timedelta(minutes=30))
    assert next_timer(s) == Timer("warn", "ack", T0 + timedelta(minutes=30))


def test_ladder_reminder_then_district_then_city_then_top_each_once(world: World) -> None:
    c = Case(world, open_cmd())
    assert [e.type for e in c.fire().events] == ["warned"]  # 催办
    [reminder] = c.orders("reminder")
    assert reminder.target == STREET and reminder.stage == "ack"
    assert reminder.due == T0 + timedelta(hours=1)

    d = c.fire()  # the ack deadline: 督办 by the district
    [e] = d.events
    assert (e.type, e.late_unit, e.supervisor, e.escalation_level) == (
        "escalated", STREET, DISTRICT, 1)
    [sup] = c.orders("supervision")
    assert (sup.target, sup.late_unit, sup.escalation_level) == (DISTRICT, STREET, 1)
    assert sup.due == T0 + timedelta(hours=1, minutes=30)
    assert c.state.unit == STREET  # supervision does not move the case

    [e] = c.fire().events  # the district's deadline passed: the city
    assert (e.late_unit, e.supervisor, e.escalation_level) == (DISTRICT, CITY, 2)
    [e] = c.fire().events  # the city's own deadline passed: recorded, nothing higher
    assert (e.type, e.late_unit, e.supervisor, e.top, e.escalation_level) == (
        "escalated", CITY, None, True, 3)
    assert len(c.orders("supervision")) == 2
    assert next_timer(c.state) is None


def test_every_firing_is_applied_once(world: World) -> None:
    c = Case(world, open_cmd())
    fired = []
    while (t := next_timer(c.state)) is not None:
        fired.append(t)
        assert isinstance(c.fire(t), Accepted)
        assert isinstance(c.fire(t), Ignored)  # the same firing again: nothing
    assert [t.kind for t in fired] == ["warn", "due", "supervise", "supervise"]
    assert [e.type for e in c.events].count("escalated") == 3


def test_completing_the_stage_ends_its_supervision(world: World) -> None:
    c = Case(world, open_cmd())
    c.fire()
    stale = next_timer(c.state)
    c.fire()  # escalated to the district
    c.send(update_cmd("ack", STREET, at=T0 + timedelta(hours=1, minutes=5)))
    s = c.state
    assert s.stage == "resolve" and s.supervisor is None and s.supervise_due is None
    assert s.escalation_level == 1  # how often supervision was raised stays counted
    assert s.due == T0 + timedelta(hours=5, minutes=5)
    assert next_timer(s).kind == "warn"
    assert isinstance(c.fire(stale), Ignored)  # the old stage's timer is gone


def test_suspended_case_does_not_escalate_and_resumes_itself(world: World) -> None:
    c = Case(world, open_cmd())
    c.send(update_cmd("ack", STREET, at=T0))
    due = c.state.due
    warn = c.state.warn_at
    start, until = T0 + timedelta(hours=1), T0 + timedelta(hours=3)
    c.send(update_cmd("suspend", STREET, reason="等待审批", until=until, at=start))
    assert next_timer(c.state) == Timer("resume", "resolve", until)
    assert isinstance(c.fire(Timer("due", "resolve", due)), Ignored)
    assert isinstance(c.fire(Timer("warn", "resolve", warn)), Ignored)
    [e] = c.fire().events  # until: resumes itself
    assert e.type == "resumed" and e.actor is None
    assert c.state.state == "acknowledged"
    assert c.state.due == due + timedelta(hours=2)  # moved by the pause
    assert c.state.warn_at == warn + timedelta(hours=2)


def test_manual_resume_moves_deadlines_by_the_pause(world: World) -> None:
    c = Case(world, open_cmd())
    c.send(update_cmd("ack", STREET, at=T0))
    due = c.state.due
    c.send(update_cmd("suspend", STREET, reason="x", until=T0 + timedelta(days=2),
                      at=T0 + timedelta(minutes=10)))
    c.send(update_cmd("resume", STREET, at=T0 + timedelta(minutes=40)))
    assert c.state.due == due + timedelta(minutes=30)


def test_feedback_window_closes_a_complaint_unrated(world: World) -> None:
    c = Case(world, open_cmd())
    c.send(update_cmd("ack", STREET))
    c.send(update_cmd("resolve", STREET))
    assert next_timer(c.state).kind == "due"  # no reminder to a citizen
    [e] = c.fire().events
    assert (e.type, e.outcome) == ("closed", "unrated")
    assert next_timer(c.state) is None
    assert isinstance(c.send(rate_cmd("satisfied", at=T0 + timedelta(days=1))), Accepted) \
        is False


def test_triage_has_its_own_deadline_and_a_late_city_is_the_top(world: World) -> None:
    c = Case(world, open_cmd(location={"address": "某处"}))
    assert (c.state.state, c.state.stage) == ("triage", "triage")
    assert c.state.due == T0 + timedelta(minutes=10)
    c.fire()  # reminder to the city
    [e] = c.fire().events
    assert e.top is True and e.late_unit == CITY and e.supervisor is None
    assert not c.orders("supervision")


def test_sensed_verification_late_escalates_above_the_verifier(world: World) -> None:
    c = Case(world, open_cmd(source="sensed", category="waterlogging", priority="urgent"))
    c.send(update_cmd("ack", STREET))
    c.send(update_cmd("resolve", STREET))
    c.fire()  # reminder goes to the verifier: the district
    assert c.orders("reminder")[-1].target == DISTRICT
    [e] = c.fire().events
    assert (e.late_unit, e.supervisor) == (DISTRICT, CITY)


def test_new_policy_file_does_not_rewrite_running_cases(world: World, tmp_path: Path) -> None:
    c = Case(world, open_cmd())
    f = tmp_path / "p2.toml"
    f.write_text(POLICY.replace('ack = "PT1H"', 'ack = "PT3H"'), encoding="utf-8")
    newer = load_world(policy=str(f), today=date(2026, 11, 23))
    assert newer.policy.digest != world.policy.digest
    newer.policies[world.policy.digest] = world.policy  # the writer loads it from the store
    c.world = newer
    c.send(update_cmd("return", STREET, reason="不属于本街道", at=T0))
    assert c.state.due == T0 + timedelta(hours=1)  # still the case's own policy
    fresh = Case(newer, open_cmd("c2"))
    assert fresh.state.due == T0 + timedelta(hours=3)
