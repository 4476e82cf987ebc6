"""Supervision figures (CONTRACT.md "Supervision figures"), kept incrementally from case events.

The case writer calls ``tally`` once per accepted command and adds the ``Delta`` to two kinds
of records of its partition: one per day (``{unit: counters}`` for the day, in the city's time
zone) and one "now" record (``{unit: {backlog, overdue}}``). ``GET /units/{code}/stats`` sums
those records across partitions and days and calls ``stats``, which rolls the unit and
everything below it up and turns counts into rates. No case is ever scanned for a figure.
``recount`` gives the same counters from the events on ``zhida.case.events`` alone (all but
``disputes``, which the topic does not carry): the check from outside, and ``zhida replay``'s
"live" column.

The unit of account is the **order** (工单: the case as held by one unit, from the moment it is
sent there until it leaves or ends): a unit is judged on the work it was given. Each order is
acknowledged at most once and resolved at most once, so at every unit and every roll-up
``responded <= received`` and ``resolved <= received`` over any long enough period. Every
formula, the unit each event is credited to and why, and the known limits are in
docs/figures.md. Pure: no I/O, no clock; the time zone is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from engine.core.model import CaseEvent, CaseState
from engine.data.topology import Topology

# ---- the counters ----

DAY_COUNTERS: tuple[str, ...] = (
    "created",  # new cases, at the unit first placed with (city centre for triage)
    "received",  # orders: first dispatch, triage, return (to the parent), assign, reopen
    "responded",  # orders acknowledged (签收), at the acknowledging holder
    "responded_on_time",  # ... acknowledged by the stage's due
    "returned",  # orders handed back up (退单), at the returning unit
    "resolved",  # orders reported done, at the holder
    "resolved_on_time",  # ... by the resolve stage's due
    "rated",  # rounds of citizen feedback settled: satisfied + basically + unsatisfied
    "satisfied",
    "basically_satisfied",
    "unsatisfied",  # settled unsatisfied: the case reopens
    "unrated",  # feedback window closed with no rating
    "verified",  # sensed cases closed by the level above's verification
    "reopened",
    "closed",
    "warnings",  # 催办 (yellow), at the unit reminded
    "escalations",  # 督办 (red), at the unit that missed the deadline
    "merged",  # reports that joined an open case (一事多诉, repeated alarms)
    "disputes",  # 扯皮: returns that made a dispute, at the arbiter the case went to
    "precedent_dispatches",  # first dispatches a precedent routed, at the unit it chose
)
NOW_COUNTERS: tuple[str, ...] = ("backlog", "overdue", "yellow")

# holder changes and reopenings: each sends a ``kind=case`` order (CONTRACT.md, case states)
ORDER_EVENTS = frozenset({"dispatched", "triaged", "returned", "assigned", "reopened"})
# events that start a stage: the stage's due comes with them (mirrors decide.STAGE_STARTS)
_DUE_SETTERS = frozenset({"dispatched", "triaged", "acknowledged", "returned", "assigned",
                          "resolved", "reopened", "resumed", "merged"})
_OUTCOMES = {"satisfied": ("rated", "satisfied"),
             "basically_satisfied": ("rated", "basically_satisfied"),
             "unrated": ("unrated",), "verified": ("verified",)}


@dataclass(frozen=True)
class Delta:
    """What one command adds: day counters by (unit, local day), now counters by unit."""

    days: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    now: dict[str, dict[str, int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.days or self.now)


def day_of(at: datetime, tz: ZoneInfo) -> str:
    """The local calendar day an instant falls on ("YYYY-MM-DD"); naive instants are UTC."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(tz).date().isoformat()


# ---- now: backlog and overdue, a function of the state alone ----


def is_open(s: CaseState) -> bool:
    return s.state != "closed"


def is_overdue(s: CaseState) -> bool:
    """Open and its current stage's due has fired (督办 started and not ended by a new stage).

    ``supervisor`` is set by the stage's first breach and ``top`` by a breach at the city
    centre; both are cleared when a stage starts (completion, new holder, reopening) and the
    case stops being open when it closes. Suspension keeps a late case late.
    """
    return is_open(s) and (s.supervisor is not None or bool(s.top))


def is_yellow(s: CaseState) -> bool:
    """Open, its stage's reminder (催办) sent, and not yet past due: the board's yellow."""
    return is_open(s) and s.warned and not is_overdue(s)


