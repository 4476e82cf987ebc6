"""decide / evolve: every rule of the case closed loop, as pure functions.

``decide(state, command, world)`` answers with events, a duplicate, an ignore or a
rejection carrying the contract's dead-letter reason. ``evolve(state, event)`` folds one
event into the state. Neither does I/O or reads a clock: ``command.at`` is "now".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.core import ids, insights, merge, sla
from engine.core.model import (
    APPLIED_KEYS_KEPT,
    JOIN_KEYS_KEPT,
    ApplyRating,
    ApplyUpdate,
    CaseEvent,
    CaseFile,
    CaseState,
    Command,
    Expire,
    JoinCase,
    OpenCase,
    Pause,
    Stage,
)
from engine.core.routing import UnknownUnit, route
from engine.core.transitions import TRANSITIONS, Role, Transition
from engine.core.world import World
from schemas.inbound import UnitUpdate


@dataclass(frozen=True, slots=True)
class Accepted:
    events: list[CaseEvent]


@dataclass(frozen=True, slots=True)
class Duplicate:
    key: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A stale internal command (a timer for a stage already left): nothing to do, no input lost."""

    detail: str


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Bounce:
    """A join that found its case closed (or never opened): this command goes instead."""

    command: Command


Decision = Accepted | Duplicate | Ignored | Rejected | Bounce


def decide(state: CaseState | None, cmd: Command, world: World) -> Decision:
    body = cmd.body
    if isinstance(body, OpenCase):
        if state is not None:
            return Duplicate(cmd.key)
        return _open(cmd, body, world)
    if isinstance(body, JoinCase) and state is not None and cmd.key in state.joins:
        return Duplicate(cmd.key)  # joined already, closed since or not: one outcome
    if isinstance(body, JoinCase) and (state is None or state.state == "closed"):
        return Bounce(merge.bounce(cmd))  # the report opens its own case: nothing lost
    if state is None:
        return Rejected("unknown_case", f"case {cmd.aggregate} does not exist")
    if cmd.key in state.applied or (isinstance(body, JoinCase) and cmd.key in state.joins):
        return Duplicate(cmd.key)
    if isinstance(body, ApplyUpdate):
        return _update(state, cmd, body, world)
    if isinstance(body, ApplyRating):
        return _rate(state, cmd, body, world)
    if isinstance(body, JoinCase):
        return _join(state, cmd, body, world)
    assert isinstance(body, Expire), f"not a case command: {body.kind}"
    return _expire(state, cmd, body, world)


# ---- helpers ----


class _Events:
    """Accumulates events with gap-free seq numbers and the fields every event repeats."""

    def __init__(self, case_id: str, state: CaseState | None, at: datetime) -> None:
        self.case_id = case_id
        self.seq = state.seq if state else 0
        self.at = at
        self.escalation_level = state.escalation_level if state else 0
        self.returns = state.returns if state else 0
        self.items: list[CaseEvent] = []

    def add(self, type_: str, state: str, unit: str, **fields: Any) -> _Events:
        self.seq += 1
        fields.setdefault("escalation_level", self.escalation_level)
        fields.setdefault("returns", self.returns)
        self.items.append(
            CaseEvent(case_id=self.case_id, seq=self.seq, type=type_, at=self.at, state=state,
                      unit=unit, **fields)
        )
        return self

    def done(self) -> Accepted:
        return Accepted(self.items)


def _stage(world: World, s: CaseState, stage: Stage, at: datetime) -> dict[str, Any]:
    """The fields of an event that starts ``stage`` at ``at`` under the case's policy."""
    d = sla.deadline(world, s.policy, s.source, s.category, s.priority, stage, at)
    return {"stage": stage, "due": d.due, "warn_at": d.warn_at}


def _roles(state: CaseState, actor: str, world: World) -> set[Role]:
    roles: set[Role] = set()
    if actor == state.unit:
        roles.add("holder")
    if actor in state.co_handlers:
        roles.add("co_handler")
    if actor in world.topology and world.topology.is_ancestor(actor, state.unit):
        roles.add("ancestor")
    return roles


def _check(t: Transition, state: CaseState, action: str) -> Rejected | None:
    if state.source not in t.case_sources:
        return Rejected(
            "invalid_transition",
            f"{action} does not apply to a {state.source} case (state {state.state})",
        )
    if state.state not in t.sources:
        return Rejected("invalid_transition", f"cannot {action} a case in state {state.state}")
    return None


