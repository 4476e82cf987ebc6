"""Every row of the transition table, authorization, returns, feedback, idempotency."""

from datetime import timedelta

import pytest

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
from engine.core.model import CaseFile, CaseState, Command
from engine.core.transitions import TRANSITIONS
from engine.runtime.world import load_world
from tests.support.helpers import (
    CITY,
    DISTRICT,
    OTHER_DISTRICT_STREET,
    OTHER_STREET,
    STREET,
    T0,
    expire_cmd,
    open_cmd,
    rate_cmd,
    update_cmd,
)

W = load_world()
FILES: dict[str, CaseFile] = {}


def outputs(s: CaseState, d: Accepted) -> list:
    return react(s, FILES[s.case_id], d.events, W.topology)


def run(*cmds: Command, state: CaseState | None = None) -> tuple[CaseState | None, list]:
    decisions = []
    for c in cmds:
        d = decide(state, c, W)
        decisions.append(d)
        if isinstance(d, Accepted):
            state = apply(state, c, d.events)
            FILES[c.aggregate] = file_after(FILES.get(c.aggregate), d.events)
    return state, decisions


def opened(**kw) -> CaseState:
    s, _ = run(open_cmd(**kw))
    return s


def acked(**kw) -> CaseState:
    s, _ = run(open_cmd(**kw), update_cmd("ack", STREET))
    return s


def resolved(**kw) -> CaseState:
    s, _ = run(open_cmd(**kw), update_cmd("ack", STREET), update_cmd("resolve", STREET))
    return s


def rejected(state: CaseState, cmd: Command) -> Rejected:
    d = decide(state, cmd, W)
    assert isinstance(d, Rejected), d
    return d


# ---- open ----

def test_open_dispatches_street_work_to_the_street() -> None:
    s, [d] = run(open_cmd())
    assert [e.type for e in d.events] == ["created", "dispatched"]
    assert [e.seq for e in d.events] == [1, 2]
    assert s.state == "dispatched" and s.unit == STREET and s.stage == "ack"
    assert s.due == T0 + timedelta(hours=2)


def test_open_unplaceable_goes_to_triage() -> None:
    s, [d] = run(open_cmd(location={"address": "小区门口的路灯坏了"}))
    assert s.state == "triage" and s.unit == CITY
    assert d.events[-1].reason  # says why it could not be placed


def test_open_places_addresses_and_points() -> None:
    # an address naming a street: street-level work goes to that street
    s = opened(location={"address": "渝中区解放碑步行街"})
    assert s.state == "dispatched" and W.topology.level(s.unit) == "street"
    assert W.topology.district_of(s.unit) == "500103" and not s.boundary
    # a point well inside 江北区 (no street polygons): its district centre assigns it
    s = opened(location={"lat": 29.5750, "lon": 106.5310})
    assert s.state == "dispatched" and s.unit == "500105"


def test_open_border_point_goes_to_the_common_ancestor_marked_boundary() -> None:
    s, [d] = run(open_cmd(location={"lat": 29.5660, "lon": 106.5860}))  # 朝天门
    assert s.state == "dispatched" and s.unit == CITY and s.boundary
    assert all(e.boundary for e in d.events)
    out = react(s, file_after(None, d.events), d.events, W.topology)
    assert all(o.value.boundary for o in out if o.channel == "case_events")


def test_open_unknown_unit_and_category() -> None:
    assert rejected(None, open_cmd(unit="123")).reason == "unknown_unit"
    assert rejected(None, open_cmd(category="nope")).reason == "schema"


def test_open_twice_is_a_duplicate() -> None:
    s = opened()
    assert isinstance(decide(s, open_cmd(), W), Duplicate)


def test_policy_overrides_per_category_and_priority() -> None:
    s = opened(category="smoke", source="sensed", priority="urgent")
    assert s.due == T0 + timedelta(minutes=10)


# ---- every action, valid and invalid states ----

@pytest.mark.parametrize("action", sorted(a for a in TRANSITIONS if a != "open" and not
                                          a.startswith(("rate", "expire_", "join"))))
def test_every_action_is_refused_on_a_closed_case(action: str) -> None:
    s, _ = run(open_cmd(), update_cmd("ack", STREET), update_cmd("resolve", STREET),
               rate_cmd("satisfied"))
    assert s.state == "closed"
    fields = {"assign": {"assign_to": OTHER_STREET}, "assist": {"assist_units": ["500103-CG"]},
              "suspend": {"reason": "x", "until": T0 + timedelta(days=1)}}.get(action, {})
    r = rejected(s, update_cmd(action, DISTRICT if action == "verify" else STREET, **fields))
    assert r.reason == "invalid_transition"
    assert "closed" in r.detail and action in r.detail


