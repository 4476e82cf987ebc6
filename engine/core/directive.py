"""Directives (政令"一键智达"): one issue fans out to a task per target unit, tracked to the end.

A directive is its own aggregate, keyed by ``directive_id`` on the command log the case writer
already serialises (engine/runtime/writer.py), with its own records: the small ``DirectiveState``
(counts, seq, the shared deadlines) and one ``Task`` per target under its own key. A target's
``ack`` rewrites its task and the directive's counts, never the fan-out: bytes per ack do not
grow with the number of targets.

Rules, in one place:

- **Issue** (``IssueDirective``): the city centre may direct any unit; a district centre only
  units inside its district; anyone else is ``unauthorized``. Targets are expanded from the
  topology (``units``, every district, every street, the streets ``within`` districts); codes
  the topology lacks are ``unknown_unit``, named. Events: ``issued``, then ``delivered`` per
  target (each with a ``kind=directive`` order on the target's dispatch topic). A repeated
  ``directive_id`` is a counted duplicate.
- **Ack / report** (``DirectiveUpdate``), from the target or an ancestor acting for it (naming
  it in ``target``). ``ack`` (签收) moves a task to ``acknowledged`` and, if the directive has
  ``report_by``, starts the ``report`` stage; ``report`` (落实反馈) moves it to ``reported``
  (acknowledging first if the target had not). When every task is acknowledged the directive
  is fully acknowledged; when every task is done (reported, or acknowledged when no report is
  asked) it is ``completed``.
- **Deadlines** run on the SLA ladder (core/sla.py) per task: the ``ack`` stage is due
  ``ack_within`` after intake on the policy's clock, the ``report`` stage at ``report_by``; a
  reminder at the warning fraction, then supervision by the target's parent, then one level
  up, to the city centre (the top). Each once: a timer applies only while exactly armed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from engine.core import ids, sla
from engine.core.decide import Duplicate, Ignored, Rejected
from engine.core.model import (
    APPLIED_KEYS_KEPT,
    SUMMARY_CHARS,
    Command,
    DirectiveExpire,
    DirectiveStage,
    DirectiveUpdate,
    Frozen,
    IssueDirective,
)
from engine.core.react import Output
from engine.core.world import World
from engine.data.topology import Topology
from schemas.inbound import Directive, LevelTarget
from schemas.outbound import DirectiveEventMessage, DispatchOrder

TaskStateName = Literal["delivered", "acknowledged", "reported"]
DirectiveEventType = Literal["issued", "delivered", "acknowledged", "reported", "warned",
                             "escalated", "completed"]
# the policy's per-category overrides apply to directives under this name
# (``[categories.directive] supervise = "PT2H"``); otherwise the normal stages
POLICY_CATEGORY = "directive"
POLICY_PRIORITY = "normal"
NAMED = 5  # codes named in a refusal's detail, at most


class DirectiveState(Frozen):
    """What every task shares, and the counts the status answers with: no per-target data."""

    directive_id: str
    issuer: str
    title: str
    issued_at: datetime
    received_at: datetime  # intake time: the deadlines count from here
    ack_due: datetime
    ack_warn_at: datetime | None = None
    report_by: datetime | None = None
    policy: str = ""
    targets: int
    acknowledged: int = 0
    reported: int = 0
    escalated: int = 0
    fully_acknowledged_at: datetime | None = None
    completed_at: datetime | None = None
    seq: int = 0
    through: int = -1  # as CaseState.through: the last command offset applied

    @property
    def asks_report(self) -> bool:
        return self.report_by is not None


class Task(Frozen):
    """One target's receipt of a directive: rewritten by that target's updates only."""

    directive_id: str
    target: str
    state: TaskStateName = "delivered"
    stage: DirectiveStage | None = "ack"  # None once nothing more is due
    due: datetime | None = None
    warn_at: datetime | None = None
    supervisor: str | None = None
    supervise_due: datetime | None = None
    top: bool = False
    escalation_level: int = 0
    acknowledged_at: datetime | None = None
    reported_at: datetime | None = None
    applied: tuple[str, ...] = ()


class DirectiveEvent(Frozen):
    directive_id: str
    seq: int
    type: DirectiveEventType
    at: datetime
    target: str | None = None
    state: TaskStateName | None = None
    stage: DirectiveStage | None = None
    due: datetime | None = None
    warn_at: datetime | None = None
    escalation_level: int = 0
    actor: str | None = None
    note: str | None = None
    late_unit: str | None = None
    supervisor: str | None = None
    supervise_due: datetime | None = None
    top: bool | None = None


@dataclass(frozen=True, slots=True)
class Changed:
    """An accepted directive command: its events, the directive after them and the tasks
    they rewrote (all of them on issue, one otherwise)."""

    events: list[DirectiveEvent]
    directive: DirectiveState
    tasks: list[Task] = field(default_factory=list)
    issue: Directive | None = None  # on issue: the directive, for its orders' text


Decision = Changed | Duplicate | Ignored | Rejected


def next_timer(t: Task) -> sla.Timer | None:
    """The one timer a task has armed (the ladder of core/sla.py, per target)."""
    if t.stage is None:
        return None
    return sla.ladder_timer(t.stage, t.warn_at, t.due, t.supervisor, t.supervise_due, t.top,
                            target=t.target)


def target_of(cmd: Command) -> str | None:
    """The task a command is about, so the writer can load just that one."""
    body = cmd.body
    if isinstance(body, DirectiveUpdate | DirectiveExpire):
        return body.target
    return None


def decide(d: DirectiveState | None, task: Task | None, cmd: Command, world: World
           ) -> Decision:
    body = cmd.body
    if isinstance(body, IssueDirective):
        if d is not None:
            return Duplicate(cmd.key)
        return _issue(cmd, body.directive, world)
    if d is None:
        return Rejected("unknown_case", f"directive {cmd.aggregate} does not exist")
    if isinstance(body, DirectiveUpdate):
        return _update(d, task, cmd, body, world)
    assert isinstance(body, DirectiveExpire)
    return _expire(d, task, cmd, body, world)


# ---- issue ----


def expand_targets(targets: Any, topo: Topology) -> list[str] | Rejected:
    """The target units, in a stable order, or the refusal naming unknown codes."""
    if isinstance(targets, LevelTarget):
        within = targets.within
        if within is not None:
            bad = [c for c in within if c not in topo or topo.level(c) != "district"]
            if bad:
                return Rejected("unknown_unit", f"targets.within names {_codes(bad)}: "
                                "not district codes of the topology")
        if targets.level == "district":
            units = topo.districts if within is None else [c for c in topo.districts
                                                           if c in set(within)]
        else:
            units = topo.streets if within is None else [s for c in within
                                                         for s in topo.streets_of(c)]
        return list(dict.fromkeys(units))
    units = list(dict.fromkeys(targets.units))
    unknown = [c for c in units if c not in topo]
    if unknown:
        return Rejected("unknown_unit", f"unknown target units: {_codes(unknown)}")
    return units


def _codes(codes: list[str]) -> str:
    more = f" and {len(codes) - NAMED} more" if len(codes) > NAMED else ""
    return ", ".join(codes[:NAMED]) + more


def scope(issuer: str, targets: list[str], topo: Topology) -> Rejected | None:
    """The city centre directs anyone; a district centre only units inside its district."""
    if issuer not in topo:
        return Rejected("unauthorized", f"issuer {issuer} is not a unit of the topology")
    level = topo.level(issuer)
    if level == "city":
        return None
    if level != "district":
        return Rejected("unauthorized", f"issuer {issuer} is a {level}: only the city centre "
                        "or a district centre may issue directives")
    outside = [t for t in targets if t != issuer and not topo.is_ancestor(issuer, t)]
    if outside:
        return Rejected("unauthorized", f"district centre {issuer} may direct only units "
                        f"inside its district; {len(outside)} target(s) are not: "
                        f"{_codes(outside)}")
    return None


def _issue(cmd: Command, dv: Directive, world: World) -> Decision:
    topo = world.topology
    targets = expand_targets(dv.targets, topo)
    if isinstance(targets, Rejected):
        return targets
    if not targets:
        return Rejected("schema", "the targets expand to no unit")
    if (refused := scope(dv.issuer, targets, topo)) is not None:
        return refused
    policy = world.policy
    clock = world.clock(policy)
    length = dv.ack_within
    ack_due = clock.add(cmd.at, length)
    warn_at = clock.add(cmd.at, length * policy.warn_fraction)
    d = DirectiveState(
        directive_id=dv.directive_id, issuer=dv.issuer, title=dv.title[:SUMMARY_CHARS],
        issued_at=dv.issued_at, received_at=cmd.at, ack_due=ack_due, ack_warn_at=warn_at,
        report_by=dv.report_by, policy=policy.digest, targets=len(targets),
    )
    ev = _Events(d, cmd.at)
    ev.add("issued", due=ack_due)
    tasks = []
    for t in targets:
        task = Task(directive_id=d.directive_id, target=t, due=ack_due, warn_at=warn_at)
        ev.add("delivered", task, due=ack_due, warn_at=warn_at)
        tasks.append(task)
    return Changed(ev.items, d.model_copy(update={"seq": ev.seq}), tasks, issue=dv)


# ---- ack / report ----


def _update(d: DirectiveState, task: Task | None, cmd: Command, body: DirectiveUpdate,
            world: World) -> Decision:
    u, topo = body.update, world.topology
    if u.actor not in topo:
        return Rejected("unknown_unit", f"actor {u.actor!r} is not in the topology")
    if task is None:
        return Rejected("unauthorized", f"{body.target} is not a target of directive "
                        f"{d.directive_id}" + ("" if u.actor == body.target else
                                               f" (named by {u.actor})"))
    if u.actor != task.target and not topo.is_ancestor(u.actor, task.target):
        return Rejected("unauthorized", f"{u.actor} may not {u.action} for {task.target} on "
                        f"directive {d.directive_id}: neither that target nor an ancestor")
    if cmd.key in task.applied:
        return Duplicate(cmd.key)
    ev = _Events(d, cmd.at)
    if u.action == "ack":
        if task.state != "delivered":
            return Rejected("invalid_transition", f"cannot ack directive {d.directive_id} "
                            f"for {task.target}: its task is {task.state} already")
        task = _acknowledge(d, task, ev, u.actor, world)
    else:  # report
        if task.state == "reported":
            return Rejected("invalid_transition", f"cannot report directive "
                            f"{d.directive_id} for {task.target}: reported already")
        if task.state == "delivered":  # a report is also the receipt
            task = _acknowledge(d, task, ev, u.actor, world)
        task = _done(task, reported_at=cmd.at, state="reported")
        ev.add("reported", task, actor=u.actor, note=u.note)
    task = task.model_copy(update={"applied": (*task.applied, cmd.key)[-APPLIED_KEYS_KEPT:]})
    return _changed(ev, task, cmd.at)


def _acknowledge(d: DirectiveState, task: Task, ev: _Events, actor: str, world: World
                 ) -> Task:
    at = ev.at
    if d.report_by is not None:  # the report stage starts now, due at report_by
        warn_at = None
        if d.report_by > at:
            policy = world.policy_for(d.policy)
            warn_at = world.clock(policy).at_fraction(at, d.report_by, policy.warn_fraction)
        task = task.model_copy(update={
            "state": "acknowledged", "acknowledged_at": at, "stage": "report",
            "due": d.report_by, "warn_at": warn_at, "supervisor": None,
            "supervise_due": None, "top": False})
    else:
        task = _done(task, acknowledged_at=at, state="acknowledged")
    ev.add("acknowledged", task, actor=actor)
    return task


def _done(task: Task, **changes: Any) -> Task:
    """A task with nothing more due: its timers and supervision end."""
    return task.model_copy(update={"stage": None, "due": None, "warn_at": None,
                                   "supervisor": None, "supervise_due": None, "top": False,
                                   **changes})


def _changed(ev: _Events, task: Task, at: datetime) -> Changed:
    """Fold the events' counts into the directive; ``completed`` when every task is done."""
    d = ev.d
    acked = d.acknowledged + sum(e.type == "acknowledged" for e in ev.items)
    reported = d.reported + sum(e.type == "reported" for e in ev.items)
    escalated = d.escalated + sum(e.type == "escalated" for e in ev.items)
    changes: dict[str, Any] = {"acknowledged": acked, "reported": reported,
                               "escalated": escalated}
    if acked == d.targets and d.fully_acknowledged_at is None:
        changes["fully_acknowledged_at"] = at
    done = reported if d.asks_report else acked
    if done == d.targets and d.completed_at is None:
        ev.add("completed")
        changes["completed_at"] = at
    changes["seq"] = ev.seq
    return Changed(ev.items, d.model_copy(update=changes), [task])