# ---- open ----


def _open(cmd: Command, body: OpenCase, world: World) -> Decision:
    category = world.catalogue.get(body.category, body.source)
    if category is None:
        return Rejected("schema", f"unknown {body.source} category {body.category!r}")
    try:
        placement = route(world.topology, category, body.location, world.placer,
                          world.policy.border_distance_m)
    except UnknownUnit as e:
        return Rejected("unknown_unit", f"location unit {e.args[0]!r} is not in the topology")
    ev = _Events(cmd.aggregate, None, cmd.at)
    digest = world.policy.digest  # frozen on the case: a new policy file applies to new cases
    where = {"boundary": True} if placement.boundary else {}
    ev.add("created", "received", placement.unit, opened=body, policy=digest,
           group=body.group, **where)
    stage: Stage = "triage" if placement.triage else "ack"
    d = sla.deadline(world, digest, body.source, body.category, body.priority, stage, cmd.at)
    fields = {"stage": stage, "due": d.due, "warn_at": d.warn_at}
    if placement.triage:
        ev.add("triaged", "triage", placement.unit, reason=placement.reason, **fields)
    elif body.precedent and body.precedent_unit in world.topology and not placement.boundary:
        # a ruling of this place (engine/core/insights.py): straight to the ruled unit
        ev.add("dispatched", "dispatched", body.precedent_unit, precedent=body.precedent,
               **fields)
    else:
        ev.add("dispatched", "dispatched", placement.unit, **where, **fields)
    return ev.done()


# ---- unit updates ----


def _update(state: CaseState, cmd: Command, body: ApplyUpdate, world: World) -> Decision:
    u = body.update
    topo = world.topology
    if u.actor not in topo:
        return Rejected("unknown_unit", f"actor {u.actor!r} is not in the topology")
    roles = _roles(state, u.actor, world)
    if not roles:
        return Rejected(
            "unauthorized",
            f"{u.actor} may not {u.action} case {state.case_id}: it is held by {state.unit} "
            "and the actor is neither that unit, a co-handler nor an ancestor",
        )
    t = TRANSITIONS[u.action]
    if u.action == "verify" and "holder" in roles and topo.parent(state.unit) is None:
        roles.add("ancestor")  # nobody is above the city centre: it verifies its own cases
    if not roles & t.who:
        return Rejected(
            "unauthorized",
            f"{u.action} is for {'/'.join(sorted(t.who))}; {u.actor} is "
            f"{'/'.join(sorted(roles))} of case {state.case_id}",
        )
    if (bad := _check(t, state, u.action)) is not None:
        return bad
    act = _Act(state, cmd, u, roles, world, _Events(state.case_id, state, cmd.at))
    return UPDATE_RULES[u.action](act)


@dataclass(frozen=True, slots=True)
class _Act:
    """One authorised unit update in a state the table allows, ready for its action's rule."""

    state: CaseState
    cmd: Command
    u: UnitUpdate
    roles: set[Role]
    world: World
    ev: _Events

    def stage(self, stage: Stage) -> dict[str, Any]:
        return _stage(self.world, self.state, stage, self.cmd.at)

    def place(self) -> str | dict[str, float] | None:
        """The case's place, for a dispute or ruling (engine/core/insights.py)."""
        return insights.published_place(self.state.place, self.world.policy.merge_radius_m)


def _ack(x: _Act) -> Decision:
    # in triage the city centre signs for the case itself
    unit = x.u.actor if x.state.state == "triage" else x.state.unit
    return x.ev.add("acknowledged", "acknowledged", unit, actor=x.u.actor,
                    **x.stage("resolve")).done()


def _progress(x: _Act) -> Decision:
    s = x.state
    return x.ev.add("progress", s.state, s.unit, actor=x.u.actor, note=x.u.note, stage=s.stage,
                    due=s.due).done()


