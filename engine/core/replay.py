"""``zhida replay``'s pure heart: recorded case commands decided again, and figures per unit.

Why: a change to the SLA policy is a bet until it is live (issue 25). The core is pure and its
clock is in every command, so last month's recorded inputs can be decided again offline, under
the policy that ran them (the exactness check: the same events) or under a candidate (what
would have happened). CONTRACT.md "Replay and what-if" is the contract; engine/tools/ops/replay.py
reads the brokers and prints.

How, per command, as the single writer (engine/runtime/writer.py) does it: ``decide`` then
``apply``; duplicates are caught by the state (``applied``/``joins``); a join that reaches a
closed case bounces to the report's own case at once. ``react`` is not called: replay needs
events, not outputs. Merge-group commands are skipped: the group's forwarded
``JoinCase``/``OpenCase`` are on the log on the case's own key. Directive commands are decided
again as the writer does (engine/core/replay_directives.py), their task timers on the same
clock as the cases'.

Deadlines: without a candidate (``recorded_firings=True``) the live run's ``Expire`` commands
are decided where they are on the log, so the events equal the live ones. With a candidate
they are dropped (``DirectiveExpire`` too) and a simulated ticker fires each case's one armed
timer (``sla.next_timer``) and each directive task's (``directive.next_timer``) at its due
instant, in due order (then case or directive id and target, as the timer index sorts),
before any input at or after that instant, and at the end every timer due up to ``until``.
Unit actions stay as recorded whatever the candidate says: one its state refuses is counted in
``rejected``.
"""

from __future__ import annotations

import gc
import heapq
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.core import figures as fig
from engine.core import sla
from engine.core.decide import Accepted, Bounce, Duplicate, Ignored, Rejected, apply, decide
from engine.core.directive import DirectiveEvent, DirectiveState
from engine.core.model import (
    DIRECTIVE_KINDS,
    GROUP_KINDS,
    CaseEvent,
    CaseState,
    Command,
    Expire,
    JoinCase,
    OpenCase,
)
from engine.core.replay_directives import Directives
from engine.core.world import World
from engine.data.topology import Topology
from schemas.outbound import CaseEventMessage

LEVELS = ("district", "city", "top")  # where a supervision (督办) went
# an OpenCase the live writer forwarded after a bounce, for a report the candidate joined
OPEN_JOINED = "open_joined"
# what a ``zhida.case.events`` message says of an event as the core does: its ``priority``
# is the case's and its ``boundary`` is on every event of a boundary case, so neither is here
PUBLISHED_FIELDS = (frozenset(CaseEvent.model_fields) & frozenset(CaseEventMessage.model_fields)
                    ) - {"priority", "boundary"}


@dataclass(frozen=True, slots=True)
class Counts:
    """The writer's figure records for a set of cases: ``days`` ("YYYY-MM-DD" → {unit →
    counters}) and ``now`` ({unit → counters}), as ``figures.stats`` takes them, the day part
    also holding ``escalations_<level>`` (``LEVELS``) beside ``escalations``."""

    days: fig.Days = field(default_factory=dict)
    now: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Replayed:
    """What replay decided: each case's candidate history and last state, and what it left."""

    events: dict[str, list[CaseEvent]]  # candidate history by case id, seq order
    states: dict[str, CaseState]  # each case's last candidate state
    # commands not replayed, by body kind: group_*, ``expire`` and ``directive_expire`` when
    # the candidate's clock fires instead, and ``open_joined`` (OPEN_JOINED)
    skipped: Counter[str]
    rejected: Counter[str] = field(default_factory=Counter)  # refused inputs, by reason
    duplicates: int = 0  # repeated inputs (redeliveries): nothing changed, as in the writer
    ignored: int = 0  # stale timer firings (recorded ones, in exact mode)
    bounced: int = 0  # joins that reached a closed case and opened the report's own
    fired: int = 0  # simulated timer firings (candidate mode)
    decided: int = 0  # commands decided, firings and bounces included
    after_until: int = 0  # commands after ``until``, and their case's next ones: not replayed
    # the candidate's figure records, tallied per command as the writer does: what
    # ``figures_of`` reads, so the figures need no ``events`` (``keep_events=False``)
    counts: Counts = field(default_factory=Counts)
    # the directives' last states by directive id, their histories (``keep_events``) and
    # reminders (warned events) by directive id: what ``directive_figures`` reads
    directives: dict[str, DirectiveState] = field(default_factory=dict)
    directive_events: dict[str, list[DirectiveEvent]] = field(default_factory=dict)
    directive_reminders: Counter[str] = field(default_factory=Counter)