# ---- deadlines ----


def _expire(d: DirectiveState, task: Task | None, cmd: Command, body: DirectiveExpire,
            world: World) -> Decision:
    armed = sla.Timer(body.timer, body.stage, body.instant, body.target)
    if task is None or next_timer(task) != armed:
        return Ignored(f"timer {body.timer} {body.stage}@{body.instant.isoformat()} of "
                       f"{body.target} is no longer armed")
    ev = _Events(d, cmd.at)
    if armed.kind == "warn":  # 催办 the target
        task = task.model_copy(update={"warn_at": None})
        ev.add("warned", task, late_unit=task.target)
        return _changed(ev, task, cmd.at)
    # 督办: the stage's due (or the supervisor's deadline) passed, one level up
    late = task.target if armed.kind == "due" else (task.supervisor or task.target)
    parent = world.topology.parent(late)
    changes: dict[str, Any] = {"warn_at": None, "escalation_level": task.escalation_level + 1}
    if parent is None:  # the city centre itself is late: recorded, nothing higher
        changes.update(top=True, supervise_due=None)
    else:
        policy = world.policy_for(d.policy)
        changes.update(supervisor=parent, supervise_due=world.clock(policy).add(
            armed.at, policy.deadline(POLICY_CATEGORY, POLICY_PRIORITY, "supervise")))
    task = task.model_copy(update=changes)
    ev.add("escalated", task, late_unit=late, supervisor=parent,
           supervise_due=task.supervise_due, top=parent is None)
    return _changed(ev, task, cmd.at)