def _return(x: _Act) -> Decision:
    """退单: back to the parent; the return that reaches the cap binds the parent (首接负责).

    扯皮: a return by a unit other than every one that returned the case before is a dispute
    (engine/core/insights.py): the case goes to the returning units' lowest common ancestor,
    the arbiter, whose ``assign`` is the ruling; a dispute outranks 首接负责."""
    s, cap = x.state, x.world.policy.max_returns
    parent = x.world.topology.parent(s.unit)
    if parent is None:
        return Rejected("invalid_transition",
                        f"{s.unit} is the top level: there is no level above to return to")
    if s.first_responsible or s.returns >= cap:
        return Rejected("invalid_transition", f"case returned {s.returns} times (cap {cap}): "
                        f"{s.unit} must handle it itself (首接负责)")
    x.ev.returns = s.returns + 1
    disputed = insights.dispute_of(s, x.u.actor, x.world)
    if disputed is not None:
        units, arbiter = disputed
        return x.ev.add("returned", "dispatched", arbiter, actor=x.u.actor, reason=x.u.reason,
                        dispute=ids.insight_id("dispute", s.case_id, x.ev.seq + 1),
                        units=units, place=x.place(), **x.stage("ack")).done()
    return x.ev.add("returned", "dispatched", parent, actor=x.u.actor, reason=x.u.reason,
                    first_responsible=x.ev.returns >= cap, **x.stage("ack")).done()


def _assign(x: _Act) -> Decision:
    s, u, topo = x.state, x.u, x.world.topology
    target = u.assign_to or ""
    if target not in topo:
        return Rejected("unknown_unit", f"assign_to {target!r} is not in the topology")
    if not topo.is_ancestor(u.actor, target):
        return Rejected("unauthorized",
                        f"{u.actor} may only assign to units below it; {target} is not")
    if s.first_responsible and "holder" in x.roles:
        return Rejected("invalid_transition", f"{s.unit} must handle case {s.case_id} itself "
                        f"(首接负责, returned {s.returns} times)")
    if target == s.unit:
        return Rejected("invalid_transition", f"case is already held by {target}")
    ruled: dict[str, Any] = {}
    if insights.rules(s, u.actor, x.world):  # the arbiter's first assign: the ruling
        ruled = {"ruling": ids.insight_id("ruling", s.case_id, x.ev.seq + 1),
                 "dispute": s.dispute, "place": x.place()}
    return x.ev.add("assigned", "dispatched", target, actor=u.actor, note=u.note, **ruled,
                    **x.stage("ack")).done()


def _assist(x: _Act) -> Decision:
    """吹哨报到: the named units join as co-handlers and get an order of their own."""
    s, u, topo = x.state, x.u, x.world.topology
    units = tuple(dict.fromkeys(u.assist_units or ()))
    unknown = [c for c in units if c not in topo]
    if unknown:
        return Rejected("unknown_unit", f"assist_units not in the topology: {unknown}")
    new = tuple(c for c in units if c != s.unit and c not in s.co_handlers)
    if not new:
        return Rejected("invalid_transition", "assist names no unit not already on the case")
    return x.ev.add("assisted", s.state, s.unit, actor=u.actor, assist_units=new, note=u.note,
                    stage=s.stage, due=s.due).done()


def _suspend(x: _Act) -> Decision:
    u = x.u
    if u.until is not None and u.until <= x.cmd.at:
        return Rejected("invalid_transition",
                        f"suspend until {u.until.isoformat()} is not in the future")
    return x.ev.add("suspended", "suspended", x.state.unit, actor=u.actor, reason=u.reason,
                    until=u.until, stage=x.state.stage).done()


def _resume(x: _Act) -> Decision:
    """Back to the state before suspension; its deadlines move by the working time paused."""
    return _resumed(x.state, x.ev, x.world, x.cmd.at, actor=x.u.actor).done()


def _resumed(s: CaseState, ev: _Events, world: World, at: datetime, actor: str | None
             ) -> _Events:
    start = s.pause.start if s.pause else at

    def move(t: datetime | None) -> datetime | None:
        return sla.shifted(world, s, t, start, at)

    return ev.add("resumed", s.resume_to or "acknowledged", s.unit, actor=actor,
                  stage=s.stage, due=move(s.due), warn_at=move(s.warn_at),
                  supervisor=s.supervisor, supervise_due=move(s.supervise_due))


def _resolve(x: _Act) -> Decision:
    return x.ev.add("resolved", "resolved", x.state.unit, actor=x.u.actor, note=x.u.note,
                    **x.stage("feedback")).done()


