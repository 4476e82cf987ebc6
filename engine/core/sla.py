"""The SLA ladder (监督): stage deadlines, the reminder point, escalation one level at a time.

Every open stage of a case has a ``due`` from the policy frozen on the case, counted on its
clock (24x7 or working time). At ``warn_fraction`` of the stage's time the holder is reminded
(催办: a ``warned`` event and a ``kind=reminder`` order); at ``due`` the late unit's parent
supervises (督办: an ``escalated`` event and a ``kind=supervision`` order with the policy's
``supervise`` deadline), and if that passes too, the next level up, to the city centre, whose
breach is recorded as the top. Completing the stage ends its supervision. A complaint whose
feedback window closes is closed ``unrated``; a suspension with ``until`` resumes itself.

A case has at most one armed timer: ``next_timer(state)``. The durable index holds it and the
ticker fires it as an ``Expire`` command (engine/runtime/timers.py); ``expire`` applies it only
while
the case still has exactly that timer armed, so a stale or repeated firing is ``Ignored`` and
each reminder and escalation happens once per stage and level.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.core.model import CaseState, Command, Expire, Stage, TimerKind

if TYPE_CHECKING:
    from engine.core.world import World

# feedback: a complaint's citizen is not a unit to remind; a sensed case's verifier is
_NO_REMINDER = frozenset({("complaint", "feedback")})


@dataclass(frozen=True, slots=True)
class Timer:
    kind: TimerKind
    stage: Stage | None
    at: datetime
    target: str | None = None  # a directive task's target; None for a case


def ladder_timer(stage: Any, warn_at: datetime | None, due: datetime | None,
                 supervisor: str | None, supervise_due: datetime | None, top: bool,
                 target: str | None = None) -> Timer | None:
    """The earliest of a running stage's reminder, deadline and supervision deadline: the
    one ladder cases and directive tasks climb alike."""
    candidates = []
    if warn_at is not None:
        candidates.append(Timer("warn", stage, warn_at, target))
    if due is not None and supervisor is None and not top:
        candidates.append(Timer("due", stage, due, target))
    if supervise_due is not None and not top:
        candidates.append(Timer("supervise", stage, supervise_due, target))
    return min(candidates, key=lambda t: t.at) if candidates else None


@dataclass(frozen=True, slots=True)
class Deadline:
    due: datetime
    warn_at: datetime | None


def deadline(world: World, digest: str, source: str, category: str, priority: str,
             stage: Stage, start: datetime) -> Deadline:
    """When a stage started at ``start`` is due, and when its holder is reminded."""
    policy = world.policy_for(digest)
    clock = world.clock(policy)
    length = policy.deadline(category, priority, stage)
    due = clock.add(start, length)
    warn_at = None
    if (source, stage) not in _NO_REMINDER:
        warn_at = clock.add(start, length * policy.warn_fraction)
    return Deadline(due, warn_at)


def supervise_due(world: World, state: CaseState, start: datetime) -> datetime:
    policy = world.policy_for(state.policy)
    return world.clock(policy).add(
        start, policy.deadline(state.category, state.priority, "supervise"))


def shifted(world: World, state: CaseState, t: datetime | None, paused_from: datetime,
            resumed_at: datetime) -> datetime | None:
    """A deadline moved by the working time a pause took out of it."""
    if t is None:
        return None
    return world.clock(world.policy_for(state.policy)).shift(t, paused_from, resumed_at)


def next_timer(s: CaseState) -> Timer | None:
    """The one timer the case has armed: the earliest of reminder, deadline, supervision."""
    if s.state in ("closed", "received"):
        return None
    if s.state == "suspended":
        if s.pause is not None and s.pause.until is not None:
            return Timer("resume", s.stage, s.pause.until)
        return None  # the clock is stopped
    return ladder_timer(s.stage, s.warn_at, s.due, s.supervisor, s.supervise_due, s.top)


def late_unit(s: CaseState, world: World) -> str:
    """Who missed the stage: the holder, or for a sensed case's verification the level above."""
    if s.stage == "feedback" and s.source == "sensed":
        return world.topology.parent(s.unit) or s.unit
    return s.unit


def armed(s: CaseState, cmd: Command) -> Timer | None:
    """The timer an ``Expire`` names, if the case still has exactly that one armed."""
    body = cmd.body
    assert isinstance(body, Expire)
    t = Timer(body.timer, body.stage, body.instant)
    return t if next_timer(s) == t else None


def escalation(s: CaseState, world: World, late: str, breach: datetime) -> dict[str, Any]:
    """The fields of the ``escalated`` event for a breach by ``late`` at ``breach``."""
    parent = world.topology.parent(late)
    if parent is None:  # the city centre itself is late: recorded, nothing higher
        return {"late_unit": late, "supervisor": None, "supervise_due": None, "top": True}
    return {"late_unit": late, "supervisor": parent,
            "supervise_due": supervise_due(world, s, breach), "top": False}
