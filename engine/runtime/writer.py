"""The case writer's effects, in an order a SIGKILL cannot break.

A batch of commands is decided in memory (an overlay carries a case's state from one command
to the next), then written in two delivered phases and only then applied locally:

1. **Outputs and derived records**: case events, orders, notifications, dead letters, and on
   the changelog the history events, new case files and each partition's ``Marks``. Awaited.
2. **States**: one ``s:<case>`` record per case touched. Awaited.
3. **Local store** (RocksDB or memory) gets every record, and the persisted changelog offset
   moves; the commands are acknowledged, and faust commits their offsets later (after
   flushing its producer).

Why this order is safe, whatever the kill point:

- A state record on the changelog means the command's outputs were delivered before it was
  sent, so a command found applied on replay (its offset at or below ``state.through``) has
  nothing left to send.
- Before phase 2 the state is the old one, so a replay decides the command again and gets the
  same events, ids and bytes (``Command.at`` is fixed at intake; ids derive from case, seq and
  target): duplicates a consumer drops by id, never a loss, never a fork.
- Derived figures carry a watermark (``Marks.through``): a replayed command at or below it was
  already counted, so phase 1 repeated never counts twice, and phase 1 lost counts nothing.
- The local store is written only after the changelog has everything, so a kept RocksDB never
  holds a record the changelog lacks.

Waiting is batched: two round trips per batch, not per command.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from faust.types import EventT
from pydantic import BaseModel

from engine.core import (
    Accepted,
    CaseFile,
    CaseState,
    Command,
    Duplicate,
    Ignored,
    apply,
    decide,
    directive,
    figures,
    file_after,
    insights,
    merge,
    react,
    sla,
)
from engine.core.decide import Bounce
from engine.core.model import (
    DIRECTIVE_KINDS,
    GROUP_KINDS,
    DirectiveExpire,
    Expire,
    JoinCase,
    OpenCase,
)
from engine.data.policy import Policy
from engine.runtime import delivery, latest, logs
from engine.runtime.app import Engine, Record
from engine.runtime.kafka.guard import ContiguityGuard
from engine.runtime.store import (
    DIRECTIVE_IDS,
    GROUP_IDS,
    TASK_IDS,
    TIMER_PREFIX,
    Marks,
    directive_key,
    dump,
    dump_events,
    dump_timer,
    event_key,
    figures_day_key,
    figures_now_key,
    file_key,
    group_key,
    insight_key,
    marks_key,
    pack,
    policy_key,
    precedent_key,
    state_key,
    task_key,
    timer_key,
)
from schemas.codec import encode
from schemas.outbound import PrecedentRecord

log = logs.get("zhida.writer")



@dataclass
class _Batch:
    """Everything one batch will write, grouped by phase."""

    outputs: list[Record] = field(default_factory=list)
    # partition → records (None: delete)
    derived: dict[int, dict[bytes, bytes | None]] = field(default_factory=dict)
    states: dict[int, dict[bytes, bytes | None]] = field(default_factory=dict)
    marks: dict[int, Marks] = field(default_factory=dict)
    # supervision figures (engine/core/figures.py): records touched, by key
    figures: dict[tuple[int, bytes], dict[str, Any]] = field(default_factory=dict)
    escalated: list[Any] = field(default_factory=list)  # for the board, once written
    counted: list[tuple[Command, CaseState | None, Accepted]] = field(
        default_factory=list)

    def put(self, phase: dict[int, dict[bytes, bytes | None]], partition: int, key: bytes,
            value: bytes | None) -> None:
        phase.setdefault(partition, {})[key] = value


@dataclass(frozen=True, slots=True)
class _Decided:
    """What the core decided for one command, ready to be written: ``write`` adds the
    effects of a change to the batch; ``stale_timer``, an ignored firing's index entry."""

    decision: Any  # Accepted, directive.Changed, merge.Routed, Duplicate, Bounce, Ignored,
    # Rejected; None: nothing to do and nothing to count (a repeated forget)
    write: Callable[[], None] | None = None
    stale_timer: bytes | None = None


