"""bench/cityday.py's check: every output read back against what was sent (on
bench/crashload_check.py's rules), the city figures recounted from the case events, and the
intake latency the load saw."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from bench.cityday_load import EVENT_FOR, HOLDER_CHANGES, CityDaySent, SentAlarm
from bench.crashload_check import (
    Report,
    Violation,
    _check_directives,
    _distinct_bodies,
    _forged_letters,
    _trail,
)
from bench.crashload_load import CITY
from bench.crashload_read import NAMES, TOPO, Record
from engine.core.figures import figures, recount, stats

# rules whose violations can still heal while outputs arrive
LOSS = frozenset({"lost_input", "lost_order", "lost_event", "lost_notification",
                  "unaccounted_update", "unaccounted_rating", "unaccounted_merge",
                  "unaccounted_alarms", "lost_dead_letter", "seq_gap", "lost_task_order",
                  "lost_directive_event"})
FIELDS = tuple(figures({}))  # the figures GET /units/{code}/stats answers, rates included


# ---------------------------------------------------------------------------- the check


class CityReport(Report):
    """crashload's report, with the city day's loss rules and summary."""

    @property
    def complete(self) -> bool:
        return not any(v.rule in LOSS for v in self.violations)

    def summary(self, examples: int = 5) -> str:
        c = self.counts
        lines = [
            f"complaints: {c.get('complaints_sent', 0):,} sent: {c.get('complaints_opened', 0):,}"
            f" opened a case, {c.get('complaints_joined', 0):,} joined one (一事多诉)",
            f"alarms: {c.get('alarms_sent', 0):,} sent: {c.get('alarm_cases', 0):,} cases, "
            f"{c.get('alarms_joined', 0):,} joined; the storm in one street: "
            f"{c.get('storm_street_alarms', 0)} alarms opened {c.get('storm_street_cases', 0)} "
            "case(s), the others joined",
            f"updates: {c.get('updates_sent', 0):,} sent ({c.get('updates_by_action', {})}), "
            f"{c.get('updates_as_event', 0):,} as events, {c.get('updates_dead_lettered', 0)} "
            f"dead-lettered; ratings {c.get('ratings_sent', 0):,} "
            f"({c.get('ratings_late', 0)} after the case closed, "
            f"{c.get('ratings_refused_in_time', 0)} of them sent by the feedback due)",
            f"directives: {c.get('directives_sent', 0)} ({c.get('tasks_sent', 0)} tasks), "
            f"completed {c.get('directives_completed', 0)} of "
            f"{c.get('directives_to_complete', 0)} due",
            f"read: {c.get('events', 0):,} case events ({c.get('events_duplicates', 0):,} "
            f"copies), {c.get('orders', 0):,} orders, {c.get('notices', 0):,} notifications, "
            f"{c.get('dead', 0)} dead letters; {c.get('cases', 0):,} cases, "
            f"{c.get('cases_open', 0):,} open at the end",
            f"event types: {dict(sorted(self.event_types.items()))}",
            f"dead-letter reasons: {dict(sorted(self.dead_letter_reasons.items()))}",
        ]
        if self.ok:
            lines.append("violations: none")
        else:
            lines.append(f"violations: {len(self.violations)} {self.by_rule()}")
            for rule in self.by_rule():
                vs = self.rule(rule)
                lines += [f"  {rule}: {v.subject}: {v.detail}" for v in vs[:examples]]
                if len(vs) > examples:
                    lines.append(f"  {rule}: … {len(vs) - examples} more")
        return "\n".join(lines)


@dataclass
class Outputs:
    """Every output read, indexed once: per case, per directive, per id."""

    events: dict[str, dict[int, list[Record]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    first_seen: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    devents: dict[str, dict[int, list[Record]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    dfirst_seen: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    by_id: dict[str, list[Record]] = field(default_factory=lambda: defaultdict(list))
    orders_of: dict[str, dict[str, Record]] = field(default_factory=lambda: defaultdict(dict))
    dorders_of: dict[str, list[Record]] = field(default_factory=lambda: defaultdict(list))
    notices_of: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    received: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    dead: list[Record] = field(default_factory=list)
    dead_by_ref: dict[str, list[Record]] = field(default_factory=lambda: defaultdict(list))
    foreign: Counter[str] = field(default_factory=Counter)


def index(records: Iterable[Record], cases: set[str], directives: set[str],
          v: list[Violation]) -> Outputs:
    """One pass over the outputs in (topic, partition, offset) order."""
    o = Outputs()
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        if r.f.get("_undecodable"):
            v.append(Violation("undecodable", f"{r.topic}/{r.partition}@{r.offset}",
                               repr(r.raw[:80])))
        elif r.kind == "dead":
            o.dead.append(r)
            if r.f.get("ref"):
                o.dead_by_ref[r.f["ref"]].append(r)
        elif r.kind == "devent" or (r.kind == "order" and r.f.get("directive_id")):
            _index_directive(o, r, directives)
        elif (case_id := r.f.get("case_id")) not in cases:
            o.foreign[str(case_id)] += 1
        elif r.kind == "event":
            seq = r.f.get("seq")
            if seq not in o.events[case_id]:
                o.first_seen[case_id].append(seq)
            o.events[case_id][seq].append(r)
        elif r.kind == "order":
            oid = r.ce_id or str(r.f.get("order_id"))
            o.by_id[oid].append(r)
            o.orders_of[case_id].setdefault(oid, r)
        else:
            nid = r.ce_id or str(r.f.get("notification_id"))
            o.by_id[nid].append(r)
            o.notices_of[case_id].add(str(r.f.get("kind")))
            if r.f.get("kind") == "received":
                o.received[str(r.f.get("complaint_id"))].add(case_id)
    return o


def _index_directive(o: Outputs, r: Record, directives: set[str]) -> None:
    did = str(r.f.get("directive_id"))
    if did not in directives:
        o.foreign[did] += 1
    elif r.kind == "order":
        o.by_id[r.ce_id or str(r.f.get("order_id"))].append(r)
        o.dorders_of[did].append(r)
    else:
        seq = r.f.get("seq")
        if seq not in o.devents[did]:
            o.dfirst_seen[did].append(seq)
        o.devents[did][seq].append(r)


def trails(o: Outputs, v: list[Violation]) -> dict[str, list[dict[str, Any]]]:
    """Each case's events, one body per seq in seq order; forks, gaps and order checked."""
    out: dict[str, list[dict[str, Any]]] = {}
    for case_id, bucket in o.events.items():
        if not all(isinstance(seq, int) for seq in bucket):
            v.append(Violation("undecodable", case_id, f"event seqs {sorted(map(str, bucket))}"))
            continue
        bodies = _trail(case_id, bucket, o.first_seen[case_id], v, "")
        out[case_id] = [bodies[seq][0] for seq in sorted(bodies)]
    return out