def replay(commands: Iterable[Command], world: World, *, recorded_firings: bool,
           until: datetime, opened_under: Mapping[str, str] | None = None,
           keep_events: bool = True) -> Replayed:
    """The recorded case commands (as the writer read them from zhida.case.commands, in the
    order given: the caller sorts them by (cmd.at, partition, offset)) decided again.

    Each case's commands must come in the writer's order, its partition's offsets:
    ``in_log_order`` merges the partitions that way. A sort by ``at`` is the same only while
    every case's ``at`` rises with its offsets, which a downtime breaks (the ticker's late
    firings stamped before the backlog of inputs stamped with their records' times).

    ``recorded_firings=True``: the live policy versions (``world.policy`` in force, the others
    in ``world.policies``) with the recorded ``Expire`` commands: exact. ``opened_under``
    (case id → the policy digest its live ``created`` event froze; directive id → its live
    state's ``policy``) then decides each ``OpenCase`` and ``IssueDirective`` under that
    version, so a period spanning a policy change stays exact.
    ``recorded_firings=False``: ``world.policy`` is the candidate; every case opens under it
    and its timers fire on a simulated clock (module docstring). Commands later than
    ``until`` are not replayed; the clock stops there.

    Every accepted command is also tallied into ``Replayed.counts`` (``figures.tally``, the
    time zone of ``world.policy.calendar``); ``keep_events=False`` keeps no history (about
    2 kB an event: a month of a city holds millions), for figures only. The cyclic garbage
    collector is paused meanwhile (``paused_gc``).
    """
    r = _Replayer(world, recorded_firings, _utc(until), opened_under or {}, keep_events)
    with paused_gc():
        for cmd in commands:
            r.command(cmd)
        return r.finish()


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off for a bulk run, back as it was after.

    Why: replay holds millions of long-lived objects (states, events, commands) and every full
    collection walks them all: a 15,000-case run took 2.8 times as long with it on, and the
    cost grows with the month. Reference counting still frees everything the core drops (its
    models hold no cycles). A tool reading a month of records may wrap its reading too."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _Replayer:
    """The writer's decide/apply loop over dicts, with a heap for the simulated ticker."""

    def __init__(self, world: World, recorded: bool, until: datetime,
                 opened_under: Mapping[str, str], keep_events: bool = True) -> None:
        self.world = world
        self.recorded = recorded
        self.until = until
        self.keep_events = keep_events
        self.tz = ZoneInfo(world.policy.calendar.timezone)
        self.tally = Counts()
        self.opened_under = opened_under if recorded else {}
        self.opening_worlds: dict[str, World] = {}
        self.states: dict[str, CaseState] = {}
        self.events: dict[str, list[CaseEvent]] = {}
        self.skipped: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.counts = Counter[str]()
        # the simulated ticker: each case's (directive task's: "<id>\0<target>") armed
        # timer, and a heap of (due, case or directive id, task target or "", n, timer)
        # whose stale entries are dropped when popped (the case's or task's timer moved)
        self.armed: dict[str, sla.Timer] = {}
        self.heap: list[tuple[datetime, str, str, int, sla.Timer]] = []
        self.pushed = 0
        self.joined: dict[str, str] = {}  # own case id → the report key joined elsewhere
        self.stopped: set[str] = set()  # cases (directives) with a command after ``until``
        self.directives = Directives(world, recorded, keep_events, self.counts, self.rejected,
                                     self._opening_world, self.opened_under, self._arm_task)

    def command(self, cmd: Command) -> None:
        kind = cmd.body.kind
        if kind in GROUP_KINDS:
            self.skipped[kind] += 1
            return
        if not self.recorded and kind in ("expire", "directive_expire"):  # the clock fires
            self.skipped[kind] += 1
            return
        if cmd.at > self.until or cmd.aggregate in self.stopped:
            self._after_until(cmd)
            return
        if not self.recorded:
            self.fire(cmd.at)
        if kind in DIRECTIVE_KINDS:
            self.directives.decide(cmd)
        else:
            self.decide(cmd)

    def _after_until(self, cmd: Command) -> None:
        """Not replayed: each case stays as it stood at ``until``, its history up to the first
        event after it, as ``figures.recount`` cuts a live one. So a later command that would
        change the case stops it (what the log holds after it, an input delivered again with
        its first time, is not replayed either); one that would not is passed over."""
        self.counts["after_until"] += 1
        case_id = cmd.aggregate
        if case_id in self.stopped:
            return
        if cmd.body.kind in DIRECTIVE_KINDS:
            if self.directives.changes(cmd):
                self.stopped.add(case_id)
            return
        d = decide(self.states.get(case_id), cmd, self.world)
        if isinstance(d, Accepted):
            self.stopped.add(case_id)

    def fire(self, now: datetime) -> None:
        """Every armed timer due at or before ``now``, in due order, as the ticker sends it
        (engine/runtime/timers.py: an ``Expire`` naming the timer, a ``DirectiveExpire`` for a
        task's; ``at`` its instant)."""
        heap, armed = self.heap, self.armed
        while heap and heap[0][0] <= now:
            _, case_id, target, _, t = heapq.heappop(heap)
            if target:
                if self.directives.armed(case_id, target) == t:
                    self.directives.fire(case_id, t)
                continue
            if armed.get(case_id) != t:
                continue  # the case moved on: the writer would ignore this firing
            self.counts["fired"] += 1
            self.decide(Command.model_construct(
                aggregate=case_id, at=t.at, origin=None,
                body=Expire.model_construct(timer=t.kind, stage=t.stage, instant=t.at)),
                recorded=False)

    def decide(self, cmd: Command, *, recorded: bool = True) -> None:
        """``recorded``: read from the log (not a firing or a bounce replay made itself)."""
        self.counts["decided"] += 1
        case_id, body = cmd.aggregate, cmd.body
        state = self.states.get(case_id)
        world = self.world
        if state is None and isinstance(body, OpenCase):
            if recorded and self.joined.get(case_id) == body.key:
                # the live run bounced the report to its own case; the candidate joined it
                self.skipped[OPEN_JOINED] += 1
                return
            digest = self.opened_under.get(case_id)
            if digest:
                world = self._opening_world(digest)
        d = decide(state, cmd, world)
        if isinstance(d, Accepted):
            new = apply(state, cmd, d.events)
            self.states[case_id] = new
            if self.keep_events:
                history = self.events.get(case_id)
                if history is None:
                    self.events[case_id] = history = []
                history.extend(d.events)
            self._count(state, d.events)
            if isinstance(body, JoinCase) and not self.recorded:
                self.joined[body.own_case_id] = body.open.key
            if not self.recorded:
                self._arm(case_id, new)
        elif isinstance(d, Bounce):  # the writer forwards it: the report opens its own case
            self.counts["bounced"] += 1
            self.decide(d.command, recorded=False)
        elif isinstance(d, Duplicate):
            self.counts["duplicates"] += 1
        elif isinstance(d, Ignored):
            self.counts["ignored"] += 1
        else:
            assert isinstance(d, Rejected)
            self.rejected[d.reason] += 1

    def _count(self, before: CaseState | None, events: list[CaseEvent]) -> None:
        """The writer's day records (engine/runtime/writer.py ``_count_figures``); the now
        record is the last states' (``finish``): the writer's deltas telescope to it."""
        days = self.tally.days
        credits = fig.day_credits(before, events, self.tz)
        if any(e.type == "escalated" for e in events):
            for key, c in _levels(events, self.tz, self.world.topology).items():
                add = credits.setdefault(key, {})
                for name, v in c.items():
                    add[name] = add.get(name, 0) + v
        for (unit, day), c in credits.items():  # day counters only ever grow
            units = days.get(day)
            if units is None:
                units = days[day] = {}
            into = units.get(unit)
            if into is None:
                units[unit] = dict(c)
                continue
            for name, v in c.items():
                into[name] = into.get(name, 0) + v

    def _arm(self, case_id: str, state: CaseState) -> None:
        t = sla.next_timer(state)
        if t == self.armed.get(case_id):
            return
        if t is None:
            del self.armed[case_id]
            return
        self.armed[case_id] = t
        self.pushed += 1
        heapq.heappush(self.heap, (t.at, case_id, "", self.pushed, t))

    def _arm_task(self, did: str, target: str, t: sla.Timer | None) -> None:
        """A directive task's timer on the clock (a stale one is dropped when popped)."""
        key = f"{did}\x00{target}"
        if t == self.armed.get(key):
            return
        if t is None:
            del self.armed[key]
            return
        self.armed[key] = t
        self.pushed += 1
        heapq.heappush(self.heap, (t.at, did, target, self.pushed, t))

    def _opening_world(self, digest: str) -> World:
        """The world as it was when a case opened under an older policy version."""
        w = self.opening_worlds.get(digest)
        if w is None:
            if not self.world.knows(digest):
                raise KeyError(f"policy version {digest} is not in world.policies")
            policy = self.world.policy_for(digest)
            w = self.world if policy is self.world.policy else replace(self.world,
                                                                        policy=policy)
            self.opening_worlds[digest] = w
        return w

    def finish(self) -> Replayed:
        if not self.recorded:
            self.fire(self.until)
        for s in self.states.values():
            fig.merge(self.tally.now, fig.now_counts(s))
        c, ds = self.counts, self.directives
        return Replayed(self.events, self.states, self.skipped, self.rejected,
                        duplicates=c["duplicates"], ignored=c["ignored"], bounced=c["bounced"],
                        fired=c["fired"], decided=c["decided"], after_until=c["after_until"],
                        counts=self.tally, directives=ds.states, directive_events=ds.events,
                        directive_reminders=ds.warned)