class _Events:
    """Gap-free seq per directive; per-target events repeat the task's fields."""

    def __init__(self, d: DirectiveState, at: datetime) -> None:
        self.d = d
        self.seq = d.seq
        self.at = at
        self.items: list[DirectiveEvent] = []

    def add(self, type_: DirectiveEventType, task: Task | None = None, **fields: Any) -> None:
        self.seq += 1
        if task is not None:
            fields = {"target": task.target, "state": task.state, "stage": task.stage,
                      "due": task.due, "escalation_level": task.escalation_level, **fields}
        self.items.append(DirectiveEvent(directive_id=self.d.directive_id, seq=self.seq,
                                         type=type_, at=self.at, **fields))


# ---- what the world is told ----


def react(d: DirectiveState, events: list[DirectiveEvent], topo: Topology,
          issue: Directive | None = None) -> list[Output]:
    """``directive.events`` for every event; a ``kind=directive`` order per delivered task,
    a reminder to a warned target, supervision to the unit above a late one."""
    out: list[Output] = []
    for e in events:
        msg = DirectiveEventMessage(
            event_id=ids.directive_event_id(d.directive_id, e.seq),
            directive_id=d.directive_id, seq=e.seq,
            type=e.type, target=e.target, state=e.state, at=e.at, due=e.due, stage=e.stage,
            escalation_level=e.escalation_level, actor=e.actor, note=e.note,
            late_unit=e.late_unit, supervisor=e.supervisor, supervise_due=e.supervise_due,
            top=e.top, issuer=d.issuer if e.type == "issued" else None,
            title=d.title if e.type == "issued" else None,
            targets=d.targets if e.type == "issued" else None)
        out.append(Output("directive_events", d.directive_id, msg, msg.event_id,
                          f"zhida.directive.{e.type}"))
        if e.target is None:
            continue
        if e.type == "delivered":
            out.append(_order(d, e, e.target, "directive", topo, issue))
        elif e.type == "warned":
            out.append(_order(d, e, e.target, "reminder", topo))
        elif e.type == "escalated" and e.supervisor:
            out.append(_order(d, e, e.supervisor, "supervision", topo))
    return out