def now_counts(s: CaseState | None) -> dict[str, dict[str, int]]:
    """The now counters one case contributes: +1 backlog (and overdue, or yellow) at its
    holder.

    Also how to rebuild a partition's now record from its case states (a backfill).
    """
    if s is None or not is_open(s):
        return {}
    c = {"backlog": 1}
    if is_overdue(s):
        c["overdue"] = 1
    elif is_yellow(s):
        c["yellow"] = 1
    return {s.unit: c}


# ---- tally ----


def tally(before: CaseState | None, after: CaseState, events: list[CaseEvent],
          tz: ZoneInfo) -> Delta:
    """Counters one accepted command adds, from its events and the states around it.

    Day counters are credited per event to the unit it concerns (docs/figures.md has the
    table). Now counters are ``now_counts(after) - now_counts(before)``: they telescope, so
    the sum of every delta of a case equals its final state's contribution, exactly.
    """
    days = day_credits(before, events, tz)
    now: dict[str, dict[str, int]] = {}
    merge(now, now_counts(after))
    merge(now, _negated(now_counts(before)))
    return Delta(days, now)


def day_credits(before: CaseState | None, events: Iterable[CaseEvent], tz: ZoneInfo
                ) -> dict[tuple[str, str], dict[str, int]]:
    """``tally``'s day part alone. Why: a bulk run (``zhida replay``, engine/core/replay.py)
    takes the now part once from the last states (``now_counts``), not per command."""
    return _credit(events, tz, before.unit if before else None,
                   before.stage if before else None, before.due if before else None)


def _credit(events: Iterable[CaseEvent], tz: ZoneInfo, holder: str | None, stage: str | None,
            due: datetime | None) -> dict[tuple[str, str], dict[str, int]]:
    """Day counters of ``events`` by (unit, local day), given the holder, stage and due just
    before the first; each event then sets them for the next. ``tally`` starts from the state
    before a command, ``recount`` from nothing before a case's first event: one set of rules."""
    days: dict[tuple[str, str], dict[str, int]] = {}

    def add(unit: str | None, at: datetime, *names: str) -> None:
        if unit is None:
            return
        c = days.setdefault((unit, day_of(at, tz)), {})
        for n in names:
            c[n] = c.get(n, 0) + 1

    for e in events:
        t = e.type
        if t == "created":
            add(e.unit, e.at, "created")
        elif t in ORDER_EVENTS:
            add(e.unit, e.at, "received")
            if t == "returned":
                add(holder, e.at, "returned")
                if e.dispute:
                    add(e.unit, e.at, "disputes")
            elif t == "dispatched" and e.precedent:
                add(e.unit, e.at, "precedent_dispatches")
            elif t == "reopened":
                add(e.unit, e.at, "rated", "unsatisfied", "reopened")
        elif t == "acknowledged":
            add(e.unit, e.at, "responded")
            if _in_time(e.at, due):
                add(e.unit, e.at, "responded_on_time")
        elif t == "resolved":
            add(e.unit, e.at, "resolved")
            if stage == "resolve" and _in_time(e.at, due):
                add(e.unit, e.at, "resolved_on_time")
        elif t == "closed":
            add(e.unit, e.at, "closed", *_OUTCOMES.get(e.outcome or "", ()))
        elif t == "warned":
            add(e.late_unit or e.unit, e.at, "warnings")
        elif t == "escalated":
            add(e.late_unit or e.unit, e.at, "escalations")
        elif t == "merged":
            add(e.unit, e.at, "merged")
        holder = e.unit
        if t in _DUE_SETTERS:
            stage, due = e.stage, e.due
        elif t == "closed":
            stage, due = None, None
    return days


def _in_time(at: datetime, due: datetime | None) -> bool:
    """At or before the due; a stage without a due cannot be late."""
    return due is None or at <= due