def in_log_order(partitions: Mapping[int, Iterable[Command]]) -> Iterator[Command]:
    """Each partition's commands in offset order, merged by ``at``: the writer's order for
    every case (one case, one partition) and a time order across partitions.

    Why: sorting the whole log by ``at`` could swap two commands of one case whose ``at``
    is not monotone in offset order (a ticker's firing stamped after an input read before
    it); the writer decided them in offset order, so an exact replay must too."""
    streams = [iter(cmds) for _, cmds in sorted(partitions.items())]
    heap: list[tuple[datetime, int, Command]] = []
    for i, s in enumerate(streams):
        first = next(s, None)
        if first is not None:
            heap.append((_utc(first.at), i, first))
    heapq.heapify(heap)
    while heap:
        _, i, cmd = heap[0]
        nxt = next(streams[i], None)
        if nxt is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (_utc(nxt.at), i, nxt))
        yield cmd


# ---- figures per unit ----


def unit_figures(events_by_case: Mapping[str, Iterable[CaseEvent]], world: World,
                 start: date, end: date, until: datetime, units: Iterable[str]
                 ) -> dict[str, dict[str, Any]]:
    """Per unit code (each with its subtree rolled up as GET /units/{code}/stats does): the
    figures of figures.stats (received, responded, resolved, on-time ack and resolve rates,
    satisfaction, overdue and backlog at `until`, reopened, escalations...) counted over these
    cases, plus "reminders" (warned events), "escalations" and "escalations_by_level":
    {"district": n, "city": n, "top": n} (the level of the unit the supervision went to, from
    the escalated event's supervisor/top fields; a reopening is not an escalation), and
    "closed_unrated".

    Day counters over the local days [start, end] (``world.policy.calendar.timezone``), each
    case's events up to ``until`` (as ``figures.recount`` cuts them); the events may be the
    core's or ``zhida.case.events`` messages (anything ``figures.as_event`` takes), in any
    order, repeated. A level is credited like ``escalations``, to the late unit, so the three
    add up to it. KeyError for a code not in the topology.
    """
    return figures_of(counts_of(events_by_case, world, until), world, start, end, units)