def _order(d: DirectiveState, e: DirectiveEvent, to: str, kind: str, topo: Topology,
           issue: Directive | None = None) -> Output:
    order_id = ids.directive_order_id(d.directive_id, e.seq, kind, to)
    order = DispatchOrder(
        order_id=order_id, kind=kind, target=to, directive_id=d.directive_id,
        issuer=d.issuer, stage=e.stage or "ack",
        due=e.supervise_due if kind == "supervision" else e.due,
        escalation_level=e.escalation_level, summary=d.title,
        body=issue.body if issue is not None else None,
        late_unit=e.late_unit if kind == "supervision" else None, issued_at=e.at,
    )
    return Output("dispatch", to, order, order_id, f"zhida.dispatch.{kind}",
                  district=topo.dispatch_key(to))


# ---- the status (GET /directives/{id}) ----


def status(d: DirectiveState, tasks: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """CONTRACT.md "Directives and their tasks": counts from the directive, one entry per
    task from its stored record (plain dicts: 1,031 of them are read per request)."""
    entries = []
    late = 0
    for t in tasks:
        due = t.get("due")
        is_late = due is not None and t.get("stage") is not None and as_time(due) < now
        late += is_late
        entries.append({"target": t["target"], "state": t.get("state", "delivered"),
                        "acknowledged_at": t.get("acknowledged_at"),
                        "reported_at": t.get("reported_at"), "due": due, "late": is_late,
                        "escalation_level": t.get("escalation_level", 0)})
    return {
        "directive_id": d.directive_id, "issuer": d.issuer, "title": d.title,
        "issued_at": d.issued_at.isoformat(), "targets": d.targets, "delivered": d.targets,
        "acknowledged": d.acknowledged, "reported": d.reported, "late": late,
        "escalated": d.escalated,
        "ack_ratio": round(d.acknowledged / d.targets, 4) if d.targets else 0.0,
        "fully_acknowledged_at": (d.fully_acknowledged_at.isoformat()
                                  if d.fully_acknowledged_at else None),
        "completed_at": d.completed_at.isoformat() if d.completed_at else None,
        "ack_due": d.ack_due.isoformat(),
        "report_by": d.report_by.isoformat() if d.report_by else None,
        "tasks": entries,
    }


def as_time(v: Any) -> datetime:
    """A stored time (a datetime, or its ISO text in a task read as a dict)."""
    return v if isinstance(v, datetime) else datetime.fromisoformat(v)


def issuer_figures(directives: list[DirectiveState]) -> dict[str, Any]:
    """Directive figures of one issuing unit (GET /units/{code}/stats): how many it issued,
    the share of their tasks acknowledged, and the time to full acknowledgement (median, of
    those fully acknowledged), in seconds."""
    targets = sum(d.targets for d in directives)
    acked = sum(d.acknowledged for d in directives)
    full = sorted((d.fully_acknowledged_at - d.received_at).total_seconds()
                  for d in directives if d.fully_acknowledged_at is not None)
    return {
        "issued": len(directives),
        "tasks": targets,
        "acknowledged": acked,
        "ack_ratio": round(acked / targets, 4) if targets else None,
        "fully_acknowledged": len(full),
        "time_to_full_ack_seconds": full[len(full) // 2] if full else None,
        "escalated": sum(d.escalated for d in directives),
    }
