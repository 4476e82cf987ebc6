"""The crash soak's checker: what was sent against what was read back (bench/crashload.py).

:func:`check` is a pure function over the load's :class:`SentLog` (bench/crashload_load.py)
and the reader's records (bench/crashload_read.py); it returns a :class:`Report` with counts
and violations, each violation naming its rule (the rules are in its docstring). The rules in
``LOSS_RULES`` can still heal while outputs arrive: the run's drain waits for them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.crashload_load import SentDirective, SentDirectiveUpdate, SentLog, SentUpdate
from bench.crashload_read import NAMES, Record
from engine.data.topology import Topology

# rules whose violations can still heal while outputs arrive; the drain waits for them
LOSS_RULES = ("lost_order", "lost_event", "lost_notification", "unaccounted_update",
              "lost_dead_letter", "seq_gap", "lost_task_order", "lost_directive_event")
EVENT_FOR_ACTION = {"ack": "acknowledged", "resolve": "resolved"}
DIRECTIVE_EVENT_FOR_ACTION = {"ack": "acknowledged", "report": "reported"}


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    subject: str  # case_id, update_id, output id
    detail: str


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    event_types: dict[str, int] = field(default_factory=dict)
    directive_event_types: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)

    def by_rule(self) -> dict[str, int]:
        return dict(Counter(v.rule for v in self.violations))

    def rule(self, name: str) -> list[Violation]:
        return [v for v in self.violations if v.rule == name]

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def complete(self) -> bool:
        """No output is missing any more (other violations cannot heal by waiting)."""
        return not any(v.rule in LOSS_RULES for v in self.violations)

    def summary(self, examples: int = 5) -> str:
        c = self.counts
        lines = [
            f"sent: {c.get('complaints_sent', 0)} complaints, {c.get('acks_sent', 0)} acks, "
            f"{c.get('resolves_sent', 0)} resolves, {c.get('forged_sent', 0)} forged acks, "
            f"{c.get('send_errors', 0)} send errors",
            f"read: {c.get('events', 0)} case events ({c.get('events_distinct', 0)} distinct, "
            f"{c.get('events_duplicates', 0)} duplicates), {c.get('orders', 0)} orders "
            f"({c.get('orders_duplicates', 0)} dup), {c.get('notices', 0)} notifications "
            f"({c.get('notices_duplicates', 0)} dup), {c.get('dead', 0)} dead letters "
            f"({c.get('dead_duplicates', 0)} dup)",
            f"updates: {c.get('updates_as_event', 0)} as events, "
            f"{c.get('updates_dead_lettered', 0)} dead-lettered, "
            f"{c.get('updates_unaccounted', 0)} unaccounted",
            f"directives: {c.get('directives_sent', 0)} sent ({c.get('tasks_sent', 0)} tasks, "
            f"{c.get('directives_with_report', 0)} asking a report), "
            f"{c.get('directive_acks_sent', 0)} acks, {c.get('reports_sent', 0)} reports, "
            f"{c.get('directive_forged_sent', 0)} forged acks; read "
            f"{c.get('directive_events', 0)} directive events "
            f"({c.get('directive_events_distinct', 0)} distinct, "
            f"{c.get('directive_events_duplicates', 0)} duplicates), "
            f"{c.get('task_orders', 0)} task orders; completed "
            f"{c.get('directives_completed', 0)} of {c.get('directives_to_complete', 0)} due",
            f"event types: {dict(sorted(self.event_types.items()))}",
            f"directive event types: {dict(sorted(self.directive_event_types.items()))}",
            f"dead-letter reasons: {dict(sorted(self.dead_letter_reasons.items()))}",
        ]
        if self.ok:
            lines.append("violations: none")
        else:
            lines.append(f"violations: {len(self.violations)} {self.by_rule()}")
            for rule in self.by_rule():
                vs = self.rule(rule)
                for v in vs[:examples]:
                    lines.append(f"  {rule}: {v.subject}: {v.detail}")
                if len(vs) > examples:
                    lines.append(f"  {rule}: … {len(vs) - examples} more")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "complete": self.complete, "counts": self.counts,
                "dead_letter_reasons": self.dead_letter_reasons,
                "event_types": self.event_types,
                "directive_event_types": self.directive_event_types,
                "violations_by_rule": self.by_rule(),
                "violations": [asdict(v) for v in self.violations]}


def _distinct_bodies(recs: list[Record]) -> list[Any]:
    """The different bodies among copies of one output (equal after parsing = the same)."""
    if len({r.raw for r in recs}) == 1:
        return [recs[0].body()]
    bodies: list[Any] = []
    for r in recs:
        b = r.body()
        if b not in bodies:
            bodies.append(b)
    return bodies


_ABSENT = "<absent>"


def _diff(a: Any, b: Any) -> str:
    """The differing keys; a key missing on one side shows as <absent> (not as null)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k, _ABSENT) != b.get(k, _ABSENT))
        return ", ".join(f"{k}: {a.get(k, _ABSENT)!r} vs {b.get(k, _ABSENT)!r}"
                         for k in keys[:6])
    return f"{a!r:.80} vs {b!r:.80}"