class CaseWriter:
    """Decides batches of case commands and writes their effects in the safe order."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        self.guard = ContiguityGuard(engine.app, "case_commands", engine.metrics)
        self._marks: dict[int, Marks] = {}
        self._states: dict[str, CaseState | None] = {}
        self._files: dict[str, CaseFile] = {}
        self._directives: dict[str, directive.DirectiveState | None] = {}
        self._tasks: dict[tuple[str, str], directive.Task | None] = {}
        self._groups: dict[str, merge.GroupState] = {}
        self._tz = ZoneInfo(engine.world.policy.calendar.timezone)
        self._policies_kept: set[tuple[int, str]] = set()
        self._resumed_at: float | None = None

    # ---- marks: the partition's durable watermark and counts ----

    def marks(self, partition: int) -> Marks:
        m = self._marks.get(partition)
        if m is None:
            m = self._marks[partition] = self.store.marks(partition)
        return m

    def on_assignment(self, partitions: Sequence[int]) -> dict[str, int]:
        """Forget cached marks (another worker may have moved them); return open counts."""
        self._marks.clear()
        self._policies_kept.clear()
        self._resumed_at = time.monotonic()  # the first batch after it is logged
        totals: dict[str, int] = {}
        for p in partitions:
            for state, n in self.marks(p).counts.items():
                totals[state] = totals.get(state, 0) + n
        return totals

    # ---- one batch ----

    async def handle(self, events: Sequence[EventT]) -> None:
        self._states.clear()
        self._files.clear()
        self._directives.clear()
        self._tasks.clear()
        self._groups.clear()
        batch = _Batch()
        for event in events:
            m = event.message
            through = (batch.marks[m.partition] if m.partition in batch.marks
                       else self.marks(m.partition)).through
            if not await self.guard.accept(event, through + 1):
                continue
            started = time.perf_counter()
            await self._one(batch, event)
            self.engine.metrics.decide_seconds.observe(time.perf_counter() - started)
        if batch.marks:
            await self._write(batch)
        if self._resumed_at is not None:  # where a restart's first batch starts, how long
            first: dict[int, int] = {}
            for event in events:
                first.setdefault(event.message.partition, event.message.offset)
            log.info("writer_resumed", commands=len(events), first_offsets=first,
                     after_assignment=round(time.monotonic() - self._resumed_at, 3))
            self._resumed_at = None

    async def _one(self, batch: _Batch, event: EventT) -> None:
        engine = self.engine
        m = event.message
        p, offset = m.partition, m.offset
        if p not in batch.marks:  # a copy: the cache changes only once the batch is written
            batch.marks[p] = self.marks(p).copy()
        marks = batch.marks[p]
        fresh = offset > marks.through  # not yet folded into the derived figures
        marks.through = max(marks.through, offset)
        try:
            cmd = Command.model_validate(orjson.loads(m.value))
        except Exception as e:  # written by our own intake: a bug, but keep the input
            batch.outputs.append(engine.outputs.dead_letter_record(
                "schema", f"bad internal command: {e}", topic=m.topic, partition=p,
                offset=offset, key=m.key, value=m.value))
            return
        if cmd.body.kind in DIRECTIVE_KINDS:
            self._directive(batch, cmd, p, offset, fresh)
        elif cmd.body.kind in GROUP_KINDS:
            self._group(batch, cmd, p, offset)
        else:
            self._case(batch, cmd, p, offset, fresh)

    # ---- one settle path: every aggregate's command ends here ----

    def _settle(self, batch: _Batch, cmd: Command, p: int, offset: int, fresh: bool, *,
                what: str, through: int | None, policy: str | None,
                prepare: Callable[[], _Decided]) -> None:
        """How every command ends, whatever its aggregate (case, directive, merge group).

        Applied before a crash (its offset at or below the aggregate's ``through``): nothing
        to do, its outputs went out then. Otherwise the core decides (``prepare``, which also
        computes the effects, so a bug in any rule becomes a dead letter, never a stopped
        writer), and the decision ends as exactly one of: its effects written, a counted
        duplicate, a bounce to the report's own case, an ignored timer firing (its stale
        index entry dropped), or a dead letter with the reason.
        """
        engine, metrics = self.engine, self.engine.metrics
        if through is not None and offset <= through:
            metrics.replays.inc()  # applied before a crash, outputs delivered then
            return
        if policy is not None:
            self._know_policy(policy, p)
        try:
            decided = prepare()
        except Exception as e:  # a bug in the core must not stop every other aggregate
            log.exception("decide_failed", **{f"{what}_id": cmd.aggregate}, kind=cmd.body.kind)
            metrics.internal_errors.inc()
            batch.outputs.append(engine.outputs.dead_letter_origin_record(
                cmd.origin, "invalid_transition",
                f"engine error deciding {cmd.body.kind} for {what} {cmd.aggregate}: {e!r}",
                at=cmd.at))
            return
        decision = decided.decision
        if decided.write is not None:
            decided.write()
        elif isinstance(decision, Duplicate):
            metrics.duplicates.labels(cmd.body.kind).inc()
        elif isinstance(decision, Bounce):  # the case closed: the report opens its own
            batch.outputs.append(self._command_record(decision.command))
            if fresh:
                metrics.merges.labels("bounced").inc()
        elif isinstance(decision, Ignored):
            metrics.ignored.inc()
            if decided.stale_timer is not None:  # it fired its last: drop the entry
                batch.put(batch.derived, p, decided.stale_timer, None)
        elif decision is not None:
            batch.outputs.append(engine.outputs.dead_letter_origin_record(
                cmd.origin, decision.reason, decision.detail, at=cmd.at))

    # ---- the aggregates ----

    def _case(self, batch: _Batch, cmd: Command, p: int, offset: int, fresh: bool) -> None:
        """A case command: the case's events, outputs, file, timer, figures and state."""
        state = self._state(cmd.aggregate, p)

        def prepare() -> _Decided:
            decision = decide(state, cmd, self.engine.world)
            if isinstance(decision, Accepted):
                new = apply(state, cmd, decision.events).model_copy(update={"through": offset})
                before_file = self._file(cmd.aggregate, p) if state is not None else None
                file = file_after(before_file, decision.events, cmd)
                outputs = react(new, file, decision.events, self.engine.world.topology)
                return _Decided(decision, lambda: self._case_changed(
                    batch, cmd, p, offset, fresh, state, new, decision, before_file, file,
                    outputs))
            stale = None
            if isinstance(decision, Ignored) and isinstance(cmd.body, Expire):
                current = sla.next_timer(state) if state else None
                if current is None or current.at != cmd.body.instant:
                    stale = timer_key(cmd.aggregate, cmd.body.instant)
            return _Decided(decision, stale_timer=stale)

        self._settle(batch, cmd, p, offset, fresh, what="case",
                     through=state.through if state is not None else None,
                     policy=state.policy if state is not None else None, prepare=prepare)

    def _case_changed(self, batch: _Batch, cmd: Command, p: int, offset: int, fresh: bool,
                      state: CaseState | None, new: CaseState, decision: Accepted,
                      before_file: CaseFile | None, file: CaseFile, outputs: list[Any]
                      ) -> None:
        engine, metrics = self.engine, self.engine.metrics
        batch.outputs.extend(engine.outputs.output_record(out) for out in outputs)
        batch.put(batch.derived, p, event_key(cmd.aggregate, decision.events[0].seq),
                  dump_events(decision.events))
        if state is None or file is not before_file:  # opened, or a complainant joined
            batch.put(batch.derived, p, file_key(cmd.aggregate), dump(file))
            self._files[cmd.aggregate] = file
        if state is None:
            self._keep_policy(batch, new.policy, p)
        # closed, reopened or ruled: its merge group must know (engine/core/insights.py)
        batch.outputs.extend(self._command_record(c) for c in insights.group_notices(
            state, new, decision.events, cmd.at))
        self._keep_insights(batch, p, [o.value for o in outputs if o.channel == "insights"])
        self._index(batch, p, cmd.aggregate, sla.next_timer(state) if state else None,
                    sla.next_timer(new), fresh)
        if isinstance(cmd.body, Expire) and fresh:
            self._fired(cmd.body.timer, cmd.body.instant)
        batch.put(batch.states, p, state_key(cmd.aggregate), dump(new))
        self._states[cmd.aggregate] = new
        self._count_figures(batch, p, offset, state, new, decision.events)
        batch.escalated += [e for e in decision.events if e.type == "escalated"]
        if fresh:
            body = cmd.body
            if isinstance(body, JoinCase):  # counted where it lands, once
                metrics.merges.labels("joined").inc()
            elif isinstance(body, OpenCase) and body.group:
                metrics.merges.labels("opened").inc()
            batch.marks[p].moved(state.state if state else None, new.state)
            batch.counted.append((cmd, state, decision))
            metrics.count_outputs(outputs)

    def _directive(self, batch: _Batch, cmd: Command, p: int, offset: int, fresh: bool
                   ) -> None:
        """A directive command: the same phases as a case's, over the directive's records
        (``d:`` in phase 2 with its tasks ``k:``; task timers ``t:`` in phase 1)."""
        did = cmd.aggregate
        d = self._directive_state(did, p)
        target = directive.target_of(cmd)
        task = self._task(did, target, p) if target is not None and d is not None else None

        def prepare() -> _Decided:
            decision = directive.decide(d, task, cmd, self.engine.world)
            if isinstance(decision, directive.Changed):
                outputs = directive.react(decision.directive, decision.events,
                                          self.engine.world.topology, decision.issue)
                return _Decided(decision, lambda: self._directive_changed(
                    batch, cmd, p, offset, fresh, d, task, decision, outputs))
            stale = None
            body = cmd.body
            if isinstance(decision, Ignored) and isinstance(body, DirectiveExpire):
                current = directive.next_timer(task) if task is not None else None
                if current is None or current.at != body.instant:
                    stale = timer_key(did, body.instant, body.target)
            return _Decided(decision, stale_timer=stale)

        self._settle(batch, cmd, p, offset, fresh, what="directive",
                     through=d.through if d is not None else None,
                     policy=d.policy if d is not None else None, prepare=prepare)

    def _directive_changed(self, batch: _Batch, cmd: Command, p: int, offset: int,
                           fresh: bool, d: directive.DirectiveState | None,
                           task: directive.Task | None, decision: directive.Changed,
                           outputs: list[Any]) -> None:
        engine, metrics = self.engine, self.engine.metrics
        did = cmd.aggregate
        new = decision.directive.model_copy(update={"through": offset})
        batch.outputs.extend(engine.outputs.output_record(out) for out in outputs)
        if d is None:
            self._keep_policy(batch, new.policy, p)
        for t in decision.tasks:
            self._index(batch, p, did, directive.next_timer(task) if task else None,
                        directive.next_timer(t), fresh)
            batch.put(batch.states, p, task_key(did, t.target), dump(t, TASK_IDS))
            self._tasks[(did, t.target)] = t
        batch.put(batch.states, p, directive_key(did), dump(new, DIRECTIVE_IDS))
        batch.escalated += [e for e in decision.events if e.type == "escalated"]
        self._directives[did] = new
        body = cmd.body
        if isinstance(body, DirectiveExpire) and fresh:
            self._fired(body.timer, body.instant)
        if fresh:
            for e in decision.events:
                metrics.directive_events.labels(e.type).inc()
            metrics.count_outputs(outputs)

    def _group(self, batch: _Batch, cmd: Command, p: int, offset: int) -> None:
        """A report that may merge, at its group: join an open case or open its own; the
        group's state and the forwarded command in the same phases as everything else."""
        key = cmd.aggregate
        g = self._groups[key] if key in self._groups else self.store.group(key, p)

        def prepare() -> _Decided:
            decided = insights.decide_group(g, cmd, self.engine.world)
            if decided is None:  # a repeated forget, ruling or revocation: nothing to do
                return _Decided(None)
            return _Decided(decided, lambda: self._group_changed(batch, cmd, p, offset,
                                                                 decided))

        self._settle(batch, cmd, p, offset, False, what="group",
                     through=g.through if g is not None else None, policy=None,
                     prepare=prepare)

    def _group_changed(self, batch: _Batch, cmd: Command, p: int, offset: int,
                       routed: insights.GroupDecision) -> None:
        key = cmd.aggregate
        forward = routed.forward
        if forward is not None and isinstance(forward.body, OpenCase):
            # the case must tell its group when it closes
            forward = forward.model_copy(
                update={"body": forward.body.model_copy(update={"group": key})})
        new = routed.group.model_copy(update={"through": offset})
        if forward is not None:
            batch.outputs.append(self._command_record(forward))
        batch.outputs.extend(self._command_record(c) for c in routed.commands)
        batch.outputs.extend(self.engine.outputs.output_record(o) for o in routed.outputs)
        self.engine.metrics.count_outputs(routed.outputs)
        self._keep_insights(batch, p, routed.records)
        batch.put(batch.states, p, group_key(key), dump(new, GROUP_IDS))
        self._groups[key] = new

    @staticmethod
    def _keep_insights(batch: _Batch, p: int, records: Sequence[BaseModel]) -> None:
        """The insights and precedents ``GET /hotspots`` and ``/precedents`` read, each kept
        current under its id (a hotspot's counts, a precedent's revocation)."""
        for r in records:
            key = precedent_key(r.insight_id) if isinstance(r, PrecedentRecord) \
                else insight_key(r.insight_id)  # type: ignore[attr-defined]
            batch.put(batch.states, p, key, encode(r))

    def _index(self, batch: _Batch, p: int, owner: str, before: sla.Timer | None,
               after: sla.Timer | None, fresh: bool) -> None:
        """The durable timer index follows the state (derived records: phase 1); a case's
        timer or a directive task's (its ``target`` in the key)."""
        if before == after:
            return
        if before is not None:
            batch.put(batch.derived, p, timer_key(owner, before.at, before.target), None)
        if after is not None:
            batch.put(batch.derived, p, timer_key(owner, after.at, after.target),
                      dump_timer(after))
        if fresh:
            batch.marks[p].timers += (after is not None) - (before is not None)

    def _fired(self, kind: str, instant: datetime) -> None:
        metrics = self.engine.metrics
        metrics.timer_firings.labels(kind).inc()
        metrics.timer_lateness.observe(max((self.engine.clock() - instant).total_seconds(), 0))

    def _count_figures(self, batch: _Batch, p: int, offset: int, before: CaseState | None,
                       after: CaseState, events: list[Any]) -> None:
        """Fold a command into its partition's figure records, each once: a record carries
        the offset it is counted through, so a replay after a crash adds nothing twice
        (they are written in phase 1, apart from ``Marks``, hence a watermark of their own)."""
        delta = figures.tally(before, after, events, self._tz)
        if not delta:
            return
        by_day: dict[str, dict[str, dict[str, int]]] = {}
        for (unit, day), counters in delta.days.items():
            by_day.setdefault(day, {})[unit] = counters
        targets = [(figures_day_key(p, day), add) for day, add in by_day.items()]
        if delta.now:
            targets.append((figures_now_key(p), delta.now))
        for key, add in targets:
            rec = batch.figures.get((p, key))
            if rec is None:
                rec = self.store.figures(p, key)
                rec = batch.figures[(p, key)] = {"through": rec["through"],
                                                  "units": rec["units"]}
            if offset <= rec["through"]:
                continue  # counted before a crash
            figures.merge(rec["units"], add)
            rec["through"] = offset

    def _command_record(self, cmd: Command) -> Record:
        """A command this writer hands on (a merge's forward, a bounce, a forget): phase 1,
        deterministic, so a replay sends the same bytes and the receiver dedupes."""
        return Record(self.engine.names.case_commands, cmd.aggregate.encode(), encode(cmd))

    def _directive_state(self, did: str, partition: int) -> directive.DirectiveState | None:
        if did in self._directives:
            return self._directives[did]
        return self.store.directive(did, partition)

    def _task(self, did: str, target: str, partition: int) -> directive.Task | None:
        if (did, target) in self._tasks:
            return self._tasks[(did, target)]
        return self.store.task(did, target, partition)

    def _know_policy(self, digest: str, partition: int) -> None:
        """Load the policy version a case was opened under, if this worker lacks it."""
        world = self.engine.world
        if world.knows(digest):
            return
        raw = self.store.get(partition, policy_key(digest))
        if raw is None:  # cannot happen unless the store was tampered with: say so loudly
            log.error("policy_version_missing", digest=digest, partition=partition)
            world.policies[digest] = world.policy
            return
        world.policies[digest] = Policy.restore(raw)
        log.info("policy_version_loaded", digest=digest)

    def _keep_policy(self, batch: _Batch, digest: str, partition: int) -> None:
        """Store the policy version of a new case once per partition, by digest."""
        if (partition, digest) in self._policies_kept:
            return
        if self.store.get(partition, policy_key(digest)) is None:
            batch.put(batch.derived, partition, policy_key(digest),
                      self.engine.world.policy_for(digest).dump())
        self._policies_kept.add((partition, digest))

    def _state(self, case_id: str, partition: int) -> CaseState | None:
        if case_id in self._states:
            return self._states[case_id]
        return self.store.state(case_id, partition)

    def _file(self, case_id: str, partition: int) -> CaseFile | None:
        if case_id in self._files:
            return self._files[case_id]
        return self.store.file(case_id, partition)

    # ---- the phases ----

    async def _write(self, batch: _Batch) -> None:
        engine = self.engine
        for p, marks in batch.marks.items():
            batch.put(batch.derived, p, marks_key(p), marks.dump())
        for (p, key), rec in batch.figures.items():
            batch.put(batch.derived, p, key, pack(rec))
        changelog = self.store.table.changelog_topic.get_topic_name()
        phase1 = [*batch.outputs, *_changelog_records(changelog, batch.derived)]
        ends1 = await delivery.deliver(self.engine, phase1)
        ends2 = await delivery.deliver(self.engine, _changelog_records(changelog, batch.states))
        for p in set(batch.derived) | set(batch.states):
            items = [*batch.derived.get(p, {}).items(), *batch.states.get(p, {}).items()]
            end = max((e for e in (ends1.get((changelog, p)), ends2.get((changelog, p)))
                       if e is not None), default=None)
            self.store.write(p, items, end)
        self._marks.update(batch.marks)
        for e in batch.escalated:  # the board's latest 督办 (engine/runtime/latest.py)
            latest.note_escalation(engine, e)
        for task in self._tasks.values():  # the status cache follows what is now stored
            if task is not None:
                engine.statuses.task_written(task)
        ticker = engine.ticker
        if ticker is not None:
            for items in batch.derived.values():
                for k, v in items.items():
                    if v is None and k.startswith(TIMER_PREFIX):
                        ticker.cleared(k)
        for cmd, before, decision in batch.counted:
            engine.metrics.count_case(cmd, before, decision, engine.clock())
        engine.metrics.set_case_gauges(self._open_counts())
        engine.metrics.timers_armed.set(sum(m.timers for m in self._marks.values()))

    def _open_counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for m in self._marks.values():
            for state, n in m.counts.items():
                totals[state] = totals.get(state, 0) + n
        return totals


def _changelog_records(topic: str, phase: dict[int, dict[bytes, bytes | None]]
                       ) -> list[Record]:
    return [Record(topic, k, v, p) for p, items in phase.items() for k, v in items.items()]