def check_cityday(sent: CityDaySent, records: Iterable[Record]) -> CityReport:
    """The city day's rules over everything read (each violation names its rule):

    - ``lost_input``: a complaint neither opened its own case (``created``) nor joined one (a
      ``received`` notification naming it on another case); ``two_outcomes`` if both.
      ``unaccounted_merge``: a complaint case's ``merged`` events are not the complaints that
      joined it. ``unaccounted_alarms``: per alarm kind and street, alarms sent ≠ cases their
      ids opened + ``merged`` events on those cases; ``wrong_count`` if a case's ``alarms``
      count is not 1 + its merges.
    - ``lost_order`` / ``unexpected_order``: per case, the orders (distinct ids) by kind and
      target are exactly what its events call for: ``kind=case`` to the new holder of each
      dispatch, triage, return, assignment and reopening, ``reminder`` to the ``late_unit``
      of each ``warned``, ``supervision`` to the ``supervisor`` of each ``escalated``.
      ``misrouted``: an order not on its target's dispatch topic.
    - ``lost_notification``: a complaint case's ``received`` (per complaint), ``resolved``,
      ``reopened`` or ``closed`` event has no notification of that kind.
    - ``unaccounted_update``: per case and action, updates sent > their events (``ack`` →
      ``acknowledged``, ``return`` → ``returned``, ``assign`` → ``assigned``, ``resolve`` →
      ``resolved``, ``verify`` → ``verified``) + their dead letters; ``unexpected_event`` if
      more (an event no update explains, or one input with two outcomes).
      ``unaccounted_rating``: ratings sent > ``rated`` events + late ratings' dead letters.
    - ``unexpected_dead_letter``: any dead letter but a forged update's ``unauthorized`` or a
      rating's ``invalid_transition`` on a case already closed (its feedback window passed
      first); ``lost_dead_letter`` / ``wrong_reason`` for a forged update.
    - ``seq_gap``, ``seq_fork``, ``seq_order``, ``dup_conflict``, ``foreign``, and the
      directive rules: as in bench/crashload_check.py ``check``.
    """
    rep = CityReport()
    v = rep.violations
    own = {c.case_id for c in sent.complaints} | {a.case_id for a in sent.alarms}
    directives = {d.directive_id: d for d in sent.directives}
    o = index(records, own, set(directives), v)
    cases = trails(o, v)
    for subject, n in o.foreign.items():
        v.append(Violation("foreign", subject, f"{n} outputs about a case or directive this "
                           "run never opened"))
    counts: dict[str, Any] = {}
    counts |= _complaints(sent, o, cases, v)
    counts |= _alarms(sent, cases, v)
    counts |= _orders(o, cases, v)
    counts |= _notices(o, cases, v)
    counts |= _updates(sent, o, cases, v)
    dupdates = {u.update_id: u for u in sent.directive_updates}
    dcounts, dtypes = _check_directives(directives, dupdates, o.devents, o.dfirst_seen,
                                        o.dorders_of, o.dead_by_ref, v, TOPO)
    counts |= {k: n for k, n in dcounts.items() if not k.startswith("_")}
    counts["updates_as_event"] += dcounts["_as_event"]
    rep.dead_letter_reasons, counts["ratings_refused_in_time"] = _dead_letters(sent, o, cases, v)
    for oid, recs in o.by_id.items():
        if len(recs) > 1 and len(bodies := _distinct_bodies(recs)) > 1:
            v.append(Violation("dup_conflict", oid, f"{len(bodies)} bodies under one id"))
    n_events = sum(len(x) for b in o.events.values() for x in b.values())
    counts |= {"events": n_events, "events_duplicates": n_events - sum(map(len, cases.values())),
               "orders": sum(map(len, o.orders_of.values())), "dead": len(o.dead),
               "notices": sum(len(r) for r in o.by_id.values() if r[0].kind == "notice"),
               "cases": len(cases),
               "cases_open": sum(t[-1].get("state") != "closed" for t in cases.values() if t),
               "send_errors": sent.send_errors}
    rep.counts = counts
    rep.event_types = dict(Counter(e.get("type") for t in cases.values() for e in t))
    rep.directive_event_types = dict(dtypes)
    return rep


