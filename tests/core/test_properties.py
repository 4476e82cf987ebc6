"""Random sequences of actors and actions through the core: the invariants of the loop."""

from datetime import timedelta

from hypothesis import event, given, settings
from hypothesis import strategies as st

from engine.core import (
    Accepted,
    Duplicate,
    Ignored,
    Rejected,
    apply,
    decide,
    file_after,
    react,
)
from engine.core.decide import evolve
from engine.core.model import CaseState
from engine.core.sla import next_timer
from engine.runtime.world import load_world
from tests.support.helpers import T0, expire_cmd, open_cmd, rate_cmd, update_cmd

W = load_world()
UNITS = ["500000", "500103", "500103001", "500103003", "500104", "500104001", "500103-CG",
         "500000-JT", "999"]
ACTIONS = ["ack", "progress", "return", "assign", "assist", "resolve", "suspend", "resume",
           "verify"]
STATES = {"received", "triage", "dispatched", "acknowledged", "suspended", "resolved", "closed"}

step = st.one_of(
    st.tuples(st.just("update"), st.sampled_from(ACTIONS),
              st.sampled_from(UNITS + ["@holder"] * 6 + ["@parent"] * 3),
              st.sampled_from(UNITS), st.integers(0, 3)),
    st.tuples(st.just("rate"), st.sampled_from(["satisfied", "basically_satisfied",
                                                 "unsatisfied"]),
              st.none(), st.none(), st.integers(0, 3)),
    st.tuples(st.just("expire"), st.none(), st.none(), st.none(), st.integers(0, 3)),
)


def command(kind, action, actor, other, n, state, i):
    at = T0 + timedelta(minutes=i)
    uid = f"u{n}" if n < 2 else f"u-{i}"  # some repeated idempotency keys
    if kind == "rate":
        return rate_cmd(action, at=at, feedback_id=uid)
    if kind == "expire":  # the case's armed timer, or a stale one
        t = next_timer(state) if state else None
        if t is None or n == 3:
            return expire_cmd("feedback", state.due if state and state.due else at, at=at)
        return expire_cmd(t.stage, t.at, at=max(at, t.at), timer=t.kind)
    if actor == "@holder":
        actor = state.unit
    elif actor == "@parent":
        actor = W.topology.parent(state.unit) or state.unit
    fields = {"assign": {"assign_to": other}, "assist": {"assist_units": [other]},
              "suspend": {"reason": "r", "until": at + timedelta(days=1)}}.get(action, {})
    return update_cmd(action, actor, at=at, update_id=uid, **fields)


@settings(max_examples=400, deadline=None)
@given(source=st.sampled_from(["complaint", "sensed"]),
       location=st.sampled_from([{"unit": "500103001"}, {"unit": "500104"},
                                 {"address": "somewhere"}]),
       steps=st.lists(step, min_size=3, max_size=40))
def test_invariants(source: str, location: dict, steps: list) -> None:
    category = "road_damage" if source == "complaint" else "waterlogging"
    first = open_cmd(source=source, category=category, location=location)
    d = decide(None, first, W)
    assert isinstance(d, Accepted)
    state: CaseState = apply(None, first, d.events)
    file = file_after(None, d.events)
    history = list(d.events)
    for i, (kind, action, actor, other, n) in enumerate(steps):
        cmd = command(kind, action, actor, other, n, state, i)
        before = state
        d = decide(state, cmd, W)
        # every input ends as exactly one outcome
        assert isinstance(d, Accepted | Duplicate | Ignored | Rejected)
        event(type(d).__name__ + ':' + getattr(d, 'reason', ''))
        if isinstance(d, Rejected):
            assert d.reason in {"unknown_unit", "unauthorized", "invalid_transition"}
            assert d.detail
            continue
        if not isinstance(d, Accepted):
            continue
        assert d.events, "an accepted command changes the case"
        assert before.state != "closed", "closed is final"
        # seq is gap-free
        assert [e.seq for e in d.events] == list(range(before.seq + 1,
                                                       before.seq + 1 + len(d.events)))
        state = apply(state, cmd, d.events)
        if kind == "expire":  # the ladder: a firing applies once; a paused clock escalates nothing
            assert isinstance(decide(state, cmd, W), Ignored)
            if before.state == "suspended":
                assert [e.type for e in d.events] == ["resumed"]
            for e in d.events:
                if e.type == "escalated":
                    assert e.escalation_level == before.escalation_level + 1
                    assert e.top or e.supervisor in W.topology
        history.extend(d.events)
        assert state.state in STATES and state.state == d.events[-1].state
        assert state.unit in W.topology
        assert state.returns <= W.policy.max_returns
        assert state.escalation_level >= before.escalation_level
        react(state, file, d.events, W.topology)  # outputs build for every event
    # replaying the history rebuilds the case
    rebuilt = None
    for e in history:
        rebuilt = evolve(rebuilt, e)
    assert rebuilt is not None
    assert rebuilt.model_dump(exclude={"applied"}) == state.model_dump(exclude={"applied"})
    assert [e.seq for e in history] == list(range(1, state.seq + 1))