def _negated(c: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    return {k: {n: -v for n, v in inner.items()} for k, inner in c.items()}


def merge(into: dict[str, dict[str, int]], add: Mapping[str, Mapping[str, int]]) -> None:
    """Add counters in place; a counter that sums to zero and a key left empty are dropped,
    so stored records hold only what is non-zero."""
    for key, counters in add.items():
        inner = into.get(key)
        if inner is None:
            inner = into[key] = {}
        for name, v in counters.items():
            total = inner.get(name, 0) + v
            if total:
                inner[name] = total
            else:
                inner.pop(name, None)
        if not inner:
            del into[key]


# ---- recount: the same counters from ``zhida.case.events`` alone ----

# events that start a stage and so end its reminder and supervision (decide.STAGE_STARTS)
_STAGE_STARTS = frozenset({"dispatched", "triaged", "acknowledged", "returned", "assigned",
                           "resolved", "reopened"})
# what a case.events message and the core's event both carry; the message's ``priority`` is
# the case's, not a merge's raise, and ``opened``/``policy``/``group`` never leave the engine
_EVENT_FIELDS = frozenset(CaseEvent.model_fields) - {"priority", "opened", "policy", "group"}

EventLike = CaseEvent | BaseModel | Mapping[str, Any]
Days = dict[str, dict[str, dict[str, int]]]  # "YYYY-MM-DD" -> {unit -> counters}


def as_event(m: EventLike) -> CaseEvent:
    """The core's event from one ``zhida.case.events`` message: a ``CaseEventMessage``
    (schemas/outbound.py), its JSON body as a dict, or already a ``CaseEvent``."""
    if isinstance(m, CaseEvent):
        return m
    data = m.model_dump() if isinstance(m, BaseModel) else m
    return CaseEvent.model_validate(
        {k: v for k, v in data.items() if k in _EVENT_FIELDS and v is not None})


def recount(events_by_case: Mapping[str, Iterable[EventLike]], tz: ZoneInfo,
            now: datetime | None = None) -> tuple[Days, dict[str, dict[str, int]]]:
    """The day and now counters the writer keeps incrementally, recounted from each case's
    events alone: ``(days, now)`` in the shapes ``stats`` takes.

    Why: the writer's figures are exact only if every delta was stored with its state
    (docs/figures.md, "Known limits"); a recount from the public trail checks that from
    outside (bench/cityday.py) and gives ``zhida replay`` its "live" column. Pure: no clock,
    no state; ``now`` (default: no cut) keeps each case's events up to the first one after
    it, so the figures are those as they stood then.

    The day part uses the same crediting rules as ``tally``: the holder, stage and due before
    each event come from the events before it, which is what the state held between two
    commands. The now part is each case's last state: open unless its last event closed it;
    overdue when an ``escalated`` event came after the last stage start; yellow when a
    ``warned`` one did and it is not overdue. Events may come in any order and repeated (a
    redelivered copy): each case's are taken by ``seq``, one per ``seq``.

    Every counter but ``disputes``: a ``zhida.case.events`` message does not say which return
    made a dispute (``zhida.insights`` does), so only the core's own events count them here.
    """
    days: Days = {}
    current: dict[str, dict[str, int]] = {}
    for events in events_by_case.values():
        history = _history(events, now)
        if not history:
            continue
        for (unit, day), c in _credit(history, tz, None, None, None).items():
            merge(days.setdefault(day, {}), {unit: c})
        merge(current, _now_of(history))
    return days, current


def _history(events: Iterable[EventLike], now: datetime | None) -> list[CaseEvent]:
    """One case's events by ``seq``, the first copy of each, up to the first after ``now``."""
    by_seq: dict[int, CaseEvent] = {}
    for m in events:
        e = as_event(m)
        by_seq.setdefault(e.seq, e)
    out = []
    for seq in sorted(by_seq):
        e = by_seq[seq]
        if now is not None and _utc(e.at) > _utc(now):
            break
        out.append(e)
    return out


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _now_of(history: list[CaseEvent]) -> dict[str, dict[str, int]]:
    """``now_counts`` of the state the history leaves, from the events alone."""
    late = warned = False
    for e in history:
        if e.type in _STAGE_STARTS or e.type == "closed":
            late = warned = False
        elif e.type == "escalated":
            late = True
        elif e.type == "warned":
            warned = True
    last = history[-1]
    if last.state == "closed":
        return {}
    c = {"backlog": 1}
    if late:
        c["overdue"] = 1
    elif warned:
        c["yellow"] = 1
    return {last.unit: c}


# ---- stats: roll-up and rates ----


def rate(num: int, den: int) -> float | None:
    """``num / den`` to 4 decimals; None when nothing was counted (not 0 and not 1)."""
    return round(num / den, 4) if den else None


def figures(c: Mapping[str, int]) -> dict[str, Any]:
    """The contract's figures from summed counters (formulas: docs/figures.md)."""
    g = c.get
    received, responded, resolved = g("received", 0), g("responded", 0), g("resolved", 0)
    rated = g("rated", 0)
    satisfied = g("satisfied", 0) + g("basically_satisfied", 0)
    reopened = g("reopened", 0)
    return {
        "received": received,
        "responded": responded,
        "response_rate": rate(responded, received),
        "resolved": resolved,
        "resolution_rate": rate(resolved, received),
        "rated": rated,
        "satisfied": satisfied,
        "satisfaction_rate": rate(satisfied, rated),
        "on_time_ack_rate": rate(g("responded_on_time", 0), responded),
        "on_time_resolve_rate": rate(g("resolved_on_time", 0), resolved),
        "overdue": g("overdue", 0),
        "yellow": g("yellow", 0),
        "reopened": reopened,
        "reopen_rate": rate(reopened, resolved),
        "escalations": g("escalations", 0),
        "backlog": g("backlog", 0),
    }


# counted per day like the others (``_credit``) and answered by ``stats_of``, but not part of
# ``figures``: that is what a recount of ``zhida.case.events`` reproduces (``zhida replay``'s
# live column, bench/cityday_check.py), and the topic does not say which return was a dispute
INSIGHT_FIGURES: tuple[str, ...] = ("disputes", "precedent_dispatches")


def insight_figures(c: Mapping[str, int]) -> dict[str, int]:
    """扯皮 and precedents from summed counters (docs/figures.md, "Formulas"): ``disputes``,
    returns that made a dispute, credited to the arbiter; ``precedent_dispatches``, cases a
    precedent routed, credited to the unit it routed them to."""
    return {n: c.get(n, 0) for n in INSIGHT_FIGURES}


def _add(into: dict[str, int], c: Mapping[str, int]) -> None:
    for n, v in c.items():
        into[n] = into.get(n, 0) + v


def per_unit(start: date, end: date, days: Mapping[str, Mapping[str, Mapping[str, int]]],
             now: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Each unit's own counters: its day counters over [start, end] plus its now counters."""
    lo, hi = start.isoformat(), end.isoformat()  # ISO days order as strings do
    out: dict[str, dict[str, int]] = {}
    for day, units in days.items():
        if lo <= day <= hi:
            for code, c in units.items():
                _add(out.setdefault(code, {}), c)
    for code, c in now.items():
        _add(out.setdefault(code, {}), c)
    return out


def rollup(unit: str, own: Mapping[str, Mapping[str, int]], topology: Topology
           ) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Counters of ``unit``'s subtree, and of each direct child's subtree.

    Walks each counted unit's ancestor chain (depth <= 4), so the cost is the number of units
    with counters, not the size of the tree. Codes not in the topology are left out.
    """
    total: dict[str, int] = {}
    children: dict[str, dict[str, int]] = {c: {} for c in topology.children(unit)}
    for code, c in own.items():
        if code not in topology:
            continue
        chain: Iterable[str] = (code, *topology.ancestors(code))
        below: str | None = None
        for link in chain:
            if link == unit:
                _add(total, c)
                if below is not None:
                    _add(children[below], c)
                break
            below = link
    return total, children


def stats(unit: str, start: date, end: date,
          days: Mapping[str, Mapping[str, Mapping[str, int]]],
          now: Mapping[str, Mapping[str, int]], topology: Topology) -> dict[str, Any]:
    """``GET /units/{code}/stats``: the unit and everything below it over [start, end]
    (local days, inclusive), and the same figures for each direct child, for drill-down.

    ``days`` is "YYYY-MM-DD" -> {unit -> counters} and ``now`` {unit -> counters}, both
    already summed across partitions. ``overdue`` and ``backlog`` are as of now, whatever the
    period. KeyError for a unit not in the topology; ValueError for ``start`` after ``end``.
    """
    return stats_of(unit, start, end, per_unit(start, end, days, now), topology)


def stats_of(unit: str, start: date, end: date, own: Mapping[str, Mapping[str, int]],
             topology: Topology) -> dict[str, Any]:
    """``stats`` from each unit's own counters already summed over the period and the
    partitions (``per_unit``): what the several workers' shares add up to
    (engine/runtime/http/citywide.py). Rates come from the summed counts, never from rates."""
    if unit not in topology:
        raise KeyError(unit)
    if start > end:
        raise ValueError(f"from {start.isoformat()} is after to {end.isoformat()}")
    total, children = rollup(unit, own, topology)
    return {
        "unit": unit,
        "from": start.isoformat(),
        "to": end.isoformat(),
        **figures(total),
        **insight_figures(total),
        "children": [{"unit": code, **figures(c), **insight_figures(c)}
                     for code, c in children.items()],
    }