def _trail(subject: str, bucket: dict[int, list[Record]], first: list[int],
           v: list[Violation], what: str) -> dict[int, list[Any]]:
    """The seq rules of one case's or one directive's events: forks, gaps, order of first
    appearance. Returns the distinct bodies per seq."""
    bodies_of: dict[int, list[Any]] = {}
    for seq, recs in bucket.items():
        bodies = _distinct_bodies(recs)
        bodies_of[seq] = bodies
        if len(bodies) > 1:
            v.append(Violation("seq_fork", subject,
                               f"{what}seq {seq} has {len(bodies)} bodies: "
                               f"{_diff(bodies[0], bodies[1])}"))
    seqs = set(bucket)
    top = max(seqs)
    missing = sorted(set(range(1, top + 1)) - seqs)
    if missing or min(seqs) < 1:
        v.append(Violation("seq_gap", subject,
                           f"{what}seqs {sorted(seqs)}: missing {missing or 'n/a'}"))
    if first != sorted(first):
        v.append(Violation("seq_order", subject, f"{what}first appearances in order {first}"))
    return bodies_of


def _field(b: Any, name: str) -> str | None:
    x = b.get(name) if isinstance(b, dict) else None
    return x if isinstance(x, str) else None


def check(sent: SentLog, records: Iterable[Record], topology: Topology | None = None) -> Report:
    """Rules (each violation names its rule):

    - ``lost_order`` / ``lost_event`` / ``lost_notification``: a complaint sent has no
      ``kind=case`` dispatch order, no ``created`` or ``dispatched`` event, or no ``received``
      notification; a ``resolved`` event has no ``resolved`` notification.
    - ``unaccounted_update``: an update the engine must accept (ack of a dispatched case by the
      target of its order; resolve of an acknowledged case by its holder; a directive target's
      ack of its task, or its report after its ``acknowledged`` event) is neither its event
      (``acknowledged``, ``resolved``; on ``zhida.directive.events`` ``acknowledged``,
      ``reported`` with that ``target``) nor a dead letter: it vanished.
    - ``lost_dead_letter``: a forged update (a case ack by a street of another district; a
      directive ack by a street that is not a target) has no dead letter; ``wrong_reason`` if
      its dead letter's reason is not ``unauthorized``; ``forged_accepted`` if it got an event.
    - ``seq_gap``: a case's or a directive's seqs are not exactly 1..max. ``seq_fork``: one seq
      with two different bodies (copies equal after parsing are duplicates, counted,
      allowed). ``seq_order``: a seq first appears before a smaller one (the trail is ordered
      per case and per directive).
    - ``dup_conflict``: two orders or notifications with the same id (``ce_id``, else
      ``order_id`` / ``notification_id``) and different bodies.
    - ``unexpected_dead_letter``: a dead letter other than the forged updates' ``unauthorized``.
    - ``unexpected_event``: an ``acknowledged``/``resolved`` case event, or an
      ``acknowledged``/``reported`` directive event for a target, that no sent update explains;
      a ``completed`` directive some target of which was never sent its ack (or its report,
      when the directive asks for one).
    - ``foreign``: an output about a case no complaint of this run created, or about a
      directive this run never issued (the broker is fresh, so there must be none).
      ``undecodable``: an output that is not a JSON object.
    - ``misrouted`` (with ``topology``): an order not on ``zhida.dispatch.<district of its
      target>``, a complaint's order not targeting the complaint's street, or a directive's
      order not keyed by its target.

    Directives (per directive issued; events counted once per distinct seq, so a redelivered
    copy is a duplicate, not a second event):

    - ``lost_directive_event``: no ``issued`` event; no ``delivered`` event for a target; no
      ``completed`` for a directive every target of which was sent its ack (and its report,
      when the directive has ``report_by``).
    - ``lost_task_order``: a target has no ``kind=directive`` order.
    - ``task_order_twice``: a target has ``kind=directive`` orders with more than one
      ``order_id`` (copies with one ``order_id`` and one body are duplicates; different bodies
      are ``dup_conflict``).
    - ``directive_event_twice``: two distinct seqs carry ``issued``, or ``completed``, or the
      same target's ``delivered``, ``acknowledged`` or ``reported``.
    - ``wrong_fanout``: the ``issued`` event's ``targets`` is not the number of targets sent,
      or a ``delivered`` event or a ``kind=directive`` order names a unit that is not a target.
    """
    rep = Report()
    v = rep.violations
    complaints = {c.case_id: c for c in sent.complaints}
    updates = {u.update_id: u for u in sent.updates}
    directives = {d.directive_id: d for d in sent.directives}
    dupdates = {u.update_id: u for u in sent.directive_updates}

    events: dict[str, dict[int, list[Record]]] = defaultdict(lambda: defaultdict(list))
    first_seen: dict[str, list[int]] = defaultdict(list)  # seqs in order of first appearance
    devents: dict[str, dict[int, list[Record]]] = defaultdict(lambda: defaultdict(list))
    dfirst_seen: dict[str, list[int]] = defaultdict(list)
    orders: dict[str, list[Record]] = defaultdict(list)  # by id
    orders_of: dict[str, list[Record]] = defaultdict(list)  # by case
    dorders_of: dict[str, list[Record]] = defaultdict(list)  # by directive
    notices: dict[str, list[Record]] = defaultdict(list)
    notice_kinds: dict[str, set[str]] = defaultdict(set)
    dead_by_ref: dict[str, list[Record]] = defaultdict(list)
    dead: list[Record] = []
    foreign: Counter[str] = Counter()
    per_kind: Counter[str] = Counter()

    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        per_kind[r.kind] += 1
        if r.f.get("_undecodable"):
            v.append(Violation("undecodable", f"{r.topic}/{r.partition}@{r.offset}",
                               repr(r.raw[:80])))
            continue
        if r.kind == "devent" or (r.kind == "order" and r.f.get("directive_id") is not None):
            did = str(r.f.get("directive_id"))
            if did not in directives:
                foreign[did] += 1
            elif r.kind == "order":
                orders[r.ce_id or str(r.f.get("order_id"))].append(r)
                dorders_of[did].append(r)
            elif not isinstance(seq := r.f.get("seq"), int):
                v.append(Violation("undecodable", did, f"directive event without int seq: "
                                   f"{seq!r}"))
            else:
                if seq not in devents[did]:
                    dfirst_seen[did].append(seq)
                devents[did][seq].append(r)
            continue
        case_id = r.f.get("case_id")
        if r.kind != "dead" and case_id not in complaints:
            foreign[str(case_id)] += 1
            continue
        if r.kind == "event":
            seq = r.f.get("seq")
            if not isinstance(seq, int):
                v.append(Violation("undecodable", str(case_id), f"event without int seq: {seq!r}"))
                continue
            bucket = events[case_id]
            if seq not in bucket:
                first_seen[case_id].append(seq)
            bucket[seq].append(r)
        elif r.kind == "order":
            orders[r.ce_id or str(r.f.get("order_id"))].append(r)
            orders_of[case_id].append(r)
        elif r.kind == "notice":
            notices[r.ce_id or str(r.f.get("notification_id"))].append(r)
            notice_kinds[case_id].add(str(r.f.get("kind")))
        else:
            dead.append(r)
            if r.f.get("ref"):
                dead_by_ref[r.f["ref"]].append(r)

    for subject, n in foreign.items():
        v.append(Violation("foreign", subject,
                           f"{n} outputs about a case or directive this run never opened"))

    # --- per case: events, seqs, forks, order of first appearance
    types_of: dict[str, Counter[str]] = {}
    type_counts: Counter[str] = Counter()
    n_events = n_distinct = 0
    for case_id, bucket in events.items():
        types: Counter[str] = Counter()
        n_events += sum(len(recs) for recs in bucket.values())
        n_distinct += len(bucket)
        for bodies in _trail(case_id, bucket, first_seen[case_id], v, "").values():
            for t in {str(b.get("type") if isinstance(b, dict) else None) for b in bodies}:
                types[t] += 1  # per seq, so a fork of one event is not two events
        types_of[case_id] = types
        type_counts.update(types)

    # --- complaints: order, created + dispatched, received notification
    for case_id, c in complaints.items():
        types = types_of.get(case_id, Counter())
        case_orders = [r for r in orders_of.get(case_id, ()) if r.f.get("kind") == "case"]
        if not case_orders:
            v.append(Violation("lost_order", case_id,
                               f"complaint {c.complaint_id} (sent at {c.t:.2f}s) has no order"))
        missing = [t for t in ("created", "dispatched") if not types[t]]
        if missing:
            v.append(Violation("lost_event", case_id,
                               f"complaint {c.complaint_id} (sent at {c.t:.2f}s) has no "
                               f"{'/'.join(missing)} event"))
        if "received" not in notice_kinds.get(case_id, set()):
            v.append(Violation("lost_notification", case_id,
                               f"no 'received' notification for {c.complaint_id}"))
        if types["resolved"] and "resolved" not in notice_kinds.get(case_id, set()):
            v.append(Violation("lost_notification", case_id,
                               "a 'resolved' event but no 'resolved' notification"))
        if topology is not None:
            for r in case_orders:
                target = r.f.get("target")
                if not isinstance(target, str) or target not in topology:
                    v.append(Violation("misrouted", case_id, f"order target {target!r}"))
                    continue
                want = NAMES.dispatch(topology.dispatch_key(target))
                if r.topic != want:
                    v.append(Violation("misrouted", case_id,
                                       f"order for {target} on {r.topic}, expected {want}"))
                if target != c.street:
                    v.append(Violation("misrouted", case_id,
                                       f"order to {target}, complaint on street {c.street}"))

    # --- updates: each one sent is an event or a dead letter, never nothing
    as_event = as_dead = unaccounted = 0
    explained: Counter[tuple[str, str]] = Counter()
    for u in updates.values():
        etype = EVENT_FOR_ACTION[u.action]
        has_event = types_of.get(u.case_id, Counter())[etype] > 0
        letters = dead_by_ref.get(u.update_id, [])
        if u.expect == "event":
            explained[(u.case_id, etype)] += 1
            if has_event:
                as_event += 1
            elif letters:
                as_dead += 1
            else:
                unaccounted += 1
                v.append(Violation("unaccounted_update", u.update_id,
                                   f"{u.action} by {u.actor} on {u.case_id} (sent at "
                                   f"{u.t:.2f}s): no '{etype}' event, no dead letter"))
        else:
            _forged_letters(u.update_id, f"{u.action} by {u.actor} on {u.case_id}", u.t,
                            letters, v)
    for case_id, types in types_of.items():
        for etype in EVENT_FOR_ACTION.values():
            if types[etype] > explained[(case_id, etype)]:
                forged = [u for u in updates.values()
                          if u.case_id == case_id and u.expect != "event"
                          and EVENT_FOR_ACTION[u.action] == etype]
                rule = "forged_accepted" if forged else "unexpected_event"
                v.append(Violation(rule, case_id,
                                   f"{types[etype]} '{etype}' event(s), "
                                   f"{explained[(case_id, etype)]} update(s) sent for it"))

    # --- directives: fan-out, per-target trail, completion
    dcounts, dtypes = _check_directives(directives, dupdates, devents, dfirst_seen,
                                        dorders_of, dead_by_ref, v, topology)

    # --- orders and notifications: copies only with the same id and body
    for label, groups in (("order", orders), ("notification", notices)):
        for oid, recs in groups.items():
            if len(recs) > 1:
                bodies = _distinct_bodies(recs)
                if len(bodies) > 1:
                    v.append(Violation("dup_conflict", oid,
                                       f"{label} with {len(bodies)} bodies: "
                                       f"{_diff(bodies[0], bodies[1])}"))

    # --- dead letters: only what the load meant
    reasons: Counter[str] = Counter()
    dead_ids: Counter[tuple[Any, ...]] = Counter()
    for r in dead:
        reasons[str(r.f.get("reason"))] += 1
        dead_ids[(r.f.get("source_topic"), r.f.get("partition"), r.f.get("offset"))] += 1
        ref = r.f.get("ref") or ""
        u: SentUpdate | SentDirectiveUpdate | None = updates.get(ref) or dupdates.get(ref)
        if u is None or u.expect != "unauthorized" or r.f.get("reason") != "unauthorized":
            about = u.case_id if isinstance(u, SentUpdate) else u.directive_id if u else ""
            what = f"{u.action} by {u.actor} on {about}" if u else f"ref {r.f.get('ref')}"
            v.append(Violation("unexpected_dead_letter", str(r.f.get("ref") or r.key),
                               f"{r.f.get('reason')}: {what}: {r.f.get('detail')}"))

    by_action = Counter(u.action if u.expect == "event" else "forged" for u in updates.values())
    rep.counts = {
        "complaints_sent": len(complaints), "acks_sent": by_action["ack"],
        "resolves_sent": by_action["resolve"], "forged_sent": by_action["forged"],
        "send_errors": sent.send_errors,
        "events": n_events, "events_distinct": n_distinct,
        "events_duplicates": n_events - n_distinct, "cases_with_events": len(events),
        "orders": sum(len(x) for x in orders.values()),
        "orders_duplicates": sum(len(x) - 1 for x in orders.values()),
        "notices": sum(len(x) for x in notices.values()),
        "notices_duplicates": sum(len(x) - 1 for x in notices.values()),
        "dead": len(dead), "dead_duplicates": sum(n - 1 for n in dead_ids.values()),
        "updates_as_event": as_event + dcounts.pop("_as_event"),
        "updates_dead_lettered": as_dead + dcounts.pop("_as_dead"),
        "updates_unaccounted": unaccounted + dcounts.pop("_unaccounted"),
        "records": sum(per_kind.values()),
        **dcounts,
    }
    rep.dead_letter_reasons = dict(reasons)
    rep.event_types = dict(type_counts)
    rep.directive_event_types = dict(dtypes)
    return rep