def _verify(x: _Act) -> Decision:
    x.ev.add("verified", "resolved", x.state.unit, actor=x.u.actor, note=x.u.note)
    return x.ev.add("closed", "closed", x.state.unit, actor=x.u.actor,
                    outcome="verified").done()


UPDATE_RULES: dict[str, Callable[[_Act], Decision]] = {
    "ack": _ack, "progress": _progress, "return": _return, "assign": _assign,
    "assist": _assist, "suspend": _suspend, "resume": _resume, "resolve": _resolve,
    "verify": _verify,
}


# ---- citizen ratings and deadlines ----


def _rate(state: CaseState, cmd: Command, body: ApplyRating, world: World) -> Decision:
    if (bad := _check(TRANSITIONS["rate"], state, "rate")) is not None:
        return bad
    rating = body.feedback.rating
    ev = _Events(state.case_id, state, cmd.at)
    ev.add("rated", "resolved", state.unit, rating=rating)
    # several complainants (一事多诉): the worst rating counts (engine/core/merge.py)
    outcome = merge.rating_outcome((*state.ratings, rating), state.complainants)
    if outcome is None:  # the others may still rate
        return ev.done()
    if outcome != "unsatisfied":
        return ev.add("closed", "closed", state.unit, outcome=outcome).done()
    # 不满意: back to the same unit, supervision raised one level, a fresh ack deadline
    ev.escalation_level = state.escalation_level + 1
    return ev.add("reopened", "dispatched", state.unit, rating=rating,
                  **_stage(world, state, "ack", cmd.at)).done()


def _join(state: CaseState, cmd: Command, body: JoinCase, world: World) -> Decision:
    """一事多诉 / a repeated alarm joins the open case; a critical alarm makes it urgent."""
    s, o = state, body.open
    ev = _Events(s.case_id, s, cmd.at)
    fields: dict[str, Any] = {"stage": s.stage, "due": s.due}
    if o.source == "complaint":
        fields["complainants"] = s.complainants + 1
    else:
        fields["alarms"] = max(s.alarms, 1) + 1
    if o.source == "sensed" and o.severity == "critical" and s.priority != "urgent":
        fields["priority"] = "urgent"
        if s.stage is not None and s.due is not None and s.state != "suspended":
            d = sla.deadline(world, s.policy, s.source, s.category, "urgent", s.stage, cmd.at)
            fields["due"] = min(s.due, d.due)
            if s.warn_at is not None and d.warn_at is not None:
                fields["warn_at"] = min(s.warn_at, d.warn_at)
    return ev.add("merged", s.state, s.unit, **fields).done()


def _expire(state: CaseState, cmd: Command, body: Expire, world: World) -> Decision:
    """A timer fell due: remind, escalate a level, close unrated or resume (core/sla.py)."""
    t = sla.armed(state, cmd)
    if t is None:
        return Ignored(f"timer {body.timer} {body.stage}@{body.instant.isoformat()} "
                       "is no longer armed")
    s = state
    ev = _Events(s.case_id, s, cmd.at)
    if t.kind == "resume":
        return _resumed(s, ev, world, t.at, actor=None).done()
    if t.kind == "warn":  # 催办
        return ev.add("warned", s.state, s.unit, stage=s.stage, due=s.due,
                      late_unit=sla.late_unit(s, world)).done()
    if t.kind == "due" and s.stage == "feedback" and s.source == "complaint":
        outcome = merge.worst(s.ratings) or "unrated"  # the ratings given, or none
        return ev.add("closed", "closed", s.unit, outcome=outcome).done()
    # 督办: the stage's due (or the supervisor's) has passed, one level up
    late = sla.late_unit(s, world) if t.kind == "due" else (s.supervisor or s.unit)
    ev.escalation_level = s.escalation_level + 1
    return ev.add("escalated", s.state, s.unit, stage=s.stage, due=s.due,
                  **sla.escalation(s, world, late, t.at)).done()


# ---- evolve ----


STAGE_STARTS = frozenset({"dispatched", "triaged", "acknowledged", "returned", "assigned",
                          "resolved", "reopened"})