def counts_of(events_by_case: Mapping[str, Iterable[Any]], world: World, until: datetime
              ) -> Counts:
    """The figure records of these cases from their events up to ``until`` (``recount``, and
    the escalations by level): the live column's, from ``zhida.case.events``."""
    tz = ZoneInfo(world.policy.calendar.timezone)
    cut = _utc(until)
    with paused_gc():
        histories = {cid: h for cid, evs in events_by_case.items() if (h := history(evs, cut))}
        days, now = fig.recount(histories, tz)
        for h in histories.values():
            for (unit, day), c in _levels(h, tz, world.topology).items():
                fig.merge(days.setdefault(day, {}), {unit: c})
    return Counts(days, now)


def figures_of(counts: Counts, world: World, start: date, end: date, units: Iterable[str]
               ) -> dict[str, dict[str, Any]]:
    """``unit_figures`` from figure records (``counts_of``, or ``Replayed.counts``)."""
    topo = world.topology
    own = fig.per_unit(start, end, counts.days, counts.now)
    out: dict[str, dict[str, Any]] = {}
    for code in units:
        if code not in topo:
            raise KeyError(code)
        total, _ = fig.rollup(code, own, topo)
        g = total.get
        out[code] = {
            **fig.figures(total),
            "created": g("created", 0),
            "reminders": g("warnings", 0),
            "escalations_by_level": {lvl: g(f"escalations_{lvl}", 0) for lvl in LEVELS},
            "closed_unrated": g("unrated", 0),
        }
    return out