def test_ack_then_progress_then_resolve() -> None:
    s, ds = run(open_cmd(), update_cmd("ack", STREET), update_cmd("progress", STREET, note="on it"),
                update_cmd("resolve", STREET))
    assert [d.events[0].type for d in ds[1:]] == ["acknowledged", "progress", "resolved"]
    assert s.state == "resolved" and s.stage == "feedback" and s.seq == 5


def test_resolve_before_ack_is_invalid() -> None:
    r = rejected(opened(), update_cmd("resolve", STREET))
    assert r.reason == "invalid_transition"
    assert "dispatched" in r.detail and "resolve" in r.detail


def test_progress_before_ack_is_invalid() -> None:
    assert rejected(opened(), update_cmd("progress", STREET)).reason == "invalid_transition"


def test_ancestor_may_act_sibling_may_not() -> None:
    s, _ = run(open_cmd(), update_cmd("ack", DISTRICT))
    assert s.state == "acknowledged"
    r = rejected(opened(), update_cmd("ack", OTHER_STREET))
    assert r.reason == "unauthorized"
    assert rejected(opened(), update_cmd("ack", OTHER_DISTRICT_STREET)).reason == "unauthorized"


def test_unknown_actor() -> None:
    assert rejected(opened(), update_cmd("ack", "000")).reason == "unknown_unit"


def test_unknown_case() -> None:
    assert rejected(None, update_cmd("ack", STREET)).reason == "unknown_case"
    assert rejected(None, rate_cmd("satisfied")).reason == "unknown_case"


def test_repeated_update_is_a_duplicate() -> None:
    s = opened()
    c = update_cmd("ack", STREET, update_id="same")
    s2, _ = run(c, state=s)
    assert isinstance(decide(s2, update_cmd("ack", STREET, update_id="same"), W), Duplicate)


# ---- returns ----

def test_return_goes_to_the_parent_and_is_capped() -> None:
    s, _ds = run(open_cmd(), update_cmd("return", STREET, reason="not ours"))
    assert s.unit == DISTRICT and s.state == "dispatched" and s.returns == 1
    assert not s.first_responsible
    s, _ = run(update_cmd("assign", DISTRICT, assign_to=STREET), state=s)
    assert s.unit == STREET
    # the same street again: no dispute (tests/core/test_insights.py has those), the cap binds
    s, _ = run(update_cmd("return", STREET, reason="still not ours"), state=s)
    assert s.unit == DISTRICT and s.returns == 2 and s.first_responsible and s.dispute is None
    r = rejected(s, update_cmd("assign", DISTRICT, assign_to=OTHER_STREET))
    assert r.reason == "invalid_transition" and "首接负责" in r.detail
    r = rejected(s, update_cmd("return", DISTRICT, reason="no"))
    assert r.reason == "invalid_transition"
    s, _ = run(update_cmd("ack", DISTRICT), update_cmd("resolve", DISTRICT), state=s)
    assert s.state == "resolved" and s.unit == DISTRICT


def test_only_the_holder_returns() -> None:
    r = rejected(opened(), update_cmd("return", DISTRICT, reason="x"))
    assert r.reason == "unauthorized"


def test_city_cannot_return() -> None:
    s = opened(category="city_policy")
    assert rejected(s, update_cmd("return", CITY, reason="x")).reason == "invalid_transition"


# ---- assign ----

def test_assign_from_triage() -> None:
    s = opened(location={"lat": 29.5, "lon": 106.5})
    s, [d] = run(update_cmd("assign", CITY, assign_to=STREET), state=s)
    assert s.state == "dispatched" and s.unit == STREET
    outs = outputs(s, d)
    orders = [o for o in outs if o.channel == "dispatch"]
    assert orders[0].key == STREET and orders[0].district == DISTRICT


def test_assign_only_below_the_assigner() -> None:
    s, _ = run(open_cmd(), update_cmd("return", STREET, reason="x"))
    r = rejected(s, update_cmd("assign", DISTRICT, assign_to=OTHER_DISTRICT_STREET))
    assert r.reason == "unauthorized"
    assert rejected(s, update_cmd("assign", DISTRICT, assign_to="nope")).reason == "unknown_unit"


# ---- assist, suspend, resume ----

def test_assist_adds_co_handlers_who_may_report_progress_only() -> None:
    s, [d] = run(update_cmd("assist", STREET, assist_units=["500103-CG", "500103-ZJ"]),
                 state=acked())
    assert s.co_handlers == ("500103-CG", "500103-ZJ")
    orders = [o for o in outputs(s, d) if o.channel == "dispatch"]
    assert {o.key for o in orders} == {"500103-CG", "500103-ZJ"}
    assert all(o.value.role == "assist" for o in orders)
    s, _ = run(update_cmd("progress", "500103-CG", note="管网已查"), state=s)
    assert s.seq == 5
    assert rejected(s, update_cmd("resolve", "500103-CG")).reason == "unauthorized"


