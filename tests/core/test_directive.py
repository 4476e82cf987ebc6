"""Directives: scope, target expansion, fan-out, ack/report, the ladder per task, completion."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core import Duplicate, Ignored, Rejected, World
from engine.core import directive as dv
from engine.core.model import Command, DirectiveExpire, DirectiveUpdate, IssueDirective
from engine.runtime.store import DIRECTIVE_IDS, TASK_IDS, dump
from schemas.inbound import Directive, UnitUpdate
from tests.support.helpers import CITY, DISTRICT, OTHER_DISTRICT_STREET, STREET, T0

# the policy of the `world` fixture (tests/support/fixtures.py) in this module
POLICY = """
[policy]
warn_fraction = 0.5
clock = "24x7"
[stages.normal]
supervise = "PT30M"
"""


def issue(targets: dict[str, Any], issuer: str = CITY, did: str = "D1",
          report_by: Any = None, ack_within: str = "PT1H") -> Command:
    d = Directive.model_validate({
        "directive_id": did, "issuer": issuer, "title": "防汛检查", "body": "立即排查",
        "targets": targets, "ack_within": ack_within, "issued_at": T0.isoformat(),
        **({"report_by": report_by.isoformat()} if report_by else {})})
    return Command(aggregate=did, at=T0, body=IssueDirective(directive=d))


_n = 0


def update(action: str, actor: str, target: str | None = None, did: str = "D1",
           at: Any = None, update_id: str | None = None) -> Command:
    global _n
    _n += 1
    u = UnitUpdate(update_id=update_id or f"du{_n}", actor=actor, action=action,
                   at=at or T0, directive_id=did, note="已落实" if action == "report" else None)
    return Command(aggregate=did, at=at or T0,
                   body=DirectiveUpdate(update=u, target=target or actor))


class Run:
    """One directive driven through the core: its state, tasks, events and outputs."""

    def __init__(self, world: World, cmd: Command) -> None:
        self.world = world
        self.d: dv.DirectiveState | None = None
        self.tasks: dict[str, dv.Task] = {}
        self.events: list[dv.DirectiveEvent] = []
        self.outputs: list = []
        assert isinstance(self.send(cmd), dv.Changed)

    def send(self, cmd: Command) -> dv.Decision:
        target = dv.target_of(cmd)
        r = dv.decide(self.d, self.tasks.get(target) if target else None, cmd, self.world)
        if isinstance(r, dv.Changed):
            self.d = r.directive
            self.tasks.update({t.target: t for t in r.tasks})
            self.events += r.events
            self.outputs += dv.react(r.directive, r.events, self.world.topology, r.issue)
        return r

    def fire(self, target: str) -> dv.Decision:
        t = dv.next_timer(self.tasks[target])
        assert t is not None
        return self.send(Command(aggregate=self.d.directive_id, at=t.at, body=DirectiveExpire(
            target=target, timer=t.kind, stage=t.stage, instant=t.at)))

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def test_all_streets_one_task_each_on_its_district_topic(world: World) -> None:
    r = Run(world, issue({"level": "street"}))
    streets = world.topology.streets
    assert len(streets) == 1031 and r.d.targets == 1031
    orders = [o for o in r.outputs if o.channel == "dispatch"]
    assert len(orders) == 1031
    assert {o.key for o in orders} == set(streets)
    assert all(o.district == world.topology.district_of(o.key) for o in orders)
    assert all(o.value.kind == "directive" and o.value.directive_id == "D1"
               and o.value.issuer == CITY and o.value.summary == "防汛检查"
               and o.value.stage == "ack" for o in orders)
    seqs = [e.seq for e in r.events]
    assert seqs == list(range(1, 1033))  # issued + 1,031 delivered, gap-free
    assert r.types()[0] == "issued" and r.types().count("delivered") == 1031


def test_targets_expansion(world: World) -> None:
    topo = world.topology
    assert dv.expand_targets(issue({"level": "district"}).body.directive.targets, topo) \
        == topo.districts
    within = dv.expand_targets(
        issue({"level": "street", "within": [DISTRICT, "500104"]}).body.directive.targets, topo)
    assert within == topo.streets_of(DISTRICT) + topo.streets_of("500104")
    units = dv.expand_targets(
        issue({"units": [STREET, "500000-JT", STREET]}).body.directive.targets, topo)
    assert units == [STREET, "500000-JT"]  # departments too, repeats once


def test_unknown_targets_named(world: World) -> None:
    r = dv.decide(None, None, issue({"units": [STREET, "999999", "888"]}), world)
    assert isinstance(r, Rejected) and r.reason == "unknown_unit"
    assert "999999" in r.detail and "888" in r.detail
    r = dv.decide(None, None, issue({"level": "street", "within": [STREET]}), world)
    assert isinstance(r, Rejected) and r.reason == "unknown_unit" and STREET in r.detail


@pytest.mark.parametrize(("issuer", "targets", "ok"), [
    (CITY, {"level": "street"}, True),
    (DISTRICT, {"level": "street", "within": [DISTRICT]}, True),
    (DISTRICT, {"units": [STREET]}, True),
    (DISTRICT, {"units": [STREET, OTHER_DISTRICT_STREET]}, False),
    (DISTRICT, {"level": "street"}, False),
    (DISTRICT, {"level": "district"}, False),
    (STREET, {"units": [STREET]}, False),
    ("500000-JT", {"units": [STREET]}, False),
    ("123", {"units": [STREET]}, False),
])
def test_issuer_scope(world: World, issuer: str, targets: dict, ok: bool) -> None:
    r = dv.decide(None, None, issue(targets, issuer=issuer), world)
    if ok:
        assert isinstance(r, dv.Changed)
    else:
        assert isinstance(r, Rejected) and r.reason == "unauthorized", r


def test_repeated_directive_is_a_duplicate(world: World) -> None:
    r = Run(world, issue({"units": [STREET]}))
    assert isinstance(r.send(issue({"units": [STREET]})), Duplicate)


def test_ack_then_complete_without_report(world: World) -> None:
    r = Run(world, issue({"units": [STREET, "500103003"]}))
    r.send(update("ack", STREET, at=T0 + timedelta(minutes=5)))
    assert r.d.acknowledged == 1 and r.d.fully_acknowledged_at is None
    assert r.tasks[STREET].state == "acknowledged" and dv.next_timer(r.tasks[STREET]) is None
    r.send(update("ack", "500103003", at=T0 + timedelta(minutes=9)))
    assert r.d.fully_acknowledged_at == T0 + timedelta(minutes=9)
    assert r.types()[-2:] == ["acknowledged", "completed"]
    assert r.d.completed_at is not None


def test_report_stage_and_completion(world: World) -> None:
    r = Run(world, issue({"units": [STREET]}, report_by=T0 + timedelta(hours=4)))
    r.send(update("ack", STREET, at=T0 + timedelta(minutes=10)))
    t = r.tasks[STREET]
    assert t.stage == "report" and t.due == T0 + timedelta(hours=4)
    assert t.warn_at == T0 + timedelta(minutes=10) + (timedelta(hours=4)
                                                      - timedelta(minutes=10)) / 2
    assert r.d.completed_at is None
    r.send(update("report", STREET, at=T0 + timedelta(hours=1)))
    assert r.tasks[STREET].state == "reported" and r.d.reported == 1
    assert r.types()[-1] == "completed"
    rep = next(e for e in r.events if e.type == "reported")
    assert rep.note == "已落实" and rep.actor == STREET


def test_report_without_ack_counts_both(world: World) -> None:
    r = Run(world, issue({"units": [STREET]}, report_by=T0 + timedelta(hours=4)))
    r.send(update("report", STREET))
    assert r.types()[-3:] == ["acknowledged", "reported", "completed"]
    assert r.d.acknowledged == 1 and r.d.reported == 1


def test_authorization_and_transitions(world: World) -> None:
    r = Run(world, issue({"units": [STREET]}))
    other = update("ack", "500103003", target=STREET)
    x = r.send(other)
    assert isinstance(x, Rejected) and x.reason == "unauthorized"
    x = r.send(update("ack", "500103003"))  # not a target
    assert isinstance(x, Rejected) and x.reason == "unauthorized"
    ok = update("ack", DISTRICT, target=STREET)  # an ancestor acting for its street
    assert isinstance(r.send(ok), dv.Changed)
    assert isinstance(r.send(ok), Duplicate)
    x = r.send(update("ack", STREET))
    assert isinstance(x, Rejected) and x.reason == "invalid_transition"
    x = r.send(update("ack", "777"))
    assert isinstance(x, Rejected) and x.reason == "unknown_unit"
    missing = dv.decide(None, None, update("ack", STREET, did="nope"), world)
    assert isinstance(missing, Rejected) and missing.reason == "unknown_case"


def test_never_signs_reminded_then_escalated_to_district_then_city(world: World) -> None:
    r = Run(world, issue({"units": [STREET]}))
    for _ in range(4):
        assert isinstance(r.fire(STREET), dv.Changed)
    ladder = [(e.type, e.late_unit, e.supervisor, e.escalation_level, e.top)
              for e in r.events[2:]]
    assert ladder == [("warned", STREET, None, 0, None),
                      ("escalated", STREET, DISTRICT, 1, False),
                      ("escalated", DISTRICT, CITY, 2, False),
                      ("escalated", CITY, None, 3, True)]
    assert dv.next_timer(r.tasks[STREET]) is None and r.d.escalated == 3
    kinds = [(o.value.kind, o.key) for o in r.outputs if o.channel == "dispatch"][1:]
    assert kinds == [("reminder", STREET), ("supervision", DISTRICT), ("supervision", CITY)]
    sup = next(o.value for o in r.outputs
               if o.channel == "dispatch" and o.value.kind == "supervision")
    assert sup.late_unit == STREET and sup.escalation_level == 1
    assert sup.due == T0 + timedelta(hours=1, minutes=30)


def test_timers_fire_once_and_ack_ends_supervision(world: World) -> None:
    r = Run(world, issue({"units": [STREET]}))
    t = dv.next_timer(r.tasks[STREET])
    r.fire(STREET)
    stale = Command(aggregate="D1", at=t.at, body=DirectiveExpire(
        target=STREET, timer=t.kind, stage=t.stage, instant=t.at))
    assert isinstance(r.send(stale), Ignored)  # a repeated firing
    r.fire(STREET)  # escalated to the district
    r.send(update("ack", STREET))
    assert r.tasks[STREET].supervisor is None and dv.next_timer(r.tasks[STREET]) is None


def test_status_counts_and_late(world: World) -> None:
    r = Run(world, issue({"units": [STREET, "500103003"]}))
    r.send(update("ack", STREET, at=T0 + timedelta(minutes=3)))
    tasks = [orjson.loads(orjson.dumps(t.model_dump())) for t in r.tasks.values()]
    s = dv.status(r.d, tasks, T0 + timedelta(hours=2))
    assert s["targets"] == 2 and s["delivered"] == 2 and s["acknowledged"] == 1
    assert s["ack_ratio"] == 0.5 and s["late"] == 1
    by = {t["target"]: t for t in s["tasks"]}
    assert by["500103003"]["late"] and not by[STREET]["late"]
    assert by[STREET]["acknowledged_at"] == (T0 + timedelta(minutes=3)).isoformat()


def test_an_ack_writes_the_same_bytes_whatever_the_fan_out(world: World) -> None:
    """The changelog cost of an ack: one task record and the directive's counts."""
    small = Run(world, issue({"units": [STREET, "500103003"]}, did="S"))
    big = Run(world, issue({"level": "street"}, did="B"))
    a = small.send(update("ack", STREET, did="S"))
    b = big.send(update("ack", STREET, did="B"))
    assert len(a.tasks) == len(b.tasks) == 1
    size = [len(dump(x.tasks[0], TASK_IDS)) for x in (a, b)]
    assert size[0] == size[1]
    sizes = [len(dump(x.directive, DIRECTIVE_IDS)) for x in (a, b)]
    assert abs(sizes[0] - sizes[1]) <= 8 and max(sizes) < 300  # only the counts' digits


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["ack", "report", "fire"]), max_size=12))
def test_any_sequence_keeps_counts_and_seq(world: World, steps: list[str]) -> None:
    r = Run(world, issue({"units": [STREET, "500103003"]},
                         report_by=T0 + timedelta(hours=3)))
    for i, step in enumerate(steps):
        target = (STREET, "500103003")[i % 2]
        if step == "fire":
            if dv.next_timer(r.tasks[target]) is not None:
                r.fire(target)
        else:
            r.send(update(step, target))
    assert [e.seq for e in r.events] == list(range(1, len(r.events) + 1))
    assert r.d.acknowledged == sum(t.state != "delivered" for t in r.tasks.values())
    assert r.d.reported == sum(t.state == "reported" for t in r.tasks.values())
    assert r.types().count("completed") == (1 if r.d.reported == 2 else 0)
    for t in r.tasks.values():
        assert t.escalation_level <= 3
