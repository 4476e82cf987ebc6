"""decide / evolve: every rule of the case closed loop, as pure functions.

``decide(state, command, world)`` answers with events, a duplicate, an ignore or a
rejection carrying the contract's dead-letter reason. ``evolve(state, event)`` folds one
event into the state. Neither does I/O or reads a clock: ``command.at`` is "now".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.core.model import (
    APPLIED_KEYS_KEPT,
    ApplyRating,
    ApplyUpdate,
    CaseEvent,
    CaseState,
    Command,
    Expire,
    OpenCase,
    Pause,
    Stage,
)
from engine.core.routing import UnknownUnit, route
from engine.core.transitions import TRANSITIONS, Role, Transition
from engine.core.world import World


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


Decision = Accepted | Duplicate | Ignored | Rejected


def decide(state: CaseState | None, cmd: Command, world: World) -> Decision:
    body = cmd.body
    if isinstance(body, OpenCase):
        if state is not None:
            return Duplicate(cmd.key)
        return _open(cmd, body, world)
    if state is None:
        return Rejected("unknown_case", f"case {cmd.case_id} does not exist")
    if cmd.key in state.applied:
        return Duplicate(cmd.key)
    if isinstance(body, ApplyUpdate):
        return _update(state, cmd, body, world)
    if isinstance(body, ApplyRating):
        return _rate(state, cmd, body, world)
    return _expire(state, cmd, body)


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


def _due(world: World, category: str, priority: str, stage: Stage, at: datetime) -> datetime:
    return at + world.policy.deadline(category, priority, stage)


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
        placement = route(world.topology, category, body.location)
    except UnknownUnit as e:
        return Rejected("unknown_unit", f"location unit {e.args[0]!r} is not in the topology")
    ev = _Events(cmd.case_id, None, cmd.at)
    ev.add("created", "received", placement.unit, opened=body)
    due = _due(world, body.category, body.priority, "ack", cmd.at)
    if placement.triage:
        ev.add("triaged", "triage", placement.unit, stage="ack", due=due)
    else:
        ev.add("dispatched", "dispatched", placement.unit, stage="ack", due=due)
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
    ev = _Events(state.case_id, state, cmd.at)
    pol = world.policy
    a = u.action
    if a == "ack":
        due = _due(world, state.category, state.priority, "resolve", cmd.at)
        return ev.add("acknowledged", "acknowledged", u.actor if state.state == "triage"
                      else state.unit, actor=u.actor, stage="resolve", due=due).done()
    if a == "progress":
        return ev.add("progress", state.state, state.unit, actor=u.actor, note=u.note,
                      stage=state.stage, due=state.due).done()
    if a == "return":
        parent = topo.parent(state.unit)
        if parent is None:
            return Rejected("invalid_transition",
                            f"{state.unit} is the top level: there is no level above to return to")
        if state.first_responsible or state.returns >= pol.max_returns:
            return Rejected(
                "invalid_transition",
                f"case returned {state.returns} times (cap {pol.max_returns}): "
                f"{state.unit} must handle it itself (首接负责)",
            )
        ev.returns = state.returns + 1
        capped = ev.returns >= pol.max_returns
        due = _due(world, state.category, state.priority, "ack", cmd.at)
        return ev.add("returned", "dispatched", parent, actor=u.actor, reason=u.reason,
                      stage="ack", due=due, first_responsible=capped).done()
    if a == "assign":
        target = u.assign_to or ""
        if target not in topo:
            return Rejected("unknown_unit", f"assign_to {target!r} is not in the topology")
        if not topo.is_ancestor(u.actor, target):
            return Rejected("unauthorized",
                            f"{u.actor} may only assign to units below it; {target} is not")
        if state.first_responsible and "holder" in roles:
            return Rejected("invalid_transition",
                            f"{state.unit} must handle case {state.case_id} itself (首接负责, "
                            f"returned {state.returns} times)")
        if target == state.unit:
            return Rejected("invalid_transition", f"case is already held by {target}")
        due = _due(world, state.category, state.priority, "ack", cmd.at)
        return ev.add("assigned", "dispatched", target, actor=u.actor, stage="ack",
                      due=due, note=u.note).done()
    if a == "assist":
        units = tuple(dict.fromkeys(u.assist_units or ()))
        unknown = [c for c in units if c not in topo]
        if unknown:
            return Rejected("unknown_unit", f"assist_units not in the topology: {unknown}")
        new = tuple(c for c in units if c != state.unit and c not in state.co_handlers)
        if not new:
            return Rejected("invalid_transition", "assist names no unit that is not already on "
                            "the case")
        return ev.add("assisted", state.state, state.unit, actor=u.actor, assist_units=new,
                      note=u.note, stage=state.stage, due=state.due).done()
    if a == "suspend":
        if u.until is not None and u.until <= cmd.at:
            return Rejected("invalid_transition", f"suspend until {u.until.isoformat()} is not "
                            "in the future")
        return ev.add("suspended", "suspended", state.unit, actor=u.actor, reason=u.reason,
                      until=u.until, stage=state.stage).done()
    if a == "resume":
        previous = state.resume_to or "acknowledged"
        paused = _open_pause_length(state, cmd.at)
        due = state.due + paused if state.due else None
        return ev.add("resumed", previous, state.unit, actor=u.actor, stage=state.stage,
                      due=due).done()
    if a == "resolve":
        due = _due(world, state.category, state.priority, "feedback", cmd.at)
        return ev.add("resolved", "resolved", state.unit, actor=u.actor, note=u.note,
                      stage="feedback", due=due).done()
    if a == "verify":
        ev.add("verified", "resolved", state.unit, actor=u.actor, note=u.note)
        return ev.add("closed", "closed", state.unit, actor=u.actor, outcome="verified").done()
    raise AssertionError(f"no rule for action {a}")  # pragma: no cover - table and code agree


def _open_pause_length(state: CaseState, now: datetime) -> timedelta:
    if state.pauses and state.pauses[-1].end is None:
        return now - state.pauses[-1].start
    return timedelta(0)


# ---- citizen ratings and deadlines ----


def _rate(state: CaseState, cmd: Command, body: ApplyRating, world: World) -> Decision:
    if (bad := _check(TRANSITIONS["rate"], state, "rate")) is not None:
        return bad
    rating = body.feedback.rating
    ev = _Events(state.case_id, state, cmd.at)
    ev.add("rated", "resolved", state.unit, rating=rating)
    if rating != "unsatisfied":
        return ev.add("closed", "closed", state.unit, outcome=rating).done()
    # 不满意: back to the same unit, supervision raised one level, a fresh ack deadline
    ev.escalation_level = state.escalation_level + 1
    due = _due(world, state.category, state.priority, "ack", cmd.at)
    return ev.add("reopened", "dispatched", state.unit, rating=rating, stage="ack",
                  due=due).done()


def _expire(state: CaseState, cmd: Command, body: Expire) -> Decision:
    if state.stage != body.stage or state.due != body.due or state.state == "closed":
        return Ignored(f"deadline {body.stage}@{body.due.isoformat()} no longer armed")
    if body.stage == "feedback" and state.source == "complaint" and state.state == "resolved":
        ev = _Events(state.case_id, state, cmd.at)
        return ev.add("closed", "closed", state.unit, outcome="unrated").done()
    return Ignored(f"stage {body.stage} expiry is handled by the SLA work")


# ---- evolve ----


def evolve(state: CaseState | None, e: CaseEvent) -> CaseState:
    if e.type == "created":
        o = e.opened
        assert o is not None, "created events carry the opened case"
        return CaseState(
            case_id=e.case_id, source=o.source, state="received", category=o.category,
            priority=o.priority, location=o.location, summary=o.summary, origin_key=o.key,
            sensor_id=o.sensor_id, unit=e.unit, seq=e.seq, created_at=e.at, updated_at=e.at,
            complainants=(o.complainant,) if o.complainant else (),
            history=(e.model_copy(update={"opened": None}),),
        )
    assert state is not None, f"{e.type} before created"
    changes: dict[str, Any] = {
        "state": e.state, "unit": e.unit, "seq": e.seq, "updated_at": e.at,
        "escalation_level": e.escalation_level, "returns": e.returns,
        "history": (*state.history, e),
    }
    if e.stage is not None or e.type in ("closed",):
        changes["stage"] = e.stage
    if e.type != "suspended":
        changes["due"] = e.due if e.type != "progress" else state.due
    if e.unit != state.unit:
        changes["co_handlers"] = ()
    if e.first_responsible:
        changes["first_responsible"] = True
    match e.type:
        case "assisted":
            changes["co_handlers"] = (*state.co_handlers, *(e.assist_units or ()))
        case "suspended":
            changes["resume_to"] = state.state
            changes["pauses"] = (*state.pauses, Pause(start=e.at, reason=e.reason, until=e.until))
        case "resumed":
            last = state.pauses[-1].model_copy(update={"end": e.at})
            changes["pauses"] = (*state.pauses[:-1], last)
            changes["resume_to"] = None
        case "reopened":
            changes["reopened"] = state.reopened + 1
            changes["outcome"] = None
        case "closed":
            changes["outcome"] = e.outcome
            changes["due"] = None
    return state.model_copy(update=changes)


def apply(state: CaseState | None, cmd: Command, events: list[CaseEvent]) -> CaseState:
    """Fold a command's events and remember its idempotency key."""
    for e in events:
        state = evolve(state, e)
    assert state is not None
    return state.model_copy(update={"applied": (*state.applied, cmd.key)[-APPLIED_KEYS_KEPT:]})