def _created(trail: list[dict[str, Any]]) -> bool:
    return bool(trail) and trail[0].get("type") == "created"


def _complaints(sent: CityDaySent, o: Outputs, cases: dict[str, list[dict[str, Any]]],
                v: list[Violation]) -> dict[str, Any]:
    joins: Counter[str] = Counter()
    opened = joined = 0
    for c in sent.complaints:
        named = o.received.get(c.complaint_id, set())
        mine = _created(cases.get(c.case_id, []))
        others = named - {c.case_id}
        if (mine and others) or len(others) > 1:
            v.append(Violation("two_outcomes", c.complaint_id,
                               f"own case {mine}, received on {sorted(others)[:3]}"))
        if mine:
            opened += 1
            if c.case_id not in named:
                v.append(Violation("lost_notification", c.case_id,
                                   f"no 'received' notification for {c.complaint_id}"))
        elif others:
            joined += 1
            joins.update(others)
        else:
            v.append(Violation("lost_input", c.complaint_id,
                               f"complaint (sent at {c.t:.1f}s) opened no case and joined none"))
    for case_id, trail in cases.items():
        if trail and trail[0].get("source") == "complaint":
            merged = sum(e.get("type") == "merged" for e in trail)
            if merged != joins[case_id]:
                v.append(Violation("unaccounted_merge", case_id,
                                   f"{merged} 'merged' events, {joins[case_id]} complaints "
                                   "received on it as joined"))
    return {"complaints_sent": len(sent.complaints), "complaints_opened": opened,
            "complaints_joined": joined}


def _alarms(sent: CityDaySent, cases: dict[str, list[dict[str, Any]]],
            v: list[Violation]) -> dict[str, Any]:
    groups: dict[tuple[str, str], list[SentAlarm]] = defaultdict(list)
    for a in sent.alarms:
        groups[(a.kind, a.street)].append(a)
    n_cases = n_joined = 0
    storm = (0, 0)
    for (kind, street), alarms in groups.items():
        opened = [a.case_id for a in alarms if _created(cases.get(a.case_id, []))]
        merges = 0
        for case_id in opened:
            trail = cases[case_id]
            m = sum(e.get("type") == "merged" for e in trail)
            merges += m
            last = [e["alarms"] for e in trail if e.get("type") == "merged" and e.get("alarms")]
            if last and last[-1] != 1 + m:
                v.append(Violation("wrong_count", case_id,
                                   f"'alarms' {last[-1]} after {m} merges"))
        if len(alarms) != len(opened) + merges:
            v.append(Violation("unaccounted_alarms", f"{kind}@{street}",
                               f"{len(alarms)} alarms sent, {len(opened)} cases opened + "
                               f"{merges} merged"))
        n_cases += len(opened)
        n_joined += merges
        stormy = [a for a in alarms if a.storm]
        if len(stormy) > storm[0]:  # the storm's street: cases its storm alarms opened
            storm = (len(stormy), sum(_created(cases.get(a.case_id, [])) for a in stormy))
    return {"alarms_sent": len(sent.alarms), "alarm_cases": n_cases, "alarms_joined": n_joined,
            "storm_alarms": sum(a.storm for a in sent.alarms),
            "storm_street_alarms": storm[0], "storm_street_cases": storm[1]}