def history(events: Iterable[Any], until: datetime | None = None) -> list[CaseEvent]:
    """One case's events by ``seq``, the first copy of each, up to the first after ``until``
    (the cut ``figures.recount`` makes)."""
    by_seq: dict[int, CaseEvent] = {}
    for m in events:
        e = fig.as_event(m)
        by_seq.setdefault(e.seq, e)
    out = []
    for seq in sorted(by_seq):
        e = by_seq[seq]
        if until is not None and _utc(e.at) > until:
            break
        out.append(e)
    return out


def level_of(supervisor: str | None, top: bool | None, topology: Topology) -> str:
    """The level a supervision went to: ``top`` (the city centre itself was late), ``city``
    (a unit in no district: the centre, a city department) or ``district`` (a district or a
    unit inside one)."""
    if top or supervisor is None:
        return "top"
    if supervisor not in topology or topology.district_of(supervisor) is None:
        return "city"
    return "district"


def _levels(events: Iterable[CaseEvent], tz: ZoneInfo, topology: Topology
            ) -> dict[tuple[str, str], dict[str, int]]:
    """``escalations_<level>`` day counters, credited to the late unit as ``escalations``."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for e in events:
        if e.type == "escalated":
            name = f"escalations_{level_of(e.supervisor, e.top, topology)}"
            c = out.setdefault((e.late_unit or e.unit, fig.day_of(e.at, tz)), {})
            c[name] = c.get(name, 0) + 1
    return out


# ---- exactness ----


def published(e: Any) -> dict[str, Any]:
    """What a ``zhida.case.events`` message and the core's event both say: live and
    candidate histories compare on this."""
    data = fig.as_event(e).model_dump()
    return {k: v for k, v in data.items() if k in PUBLISHED_FIELDS and v is not None}


def diverged(live: Mapping[str, Iterable[Any]], candidate: Mapping[str, Iterable[CaseEvent]],
             until: datetime | None = None) -> dict[str, int]:
    """Cases whose candidate history differs from the live one (up to ``until``), each with
    the first ``seq`` where they part: empty when the replay is exact. Both sides compare as
    published (``published``), so live ``zhida.case.events`` messages can be passed as they
    are read."""
    cut = _utc(until) if until is not None else None
    out: dict[str, int] = {}
    for cid in live.keys() | candidate.keys():
        a = history(live.get(cid, ()), cut)
        b = history(candidate.get(cid, ()), cut)
        for i in range(max(len(a), len(b))):
            if i >= len(a) or i >= len(b) or published(a[i]) != published(b[i]):
                out[cid] = (a[i] if i < len(a) else b[i]).seq
                break
    return out


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t