def _forged_letters(update_id: str, what: str, t: float, letters: list[Record],
                    v: list[Violation]) -> None:
    if not letters:
        v.append(Violation("lost_dead_letter", update_id,
                           f"forged {what} (sent at {t:.2f}s) has no dead letter"))
    elif any(r.f.get("reason") != "unauthorized" for r in letters):
        v.append(Violation("wrong_reason", update_id,
                           f"forged {what}: reasons "
                           f"{sorted({str(r.f.get('reason')) for r in letters})}"))


def _check_directives(directives: dict[str, SentDirective],
                      dupdates: dict[str, SentDirectiveUpdate],
                      devents: dict[str, dict[int, list[Record]]],
                      first_seen: dict[str, list[int]], orders_of: dict[str, list[Record]],
                      dead_by_ref: dict[str, list[Record]], v: list[Violation],
                      topology: Topology | None) -> tuple[dict[str, int], Counter[str]]:
    """The directive rules of :func:`check`; returns its counts and the event types seen."""
    type_counts: Counter[str] = Counter()
    # (type, target) → distinct seqs carrying it, per directive; issued/completed: target None
    seen: dict[str, Counter[tuple[str, str | None]]] = {}
    issued_targets: dict[str, set[Any]] = defaultdict(set)
    n_events = n_distinct = 0
    for did, bucket in devents.items():
        kinds: Counter[tuple[str, str | None]] = Counter()
        n_events += sum(len(recs) for recs in bucket.values())
        n_distinct += len(bucket)
        for bodies in _trail(did, bucket, first_seen[did], v, "directive events: ").values():
            per_seq = {(str(_field(b, "type")), _field(b, "target")) for b in bodies}
            kinds.update(per_seq)  # per seq, so a fork of one event is not two events
            type_counts.update(t for t, _ in per_seq)
            for b in bodies:
                if _field(b, "type") == "issued":
                    issued_targets[did].add(b.get("targets"))
        seen[did] = kinds

    by_task: dict[tuple[str, str, str], list[SentDirectiveUpdate]] = defaultdict(list)
    for u in dupdates.values():
        if u.expect == "event":
            by_task[(u.directive_id, u.actor, u.action)].append(u)

    as_event = as_dead = unaccounted = 0
    n_orders = n_task_orders = to_complete = completed = 0
    for did, d in directives.items():
        kinds = seen.get(did, Counter())
        targets = set(d.targets)
        # issue and fan-out
        if not kinds[("issued", None)]:
            v.append(Violation("lost_directive_event", did,
                               f"directive (sent at {d.t:.2f}s) has no 'issued' event"))
        elif kinds[("issued", None)] > 1:
            v.append(Violation("directive_event_twice", did,
                               f"{kinds[('issued', None)]} 'issued' events"))
        if issued_targets[did] - {len(d.targets)}:
            v.append(Violation("wrong_fanout", did,
                               f"'issued' says targets {sorted(map(str, issued_targets[did]))}"
                               f", {len(d.targets)} sent"))
        task_orders: dict[str, set[str]] = defaultdict(set)
        for r in orders_of.get(did, ()):
            n_orders += 1
            target = r.f.get("target")
            if r.f.get("kind") == "directive":
                n_task_orders += 1
                task_orders[str(target)].add(str(r.f.get("order_id")))
                if target not in targets:
                    v.append(Violation("wrong_fanout", did,
                                       f"task order {r.f.get('order_id')} to {target!r}, "
                                       "not a target"))
            if topology is not None:
                if not isinstance(target, str) or target not in topology:
                    v.append(Violation("misrouted", did, f"order target {target!r}"))
                    continue
                want = NAMES.dispatch(topology.dispatch_key(target))
                if r.topic != want or r.key != target:
                    v.append(Violation("misrouted", did,
                                       f"order {r.f.get('order_id')} for {target} on "
                                       f"{r.topic} key {r.key!r}, expected {want} key "
                                       f"{target!r}"))
        for t in d.targets:
            n = kinds[("delivered", t)]
            if not n:
                v.append(Violation("lost_directive_event", did,
                                   f"no 'delivered' event for target {t}"))
            elif n > 1:
                v.append(Violation("directive_event_twice", did,
                                   f"{n} 'delivered' events for target {t}"))
            ids = task_orders.get(t, set())
            if not ids:
                v.append(Violation("lost_task_order", did, f"no kind=directive order for {t}"))
            elif len(ids) > 1:
                v.append(Violation("task_order_twice", did,
                                   f"{len(ids)} kind=directive orders for {t}: {sorted(ids)}"))
        # per-target events: each explained by the target's own update, once
        forgers = {u.actor for u in dupdates.values()
                   if u.directive_id == did and u.expect != "event"}
        for (etype, target), n in sorted(kinds.items(), key=str):
            if etype == "delivered" and target not in targets:
                v.append(Violation("wrong_fanout", did,
                                   f"'delivered' to {target!r}, not a target"))
            if etype not in DIRECTIVE_EVENT_FOR_ACTION.values():
                continue
            action = "ack" if etype == "acknowledged" else "report"
            if n > 1:
                v.append(Violation("directive_event_twice", did,
                                   f"{n} '{etype}' events for target {target}"))
            if not by_task.get((did, str(target), action)):
                rule = "forged_accepted" if target in forgers else "unexpected_event"
                v.append(Violation(rule, did, f"'{etype}' for {target}: no {action} was sent "
                                   "by that target"))
        # completion: exactly once when every target acked (and reported, if asked)
        actions = ("ack", "report") if d.report else ("ack",)
        waiting = [t for t in d.targets if any(not by_task.get((did, t, a)) for a in actions)]
        n = kinds[("completed", None)]
        completed += n > 0
        if not waiting:
            to_complete += 1
            if not n:
                v.append(Violation("lost_directive_event", did,
                                   f"every target was sent its {'/'.join(actions)}, "
                                   "no 'completed' event"))
        elif n:
            v.append(Violation("unexpected_event", did,
                               f"'completed', but {len(waiting)} target(s) were never sent "
                               f"their {'/'.join(actions)}: {waiting[:3]}"))
        if n > 1:
            v.append(Violation("directive_event_twice", did, f"{n} 'completed' events"))

    # updates: each one sent is its target's event or a dead letter
    for u in dupdates.values():
        letters = dead_by_ref.get(u.update_id, [])
        if u.expect != "event":
            _forged_letters(u.update_id, f"{u.action} by {u.actor} on {u.directive_id}", u.t,
                            letters, v)
            continue
        etype = DIRECTIVE_EVENT_FOR_ACTION[u.action]
        if seen.get(u.directive_id, Counter())[(etype, u.actor)]:
            as_event += 1
        elif letters:
            as_dead += 1
        else:
            unaccounted += 1
            v.append(Violation("unaccounted_update", u.update_id,
                               f"{u.action} by {u.actor} on {u.directive_id} (sent at "
                               f"{u.t:.2f}s): no '{etype}' event for it, no dead letter"))

    by_action = Counter(u.action if u.expect == "event" else "forged" for u in dupdates.values())
    counts = {
        "directives_sent": len(directives),
        "tasks_sent": sum(len(d.targets) for d in directives.values()),
        "directives_with_report": sum(d.report for d in directives.values()),
        "directive_acks_sent": by_action["ack"], "reports_sent": by_action["report"],
        "directive_forged_sent": by_action["forged"],
        "directive_events": n_events, "directive_events_distinct": n_distinct,
        "directive_events_duplicates": n_events - n_distinct,
        "directive_orders": n_orders, "task_orders": n_task_orders,
        "directives_to_complete": to_complete, "directives_completed": completed,
        "directive_updates_as_event": as_event, "directive_updates_unaccounted": unaccounted,
        "_as_event": as_event, "_as_dead": as_dead, "_unaccounted": unaccounted,
    }
    return counts, type_counts