def _expected_orders(trail: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    want: Counter[tuple[str, str]] = Counter()
    for e in trail:
        t = e.get("type")
        if t in HOLDER_CHANGES:
            want[("case", str(e.get("unit")))] += 1
        elif t == "warned" and e.get("late_unit"):
            want[("reminder", e["late_unit"])] += 1
        elif t == "escalated" and e.get("supervisor"):
            want[("supervision", e["supervisor"])] += 1
        elif t == "assisted":
            want.update(("case", u) for u in e.get("assist_units") or ())
    return want


def _orders(o: Outputs, cases: dict[str, list[dict[str, Any]]],
            v: list[Violation]) -> dict[str, Any]:
    kinds: Counter[str] = Counter()
    for case_id, trail in cases.items():
        orders = o.orders_of.get(case_id, {}).values()
        got = Counter((str(r.f.get("kind")), str(r.f.get("target"))) for r in orders)
        kinds.update(k for k, _ in got.elements())
        want = _expected_orders(trail)
        if missing := want - got:
            v.append(Violation("lost_order", case_id, f"no order for {dict(missing)}"))
        if extra := got - want:
            v.append(Violation("unexpected_order", case_id, f"orders no event calls for: "
                               f"{dict(extra)}"))
        for r in orders:
            target = str(r.f.get("target"))
            if target in TOPO and r.topic != NAMES.dispatch(TOPO.dispatch_key(target)):
                v.append(Violation("misrouted", case_id, f"order for {target} on {r.topic}"))
    return {"orders_by_kind": dict(kinds)}


def _notices(o: Outputs, cases: dict[str, list[dict[str, Any]]],
             v: list[Violation]) -> dict[str, Any]:
    for case_id, trail in cases.items():
        if not trail or trail[0].get("source") != "complaint":
            continue
        have = o.notices_of.get(case_id, set())
        for kind in ("resolved", "reopened", "closed"):
            if any(e.get("type") == kind for e in trail) and kind not in have:
                v.append(Violation("lost_notification", case_id,
                                   f"a '{kind}' event but no '{kind}' notification"))
    return {}


def _updates(sent: CityDaySent, o: Outputs, cases: dict[str, list[dict[str, Any]]],
             v: list[Violation]) -> dict[str, Any]:
    """Each update and rating sent: its event, or a dead letter, never nothing, never both."""
    types = {cid: Counter(e.get("type") for e in trail) for cid, trail in cases.items()}
    sent_for: dict[tuple[str, str], list[str]] = defaultdict(list)
    for u in sent.updates:
        if u.expect == "event":
            sent_for[(u.case_id, EVENT_FOR[u.action])].append(u.update_id)
        else:
            _forged_letters(u.update_id, f"{u.action} by {u.actor} on {u.case_id}", u.t,
                            o.dead_by_ref.get(u.update_id, []), v)
    for r in sent.ratings:
        sent_for[(r.case_id, "rated")].append(r.feedback_id)
    as_event = as_dead = late = 0
    for (case_id, etype), ids in sent_for.items():
        n = types.get(case_id, Counter())[etype]
        dead = sum(1 for i in ids if o.dead_by_ref.get(i))
        as_event += min(n, len(ids))
        as_dead += dead
        late += dead if etype == "rated" else 0
        rule = "unaccounted_rating" if etype == "rated" else "unaccounted_update"
        if n + dead < len(ids):
            v.append(Violation(rule, case_id, f"{len(ids)} sent for '{etype}': {n} events, "
                               f"{dead} dead letters (last {ids[-1]})"))
        elif n + dead > len(ids):
            v.append(Violation("unexpected_event", case_id, f"{n} '{etype}' events + {dead} "
                               f"dead letters for {len(ids)} sent"))
    for case_id, c in types.items():
        for etype in (*EVENT_FOR.values(), "rated"):
            if c[etype] and (case_id, etype) not in sent_for:
                v.append(Violation("unexpected_event", case_id,
                                   f"{c[etype]} '{etype}' event(s), nothing sent for it"))
    by_action = Counter(u.action if u.expect == "event" else "forged" for u in sent.updates)
    return {"updates_sent": len(sent.updates), "updates_by_action": dict(by_action),
            "updates_as_event": as_event, "updates_dead_lettered": as_dead,
            "ratings_sent": len(sent.ratings), "ratings_late": late,
            "ratings_by_value": dict(Counter(r.rating for r in sent.ratings))}


def _dead_letters(sent: CityDaySent, o: Outputs, cases: dict[str, list[dict[str, Any]]],
                  v: list[Violation]) -> tuple[dict[str, int], int]:
    """Only what the load meant: forged updates, and ratings that came after the close.
    Also returns how many of those ratings were sent (their ``at``) by the feedback due."""
    forged = {u.update_id for u in (*sent.updates, *sent.directive_updates)
              if u.expect == "unauthorized"}
    ratings = {r.feedback_id: r for r in sent.ratings}
    reasons: Counter[str] = Counter()
    in_time: set[str] = set()
    for r in o.dead:
        reason, ref = str(r.f.get("reason")), str(r.f.get("ref") or "")
        reasons[reason] += 1
        if ref in forged and reason == "unauthorized":
            continue
        rating = ratings.get(ref)
        trail = cases.get(rating.case_id, []) if rating is not None else []
        if reason == "invalid_transition" and any(e.get("type") == "closed" for e in trail):
            if _sent_by_due(r, trail):
                in_time.add(ref)
            continue
        v.append(Violation("unexpected_dead_letter", ref or str(r.key),
                           f"{reason}: {r.f.get('detail')}"))
    return dict(reasons), len(in_time)


def _sent_by_due(letter: Record, trail: list[dict[str, Any]]) -> bool:
    """The refused rating's own ``at`` is not after the feedback due of the case's last
    resolution: the citizen rated in time, the deadline was processed first."""
    try:
        at = datetime.fromisoformat(orjson.loads(letter.body()["original"])["at"])
        due = [e["due"] for e in trail if e.get("type") == "resolved" and e.get("due")][-1]
        return at <= datetime.fromisoformat(due)
    except (KeyError, IndexError, TypeError, ValueError, orjson.JSONDecodeError):
        return False


# ---------------------------------------------------------------------------- the figures


def case_event_bodies(records: Iterable[Record]) -> dict[str, list[dict[str, Any]]]:
    """Every case event read, by case (copies included: ``recount`` takes one per seq)."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.kind == "event" and not r.f.get("_undecodable"):
            out[str(r.f.get("case_id"))].append(r.body())
    return out


def recounted(records: Iterable[Record], tz: ZoneInfo) -> dict[str, Any]:
    """The city's figures over the days the events fall on, recounted from them alone."""
    days, now = recount(case_event_bodies(records), tz)
    if not days:
        return {}
    first, last = min(days), max(days)
    return stats(CITY, date.fromisoformat(first), date.fromisoformat(last), days, now, TOPO)


def differences(answer: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Every figure of the city and of each district that differs: ``unit field: got vs
    recount``."""
    out = [f"{CITY} {n}: {answer.get(n)} vs {want[n]}" for n in FIELDS if answer.get(n) != want[n]]
    got = {c.get("unit"): c for c in answer.get("children", [])}
    for child in want["children"]:
        mine = got.get(child["unit"], {})
        out += [f"{child['unit']} {n}: {mine.get(n)} vs {child[n]}" for n in FIELDS
                if mine.get(n) != child[n]]
    return out


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def latency_figures(samples: list[tuple[float, float]], kills: list[dict[str, Any]],
                    window: float = 10.0) -> dict[str, Any]:
    """Intake→first order as the load saw it: overall, per ``window`` s of sending, and
    after each kill: the worst window's p99 within 60 s and when p99 was under 1 s again."""
    bins: dict[int, list[float]] = defaultdict(list)
    for t, lat in samples:
        bins[int(t // window)].append(lat)
    windows = [{"from": k * window, "n": len(xs), "p50": percentile(xs, 0.5),
                "p99": percentile(xs, 0.99)} for k, xs in sorted(bins.items())]
    after = []
    for k in kills:
        near = [w for w in windows if k["at"] <= w["from"] + window and w["from"] < k["at"] + 60]
        back = next((w["from"] + window - k["at"] for w in windows
                     if w["from"] >= k["at"] and (w["p99"] or 0) < 1.0), None)
        after.append({"at": k["at"], "worker": k["worker"],
                      "worst_p99": max((w["p99"] or 0 for w in near), default=None),
                      "under_1s_after": back})
    lats = [lat for _, lat in samples]
    return {"n": len(lats), "p50": percentile(lats, 0.5), "p99": percentile(lats, 0.99),
            "max": max(lats, default=None), "windows": windows, "after_kills": after}