def evolve(state: CaseState | None, e: CaseEvent) -> CaseState:
    if e.type == "created":
        o = e.opened
        assert o is not None, "created events carry the opened case"
        return CaseState(
            case_id=e.case_id, source=o.source, state="received", category=o.category,
            priority=o.priority, unit=e.unit, seq=e.seq, updated_at=e.at,
            policy=e.policy or "", boundary=bool(e.boundary), group=e.group,
            place=insights.case_place(o.location, e.group),
            alarms=1 if o.source == "sensed" else 0,
            complainants=1 if o.complainant is not None else 0,
        )
    assert state is not None, f"{e.type} before created"
    changes: dict[str, Any] = {
        "state": e.state, "unit": e.unit, "seq": e.seq, "updated_at": e.at,
        "escalation_level": e.escalation_level, "returns": e.returns,
    }
    if e.type in STAGE_STARTS:  # a new stage: its own deadline, no supervision yet
        changes.update(stage=e.stage, due=e.due, warn_at=e.warn_at, supervisor=None,
                       supervise_due=None, top=False, warned=False)
    if e.unit != state.unit:
        changes["co_handlers"] = ()
    if e.first_responsible:
        changes["first_responsible"] = True
    match e.type:
        case "assisted":
            changes["co_handlers"] = (*state.co_handlers, *(e.assist_units or ()))
        case "suspended":
            changes["resume_to"] = state.state
            changes["pause"] = Pause(start=e.at, reason=e.reason, until=e.until)
        case "resumed":
            changes.update(pause=None, resume_to=None, due=e.due, warn_at=e.warn_at,
                           supervise_due=e.supervise_due)
        case "warned":
            changes["warn_at"] = None
            changes["warned"] = True
        case "merged":
            if e.complainants is not None:
                changes["complainants"] = e.complainants
            if e.alarms is not None:
                changes["alarms"] = e.alarms
            if e.priority is not None:
                changes.update(priority=e.priority, due=e.due,
                               warn_at=e.warn_at if e.warn_at is not None else state.warn_at)
        case "rated":
            changes["ratings"] = (*state.ratings, e.rating or "")
        case "escalated":
            changes.update(warn_at=None, supervisor=e.supervisor,
                           supervise_due=e.supervise_due, top=bool(e.top))
        case "returned":
            changes["returned_by"] = tuple(dict.fromkeys(
                (*state.returned_by, e.actor or e.unit)))[-insights.RETURNERS_KEPT:]
            if e.dispute:
                changes.update(dispute=e.dispute, arbiter=e.unit)
        case "assigned" if e.ruling:
            changes.update(dispute=None, arbiter=None)
        case "reopened":
            changes["reopened"] = state.reopened + 1
            changes["outcome"] = None
            changes["ratings"] = ()
        case "closed":
            changes.update(outcome=e.outcome, stage=None, due=None, warn_at=None,
                           supervisor=None, supervise_due=None, warned=False)
    return state.model_copy(update=changes)


COMPLAINANTS_KEPT = 500  # contacts kept on one case; the count on the state goes on


def file_after(file: CaseFile | None, events: list[CaseEvent],
               cmd: Command | None = None) -> CaseFile:
    """The case file after ``events``: built from ``created``; a complaint that joined the
    case (一事多诉) adds its complainant, who gets the case's notices from now on."""
    for e in events:
        if e.type == "created":
            assert e.opened is not None, "created events carry the opened case"
            file = CaseFile.opened(e.case_id, e.opened, e.at)
        elif (e.type == "merged" and cmd is not None and isinstance(cmd.body, JoinCase)
              and cmd.body.open.complainant is not None and file is not None
              and len(file.complainants) < COMPLAINANTS_KEPT):
            file = file.model_copy(update={
                "complainants": (*file.complainants, cmd.body.open.complainant)})
    assert file is not None, "a case file exists once the case is created"
    return file


def apply(state: CaseState | None, cmd: Command, events: list[CaseEvent]) -> CaseState:
    """Fold a command's events and remember its idempotency key (not a timer's: a firing
    is applied only while armed, and the keys kept are for inputs clients may repeat)."""
    for e in events:
        state = evolve(state, e)
    assert state is not None
    if isinstance(cmd.body, Expire | OpenCase):  # an open repeats onto an existing case
        return state
    if isinstance(cmd.body, JoinCase):  # kept apart: a storm joins many more than 16
        return state.model_copy(update={"joins": (*state.joins, cmd.key)[-JOIN_KEYS_KEPT:]})
    return state.model_copy(update={"applied": (*state.applied, cmd.key)[-APPLIED_KEYS_KEPT:]})