def test_suspend_pauses_and_resume_moves_the_deadline() -> None:
    s = acked()
    due = s.due
    s, _ = run(update_cmd("suspend", STREET, reason="等待审批", until=T0 + timedelta(days=2),
                          at=T0 + timedelta(hours=1)), state=s)
    assert s.state == "suspended" and s.pause and s.pause.start == T0 + timedelta(hours=1)
    assert rejected(s, update_cmd("resolve", STREET)).reason == "invalid_transition"
    s, _ = run(update_cmd("resume", STREET, at=T0 + timedelta(hours=5)), state=s)
    assert s.state == "acknowledged"
    assert s.due == due + timedelta(hours=4)
    assert s.pause is None


def test_resume_when_not_suspended() -> None:
    r = rejected(acked(), update_cmd("resume", STREET))
    assert r.reason == "invalid_transition" and "acknowledged" in r.detail


# ---- feedback and verification ----

@pytest.mark.parametrize("rating", ["satisfied", "basically_satisfied"])
def test_good_rating_closes(rating: str) -> None:
    s, [d] = run(rate_cmd(rating), state=resolved())
    assert [e.type for e in d.events] == ["rated", "closed"]
    assert s.state == "closed" and s.outcome == rating


def test_unsatisfied_reopens_to_the_same_unit_one_level_up() -> None:
    s, [d] = run(rate_cmd("unsatisfied"), state=resolved())
    assert [e.type for e in d.events] == ["rated", "reopened"]
    assert s.state == "dispatched" and s.unit == STREET and s.escalation_level == 1
    orders = [o for o in outputs(s, d) if o.channel == "dispatch"]
    assert orders[0].value.escalation_level == 1


def test_no_rating_in_time_closes_unrated() -> None:
    s = resolved()
    s2, [_d] = run(expire_cmd("feedback", s.due), state=s)
    assert s2.state == "closed" and s2.outcome == "unrated"
    assert isinstance(decide(s2, expire_cmd("feedback", s.due), W), Duplicate | Ignored)


def test_stale_deadline_is_ignored() -> None:
    s = resolved()
    assert isinstance(decide(s, expire_cmd("feedback", s.due - timedelta(1)), W), Ignored)


def test_sensed_case_closes_by_verification_from_above() -> None:
    s = resolved(source="sensed", category="waterlogging", priority="urgent")
    assert rejected(s, rate_cmd("satisfied")).reason == "invalid_transition"
    assert rejected(s, update_cmd("verify", STREET)).reason == "unauthorized"
    s, _ = run(update_cmd("verify", DISTRICT), state=s)
    assert s.state == "closed" and s.outcome == "verified"


def test_complaint_cannot_be_verified() -> None:
    assert rejected(resolved(), update_cmd("verify", DISTRICT)).reason == "invalid_transition"


# ---- outputs ----

def test_outputs_have_deterministic_ids_and_no_personal_data_on_events() -> None:
    c = open_cmd()
    d1 = decide(None, c, W)
    d2 = decide(None, c, W)
    s = apply(None, c, d1.events)
    o1 = react(s, file_after(None, d1.events), d1.events, W.topology)
    o2 = react(apply(None, c, d2.events), file_after(None, d2.events), d2.events, W.topology)
    assert [o.ce_id for o in o1] == [o.ce_id for o in o2]
    for o in o1:
        if o.channel == "case_events":
            text = o.value.model_dump_json()
            assert "13800138000" not in text and "张三" not in text
    order = next(o for o in o1 if o.channel == "dispatch")
    assert order.value.citizen == {"name": "张三", "phone": "13800138000"}
    notes = [o for o in o1 if o.channel == "notifications"]
    assert notes and notes[0].value.kind == "received"


def test_the_city_verifies_the_sensed_cases_it_holds() -> None:
    s, _ = run(open_cmd(source="sensed", category="waterlogging", priority="urgent",
                        location={"lat": 0.0, "lon": 0.0}),  # unplaceable: the city holds it
               update_cmd("ack", CITY), update_cmd("resolve", CITY))
    assert s.unit == CITY and s.state == "resolved"
    s, _ = run(update_cmd("verify", CITY), state=s)
    assert s.state == "closed" and s.outcome == "verified"


def test_every_case_action_has_a_row_and_a_rule() -> None:
    from engine.core.decide import UPDATE_RULES
    from schemas.inbound import CASE_ACTIONS

    assert set(UPDATE_RULES) == CASE_ACTIONS
    assert set(TRANSITIONS) >= CASE_ACTIONS
