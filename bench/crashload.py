"""Crash-under-load proof, black box: a load, an independent reader, a checker, an orchestrator.

Written against the integration contract only (``../shared/CONTRACT.md``): what goes in on
``zhida.intake.complaints``, ``zhida.intake.directives`` and ``zhida.unit.updates``, what must
come out on ``zhida.case.events``, ``zhida.directive.events``, ``zhida.dispatch.*``,
``zhida.citizen.notifications`` and ``zhida.deadletter``. Nothing here reads the engine's state
or internal topics.

- :class:`Load` produces complaints at a steady rate (aiokafka) on real street codes and, for
  every case whose dispatch order it has seen, an ``ack`` from the order's target, then (once
  the ``acknowledged`` event is seen) a ``resolve``; one case in ``forge_every`` also gets a
  forged ``ack`` from a street of another district, which must be dead-lettered
  ``unauthorized``. Creations and updates therefore run continuously.
- Every ``directive_every`` complaints it also issues a directive (政令) from the city centre
  to 3-20 random streets (``ack_within`` PT2H; one in ``report_every`` with a ``report_by``
  far ahead). For every ``kind=directive`` order it sees, the order's target acks (except one
  target left silent in one directive of ``silent_every``, so that some directives must *not*
  complete); once the target's ``acknowledged`` event is seen, a directive that asks for a
  report gets the target's ``report``. One directive ack in ``forge_every`` is shadowed by a
  forged ack from a street that is not a target: dead letter ``unauthorized``.
- :class:`Reader` reads every output topic from the beginning with confluent-kafka
  (librdkafka), a client that shares no code with the engine's aiokafka/faust stack: a client
  bug common to producer and reader cannot hide a loss. It assigns partitions (no group).
- :func:`check` is a pure function over what was sent and what was read; it returns a
  :class:`Report` with counts and violations (rules in its docstring).
- :class:`CrashRun` starts a worker, runs the load, SIGKILLs the worker's process group on a
  schedule and restarts it on the same data dir, then waits (condition with a deadline) until
  the outputs are complete and checks them.

Soak: ``python -m tests.crashload --duration 300 --kill-every 20 --rate 100`` (``make
bench-crash``); the test is ``tests/integration/test_crash.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from engine.core.ids import case_id_for
from engine.data.catalogue import Catalogue
from engine.data.topology import Topology
from engine.tools.broker import EmbeddedBroker, free_port
from tests.support.broker import Worker
from topics import TopicNames

ROOT = Path(__file__).resolve().parents[1]
NAMES = TopicNames("zhida.")
TOPO = Topology.load()
# complaint categories a street owns: a complaint on a street code is dispatched to that street
STREET_CATEGORIES = sorted(c.code for c in Catalogue.load().by_code.values()
                           if c.source == "complaint" and c.owner == "street")
CHANNELS = ("hotline", "app", "web", "grid", "media")

TICK = 0.01  # pacing of the load loop (not a synchronisation)

# rules whose violations can still heal while outputs arrive; the drain waits for them
LOSS_RULES = ("lost_order", "lost_event", "lost_notification", "unaccounted_update",
              "lost_dead_letter", "seq_gap", "lost_task_order", "lost_directive_event")
EVENT_FOR_ACTION = {"ack": "acknowledged", "resolve": "resolved"}
DIRECTIVE_EVENT_FOR_ACTION = {"ack": "acknowledged", "report": "reported"}
CITY = "500000"
DIRECTIVE_TARGETS = (3, 20)  # streets per directive, inclusive
REPORT_BY = "2099-01-01T00:00:00+08:00"  # far ahead: no report deadline falls due in a run


def _now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------- what was sent


@dataclass(slots=True)
class SentComplaint:
    complaint_id: str
    case_id: str
    street: str
    category: str
    t: float  # seconds since the load started
    confirmed: bool = False
    error: str | None = None


@dataclass(slots=True)
class SentUpdate:
    update_id: str
    case_id: str
    actor: str
    action: str  # ack, resolve
    expect: str  # "event": the engine must accept it; "unauthorized": must dead-letter it
    t: float
    confirmed: bool = False
    error: str | None = None


@dataclass(slots=True)
class SentDirective:
    directive_id: str
    targets: tuple[str, ...]  # street codes, distinct
    report: bool  # has report_by: completion needs every target's report too
    silent: str | None  # the target the load never lets ack (None: all of them ack)
    t: float
    confirmed: bool = False
    error: str | None = None


@dataclass(slots=True)
class SentDirectiveUpdate:
    update_id: str
    directive_id: str
    actor: str  # the target itself, or (forged) a street that is not a target
    action: str  # ack, report
    expect: str  # "event" or "unauthorized"
    t: float
    confirmed: bool = False
    error: str | None = None


Sent = SentComplaint | SentUpdate | SentDirective | SentDirectiveUpdate


@dataclass
class SentLog:
    """Only what the broker confirmed; the checker's view of the input."""

    complaints: list[SentComplaint]
    updates: list[SentUpdate]
    send_errors: int = 0
    directives: list[SentDirective] = field(default_factory=list)
    directive_updates: list[SentDirectiveUpdate] = field(default_factory=list)


# ---------------------------------------------------------------------------- what was read


@dataclass(slots=True)
class Record:
    """One output message: raw value kept for body comparison, a few fields extracted."""

    topic: str
    partition: int
    offset: int
    key: str | None
    raw: bytes
    ce_id: str | None
    kind: str  # event (case), devent (directive), order, notice, dead
    f: dict[str, Any]

    def body(self) -> Any:
        return orjson.loads(self.raw)


_FIELDS = {
    "event": ("event_id", "case_id", "seq", "type", "state", "unit"),
    "devent": ("event_id", "directive_id", "seq", "type", "target", "actor", "targets"),
    "order": ("order_id", "kind", "case_id", "directive_id", "target", "role"),
    "notice": ("notification_id", "case_id", "kind", "complaint_id"),
    "dead": ("reason", "source_topic", "partition", "offset"),
}


def kind_of(topic: str) -> str:
    if topic == NAMES.case_events:
        return "event"
    if topic == NAMES.directive_events:
        return "devent"
    if topic == NAMES.notifications:
        return "notice"
    if topic == NAMES.deadletter:
        return "dead"
    return "order"


def make_record(topic: str, partition: int, offset: int, key: bytes | None, raw: bytes,
                headers: Iterable[tuple[str, bytes]] | None) -> Record:
    kind = kind_of(topic)
    hdrs = dict(headers or ())
    ce = hdrs.get("ce_id")
    f: dict[str, Any] = {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        f["_undecodable"] = True
    else:
        f = {k: value.get(k) for k in _FIELDS[kind]}
        if kind == "dead":
            f["detail"] = str(value.get("detail") or "")[:200]
            f["ref"] = _dead_letter_ref(value)
    return Record(topic, partition, offset, key.decode("utf-8", "replace") if key else None,
                  raw, ce.decode("utf-8", "replace") if ce else None, kind, f)


def _dead_letter_ref(value: dict[str, Any]) -> str | None:
    """The idempotency key of the refused input (update_id or complaint_id), if readable."""
    original = value.get("original")
    if not isinstance(original, str):
        return None
    try:
        o = orjson.loads(original)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(o, dict):
        return None
    ref = (o.get("update_id") or o.get("complaint_id") or o.get("feedback_id")
           or o.get("event_id"))
    return ref if isinstance(ref, str) else None


def output_topics() -> list[str]:
    return [NAMES.case_events, NAMES.directive_events, NAMES.notifications, NAMES.deadletter,
            *(NAMES.dispatch(d) for d in (*TOPO.districts, "city"))]


class Reader:
    """Every output topic from offset 0, by librdkafka in a thread; records in arrival order."""

    def __init__(self, bootstrap: str, topics: Sequence[str] | None = None) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics or output_topics())
        self._records: list[Record] = []
        self._lock = threading.Lock()
        self._more = threading.Condition(self._lock)  # notified when records are added
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    def start(self, timeout: float = 15.0) -> Reader:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": f"crashload-reader-{uuid.uuid4().hex[:8]}",  # required; never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 20,
        })
        md = consumer.list_topics(timeout=timeout)
        missing = [t for t in self.topics if t not in md.topics or md.topics[t].error]
        if missing:
            consumer.close()
            raise RuntimeError(f"output topics missing on the broker: {missing[:5]}")
        tps = [TopicPartition(t, p, OFFSET_BEGINNING)
               for t in self.topics for p in md.topics[t].partitions]
        consumer.assign(tps)
        self._thread = threading.Thread(target=self._run, args=(consumer,), daemon=True,
                                        name="crashload-reader")
        self._thread.start()
        return self

    def _run(self, consumer: Consumer) -> None:
        try:
            while not self._stop.is_set():
                batch = consumer.consume(num_messages=2000, timeout=0.1)
                out = []
                for m in batch:
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            self.errors.append(str(err))
                        continue
                    out.append(make_record(m.topic(), m.partition(), m.offset(), m.key(),
                                           m.value() or b"", m.headers()))
                if out:
                    with self._more:
                        self._records.extend(out)
                        self._more.notify_all()
        finally:
            consumer.close()

    def since(self, index: int) -> tuple[list[Record], int]:
        with self._lock:
            new = self._records[index:]
            return new, index + len(new)

    def wait_for_more(self, seen: int, timeout: float) -> bool:
        """Block until more than ``seen`` records are held, or ``timeout`` s pass."""
        with self._more:
            return self._more.wait_for(lambda: len(self._records) > seen,
                                       max(timeout, 0.0))

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


# ---------------------------------------------------------------------------- the load


class Load:
    """Complaints at ``rate``/s; ack (then resolve) for each case whose order has been seen;
    a directive every ``directive_every`` complaints, acked (then reported) by its targets."""

    def __init__(self, bootstrap: str, reader: Reader, rate: float, *, forge_every: int = 10,
                 directive_every: int = 50, report_every: int = 3, silent_every: int = 5,
                 seed: int | None = None, tag: str | None = None) -> None:
        self.bootstrap = bootstrap
        self.reader = reader
        self.rate = rate
        self.forge_every = forge_every
        self.directive_every = directive_every
        self.report_every = report_every
        self.silent_every = silent_every
        self.rng = random.Random(seed)
        self.tag = tag or uuid.uuid4().hex[:6]
        self.complaints: dict[str, SentComplaint] = {}  # by case_id
        self.updates: dict[str, SentUpdate] = {}  # by update_id
        self.directives: dict[str, SentDirective] = {}  # by directive_id
        self.directive_updates: dict[str, SentDirectiveUpdate] = {}  # by update_id
        self._acked: set[str] = set()
        self._resolved: set[str] = set()
        self._task_acked: set[tuple[str, str]] = set()  # (directive_id, target)
        self._task_reported: set[tuple[str, str]] = set()
        self._n_directives = 0
        self._stop = asyncio.Event()
        self._t0 = 0.0
        self._n = 0

    def stop(self) -> None:
        self._stop.set()

    def sent(self) -> SentLog:
        every: list[Sent] = [*self.complaints.values(), *self.updates.values(),
                             *self.directives.values(), *self.directive_updates.values()]
        return SentLog(
            complaints=[c for c in self.complaints.values() if c.confirmed],
            updates=[u for u in self.updates.values() if u.confirmed],
            send_errors=sum(1 for c in every if c.error),
            directives=[d for d in self.directives.values() if d.confirmed],
            directive_updates=[u for u in self.directive_updates.values() if u.confirmed],
        )

    def counts(self) -> dict[str, int]:
        by = Counter(u.action if u.expect == "event" else "forged" for u in self.updates.values())
        dby = Counter(u.action if u.expect == "event" else "forged"
                      for u in self.directive_updates.values())
        return {"complaints": len(self.complaints), "acks": by["ack"],
                "resolves": by["resolve"], "forged": by["forged"],
                "directives": len(self.directives),
                "tasks": sum(len(d.targets) for d in self.directives.values()),
                "directive_acks": dby["ack"], "directive_reports": dby["report"],
                "directive_forged": dby["forged"]}

    def progress_line(self) -> str:
        """What was sent so far, for the run's progress lines."""
        c = self.counts()
        return (f"{c['complaints']} complaints, {c['acks']} acks, {c['resolves']} resolves, "
                f"{c['forged']} forged, {c['directives']} directives ({c['tasks']} tasks, "
                f"{c['directive_acks']} acks, {c['directive_reports']} reports, "
                f"{c['directive_forged']} forged)")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks="all")
        await producer.start()
        try:
            self._t0 = loop.time()
            cursor = 0
            while not self._stop.is_set():
                due = int((loop.time() - self._t0) * self.rate)
                while self._n < due:
                    await self._complaint(producer)
                new, cursor = self.reader.since(cursor)
                for r in new:
                    await self._react(producer, r)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), TICK)
        finally:
            with contextlib.suppress(Exception):
                await producer.flush()
            await producer.stop()

    def _elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self._t0

    async def _send(self, producer: AIOKafkaProducer, topic: str, key: str,
                    value: dict[str, Any], rec: Sent) -> None:
        def done(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                rec.error = "cancelled"
            elif fut.exception() is not None:
                rec.error = repr(fut.exception())
            else:
                rec.confirmed = True

        try:
            fut = await producer.send(topic, orjson.dumps(value), key=key.encode())
        except Exception as e:  # recorded, reported as a send error
            rec.error = repr(e)
            return
        fut.add_done_callback(done)

    async def _complaint(self, producer: AIOKafkaProducer) -> None:
        self._n += 1
        complaint_id = f"cl-{self.tag}-{self._n:07d}"
        street = self.rng.choice(TOPO.streets)
        category = self.rng.choice(STREET_CATEGORIES)
        case_id = case_id_for("complaint", complaint_id)
        rec = SentComplaint(complaint_id, case_id, street, category, self._elapsed())
        self.complaints[case_id] = rec
        body = {"complaint_id": complaint_id, "channel": self.rng.choice(CHANNELS),
                "category": category, "description": f"压力测试诉求 {self._n}",
                "location": {"unit": street}, "reported_at": _now_rfc3339(),
                "citizen": {"name": "测试", "phone": "13800000000"}}
        await self._send(producer, NAMES.complaints, complaint_id, body, rec)
        if self.directive_every and self._n % self.directive_every == 0:
            await self._directive(producer)

    async def _directive(self, producer: AIOKafkaProducer) -> None:
        self._n_directives += 1
        n = self._n_directives
        directive_id = f"D-{self.tag}-{n:05d}"
        targets = tuple(self.rng.sample(TOPO.streets, self.rng.randint(*DIRECTIVE_TARGETS)))
        report = bool(self.report_every) and n % self.report_every == 0
        silent = (self.rng.choice(targets)
                  if self.silent_every and n % self.silent_every == 0 else None)
        rec = SentDirective(directive_id, targets, report, silent, self._elapsed())
        self.directives[directive_id] = rec
        body: dict[str, Any] = {
            "directive_id": directive_id, "issuer": CITY, "title": f"压力测试政令 {n}",
            "body": "请于两小时内签收，按要求落实并反馈。", "targets": {"units": list(targets)},
            "ack_within": "PT2H", "issued_at": _now_rfc3339()}
        if report:
            body["report_by"] = REPORT_BY
        await self._send(producer, NAMES.directives, directive_id, body, rec)

    async def _update(self, producer: AIOKafkaProducer, case_id: str, actor: str, action: str,
                      expect: str) -> None:
        update_id = f"up-{self.tag}-{uuid.uuid4().hex[:16]}"
        rec = SentUpdate(update_id, case_id, actor, action, expect, self._elapsed())
        self.updates[update_id] = rec
        body = {"update_id": update_id, "actor": actor, "action": action,
                "at": _now_rfc3339(), "case_id": case_id, "note": "crashload"}
        await self._send(producer, NAMES.unit_updates, case_id, body, rec)

    async def _directive_update(self, producer: AIOKafkaProducer, directive_id: str,
                                actor: str, action: str, expect: str) -> None:
        update_id = f"du-{self.tag}-{uuid.uuid4().hex[:16]}"
        rec = SentDirectiveUpdate(update_id, directive_id, actor, action, expect,
                                  self._elapsed())
        self.directive_updates[update_id] = rec
        body = {"update_id": update_id, "actor": actor, "action": action,
                "at": _now_rfc3339(), "directive_id": directive_id}
        if action == "report":
            body["note"] = f"crashload: {actor} 已落实"
        await self._send(producer, NAMES.unit_updates, directive_id, body, rec)

    async def _react_directive(self, producer: AIOKafkaProducer, r: Record) -> None:
        d = self.directives.get(str(r.f.get("directive_id")))
        target = r.f.get("target")
        if d is None or not isinstance(target, str) or target not in d.targets:
            return
        task = (d.directive_id, target)
        if (r.kind == "order" and r.f.get("kind") == "directive" and target != d.silent
                and task not in self._task_acked):
            self._task_acked.add(task)
            if self.forge_every and len(self._task_acked) % self.forge_every == 0:
                await self._directive_update(producer, d.directive_id,
                                             self._non_target(d.targets), "ack", "unauthorized")
            await self._directive_update(producer, d.directive_id, target, "ack", "event")
        elif (r.kind == "devent" and r.f.get("type") == "acknowledged" and d.report
              and task in self._task_acked and task not in self._task_reported):
            self._task_reported.add(task)
            await self._directive_update(producer, d.directive_id, target, "report", "event")

    async def _react(self, producer: AIOKafkaProducer, r: Record) -> None:
        if r.kind == "devent" or (r.kind == "order" and r.f.get("directive_id")):
            await self._react_directive(producer, r)
            return
        case_id = r.f.get("case_id")
        if case_id not in self.complaints:
            return
        if (r.kind == "order" and r.f.get("kind") == "case" and r.f.get("role") == "handler"
                and case_id not in self._acked and isinstance(r.f.get("target"), str)):
            self._acked.add(case_id)
            target = r.f["target"]
            if self.forge_every and len(self._acked) % self.forge_every == 0:
                await self._update(producer, case_id, self._forger(target), "ack",
                                   "unauthorized")
            await self._update(producer, case_id, target, "ack", "event")
        elif (r.kind == "event" and r.f.get("type") == "acknowledged"
              and case_id in self._acked and case_id not in self._resolved
              and isinstance(r.f.get("unit"), str)):
            self._resolved.add(case_id)
            await self._update(producer, case_id, r.f["unit"], "resolve", "event")

    def _non_target(self, targets: tuple[str, ...]) -> str:
        """A street the directive does not name: it has no task to ack (nor is an ancestor)."""
        while True:
            s = self.rng.choice(TOPO.streets)
            if s not in targets:
                return s

    def _forger(self, target: str) -> str:
        """A street of another district: neither the holder, a co-handler nor an ancestor."""
        home = TOPO.district_of(target)
        while True:
            s = self.rng.choice(TOPO.streets)
            if TOPO.district_of(s) != home:
                return s


# ---------------------------------------------------------------------------- the checker


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


# ---------------------------------------------------------------------------- the orchestrator


@dataclass
class CrashConfig:
    duration: float = 60.0  # seconds of load (extended to cover the last restart + tail)
    kill_every: float = 20.0
    rate: float = 100.0  # complaints per second (updates come on top, up to 2 per case)
    kills: int | None = None  # exact number of kills; None: every kill_every within duration
    min_uptime: float = 3.0  # never kill sooner than this after the worker became ready
    jitter: float = 2.0  # each kill comes up to this much later (seeded), to vary its phase
    tail: float = 5.0  # load keeps running this long after the last restart is ready
    ready_timeout: float = 60.0
    drain_timeout: float = 60.0  # hard cap on the wait for the outputs after the load
    drain_stall: float = 15.0  # ...which ends sooner once no new output has come for this long
    forge_every: int = 10  # one case (and one directive task) in N gets a forged ack (0: none)
    directive_every: int = 50  # a directive to 3-20 streets every N complaints (0: none)
    report_every: int = 3  # one directive in N asks for a report (report_by)
    silent_every: int = 5  # one directive in N has a target that never acks (never completes)
    seed: int | None = None
    progress_every: float = 5.0
    worker_env: dict[str, str] = field(default_factory=dict)
    workers: int = 1  # workers of one group; with several, they are killed in turn
    down: float = 5.0  # with several workers: seconds a killed one stays down


@dataclass
class Kill:
    at: float  # seconds since the load started
    uptime: float  # seconds the worker had been ready
    restart_to_ready: float  # from the new process's spawn to /readyz 200
    worker: int = 0


@dataclass
class CrashResult:
    config: CrashConfig
    report: Report
    kills: list[Kill]
    first_ready: float  # fresh start to /readyz
    load_seconds: float
    drain_seconds: float  # load stopped → outputs complete (or the drain timeout)
    drain_complete: bool
    total_seconds: float
    load_counts: dict[str, int]
    reader_errors: list[str]
    workdir: str
    not_ready_at_end: list[str] = field(default_factory=list)  # "w1: 503 consumer stalled…"
    extra: dict[str, Any] = field(default_factory=dict)  # a subclass run's own figures

    def summary(self) -> str:
        c = self.config
        rs = [k.restart_to_ready for k in self.kills]
        lines = [
            f"crash run: rate {c.rate:g}/s, {len(self.kills)} SIGKILLs, "
            f"load {self.load_seconds:.1f} s, total {self.total_seconds:.1f} s "
            f"(workdir {self.workdir})",
            f"fresh start to ready: {self.first_ready:.1f} s"
            + (f" ({c.workers} workers, each down {c.down:g} s after its kill)"
               if c.workers > 1 else ""),
        ]
        for i, k in enumerate(self.kills, 1):
            who = f"w{k.worker} " if c.workers > 1 else ""
            lines.append(f"kill {i} {who}at {k.at:6.1f} s (up {k.uptime:5.1f} s): "
                         f"restart to ready {k.restart_to_ready:5.1f} s")
        if rs:
            lines.append(f"restart to ready: min {min(rs):.1f} s, max {max(rs):.1f} s, "
                         f"mean {sum(rs) / len(rs):.1f} s")
        lines.append(f"drain: {'complete' if self.drain_complete else 'NOT complete'} after "
                     f"{self.drain_seconds:.1f} s")
        if self.not_ready_at_end:
            lines.append(f"not ready at the end: {'; '.join(self.not_ready_at_end)}")
        if self.reader_errors:
            lines.append(f"reader errors: {len(self.reader_errors)}: {self.reader_errors[:3]}")
        lines.append(self.report.summary())
        lines.append("RESULT: " + ("OK" if self.report.ok else "VIOLATIONS"))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "kills": [asdict(k) for k in self.kills],
                "first_ready": self.first_ready, "load_seconds": self.load_seconds,
                "drain_seconds": self.drain_seconds, "drain_complete": self.drain_complete,
                "total_seconds": self.total_seconds, "load_counts": self.load_counts,
                "reader_errors": self.reader_errors[:20],
                "not_ready_at_end": self.not_ready_at_end,
                "report": self.report.to_json(),  # not the work dir: a path on one machine
                **({"extra": self.extra} if self.extra else {})}


class CrashRun:
    def __init__(self, bootstrap: str, workdir: Path, config: CrashConfig,
                 progress: Callable[[str], None] | None = None) -> None:
        self.bootstrap = bootstrap
        self.workdir = Path(workdir)
        self.cfg = config
        self._progress = progress or (lambda _msg: None)
        if config.workers == 1:  # the single worker's paths, as they always were
            self.workers = [Worker(bootstrap, free_port(), self.workdir / "data",
                                   self.workdir / "worker.log", env=dict(config.worker_env))]
        else:
            self.workers = [Worker(bootstrap, free_port(), self.workdir / f"w{i}" / "data",
                                   self.workdir / f"w{i}.log", env=dict(config.worker_env))
                            for i in range(config.workers)]
        self.kills: list[Kill] = []
        self._t0 = 0.0
        self._load_t0 = 0.0
        self._ready_at = [0.0] * config.workers
        self._restarts: dict[int, asyncio.Task[None]] = {}  # several workers: ones down
        self._phase = "starting"

    @property
    def worker(self) -> Worker:
        return self.workers[0]

    def log(self, msg: str) -> None:
        self._progress(f"[crash {time.monotonic() - self._t0:7.1f}s] {msg}")

    def _kill(self, i: int) -> tuple[float, float]:
        """SIGKILL worker ``i``'s process group: (seconds into the load, its uptime)."""
        w = self.workers[i]
        proc = w.proc
        assert proc is not None
        at = time.monotonic() - self._load_t0
        uptime = time.monotonic() - self._ready_at[i]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        w.proc = None
        return at, uptime

    def _start(self, i: int) -> float:
        """Start worker ``i`` and wait for /readyz: seconds from spawn to ready."""
        t = time.monotonic()
        self.workers[i].start(self.cfg.ready_timeout)
        self._ready_at[i] = time.monotonic()
        return self._ready_at[i] - t

    def _kill_and_restart(self) -> Kill:
        at, uptime = self._kill(0)
        return Kill(at, uptime, self._start(0))

    async def _kill_then_restart_later(self, i: int) -> None:
        """Several workers: kill one now, restart it ``down`` s later while the others
        keep their partitions (the case a single worker cannot show)."""
        at, uptime = await asyncio.to_thread(self._kill, i)
        self.log(f"SIGKILL w{i}; restart in {self.cfg.down:g} s")

        async def restart() -> None:
            await asyncio.sleep(self.cfg.down)  # the schedule: a worker down for a while
            took = await asyncio.to_thread(self._start, i)
            self.kills.append(Kill(at, uptime, took, i))
            self.log(f"w{i} ready again after {took:.1f} s")

        self._restarts[i] = asyncio.create_task(restart())

    async def _report_progress(self, load: Load, reader: Reader) -> None:
        """A progress line every ``progress_every`` s until the load stops (a period, not a
        synchronisation: the run waits on its own conditions)."""
        while not load._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(load._stop.wait(), self.cfg.progress_every)
            self.log(f"{self._phase}: sent {load.progress_line()}; "
                     f"read {len(reader)} outputs; kills {len(self.kills)}")

    async def run(self) -> CrashResult:
        cfg = self.cfg
        self._t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        reader: Reader | None = None
        load: Load | None = None
        load_task: asyncio.Task[None] | None = None
        progress_task: asyncio.Task[None] | None = None
        try:
            await asyncio.gather(*(asyncio.to_thread(self._start, i)
                                   for i in range(len(self.workers))))
            first_ready = max(self._ready_at) - self._t0
            self.log(f"{len(self.workers)} worker(s) ready in {first_ready:.1f} s (http "
                     f"{', '.join(str(w.http_port) for w in self.workers)})")
            reader = await asyncio.to_thread(Reader(self.bootstrap).start)
            load = self._make_load(reader)
            self._load_t0 = time.monotonic()
            load_task = asyncio.create_task(load.run())
            progress_task = asyncio.create_task(self._report_progress(load, reader))
            self._phase = "load"
            end = self._load_t0 + cfg.duration
            rng = random.Random(cfg.seed)
            next_kill = self._load_t0 + cfg.kill_every + rng.uniform(0, cfg.jitter)

            several = len(self.workers) > 1
            killed = 0  # kills made (with several workers, restarts may still be pending)

            def more_kills() -> bool:
                if cfg.kills is not None:
                    return killed < cfg.kills
                return next_kill < end

            while True:
                if load_task.done():
                    load_task.result()  # raises the load's error
                    raise RuntimeError("load stopped by itself")
                now = time.monotonic()
                victim = killed % len(self.workers)
                if more_kills() and now >= next_kill and several:
                    pending = self._restarts.get(victim)
                    if pending is not None and not pending.done():  # still down: wait for it
                        await asyncio.wait({pending, load_task},
                                           return_when=asyncio.FIRST_COMPLETED)
                        continue
                    if now < self._ready_at[victim] + cfg.min_uptime:
                        next_kill = self._ready_at[victim] + cfg.min_uptime
                        continue
                    await self._kill_then_restart_later(victim)
                    killed += 1
                    next_kill += cfg.kill_every + rng.uniform(0, cfg.jitter)
                    continue
                if more_kills() and now >= next_kill:
                    self._phase = "restarting"
                    pid = self.worker.proc.pid if self.worker.proc else None
                    self.log(f"SIGKILL worker process group {pid}")
                    k = await asyncio.to_thread(self._kill_and_restart)
                    self.kills.append(k)
                    killed += 1
                    self._phase = "load"
                    self.log(f"kill {len(self.kills)}: ready again after "
                             f"{k.restart_to_ready:.1f} s")
                    next_kill = (max(next_kill + cfg.kill_every,
                                     self._ready_at[0] + cfg.min_uptime)
                                 + rng.uniform(0, cfg.jitter))
                    continue
                pending_restarts = [t for t in self._restarts.values() if not t.done()]
                if not more_kills() and pending_restarts:
                    await asyncio.wait({*pending_restarts, load_task},
                                       return_when=asyncio.FIRST_COMPLETED)
                    continue
                for t in self._restarts.values():
                    if t.done():
                        t.result()  # a restart that failed fails the run
                stop_at = max(end, max(self._ready_at) + cfg.tail) if killed else end
                if not more_kills() and now >= stop_at:
                    break
                wake = min(next_kill, stop_at) if more_kills() else stop_at
                # the schedule's next point, or at once if the load dies before it
                await asyncio.wait({load_task}, timeout=max(0.0, wake - now))
            load.stop()
            await load_task
            load_seconds = time.monotonic() - self._load_t0
            self._phase = "drain"
            self.log(f"load stopped after {load_seconds:.1f} s; waiting for the outputs")
            sent = load.sent()
            drain_t0 = time.monotonic()
            report = await self._drain(load, sent, reader)
            drain_seconds = time.monotonic() - drain_t0
            self.log(f"drain {'complete' if report.complete else 'timed out'} after "
                     f"{drain_seconds:.1f} s")
            extra = await self._finish(load, reader, report)
            not_ready = await asyncio.to_thread(self._not_ready)
            return CrashResult(
                config=cfg, report=report, kills=list(self.kills), first_ready=first_ready,
                load_seconds=load_seconds, drain_seconds=drain_seconds,
                drain_complete=report.complete, total_seconds=time.monotonic() - self._t0,
                load_counts=load.counts(), reader_errors=list(reader.errors),
                workdir=str(self.workdir), not_ready_at_end=not_ready, extra=extra)
        finally:
            if progress_task is not None:
                progress_task.cancel()
            if load is not None:
                load.stop()
            if load_task is not None and not load_task.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(load_task, 10)
            if reader is not None:
                await asyncio.to_thread(reader.stop)
            for t in self._restarts.values():
                t.cancel()
            await asyncio.gather(*self._restarts.values(), return_exceptions=True)
            await asyncio.to_thread(self._stop_workers)

    def _make_load(self, reader: Reader) -> Load:
        """The load of the run; a subclass brings its own (bench/cityday.py)."""
        cfg = self.cfg
        return Load(self.bootstrap, reader, cfg.rate, forge_every=cfg.forge_every,
                    directive_every=cfg.directive_every, report_every=cfg.report_every,
                    silent_every=cfg.silent_every, seed=cfg.seed)

    async def _drain(self, load: Load, sent: SentLog, reader: Reader) -> Report:
        """Wait, after the load, until the outputs are complete (or stop coming); the report."""
        cfg = self.cfg
        drain_t0 = time.monotonic()
        deadline = drain_t0 + cfg.drain_timeout
        # a worker still catching up on its downtime's backlog is waited for (to the cap);
        # one that has stopped producing is not: the wait ends drain_stall after the last
        # new output, so a real loss fails fast and a slow machine does not fail at all
        seen, last_new = -1, drain_t0
        while True:
            outputs = reader.snapshot()
            now = time.monotonic()
            if len(outputs) != seen:
                seen, last_new = len(outputs), now
            report = check(sent, outputs, TOPO)
            if report.complete or now >= deadline or now - last_new >= cfg.drain_stall:
                return report
            # re-check when more outputs have come (or the stall/deadline is reached)
            await asyncio.to_thread(reader.wait_for_more, seen,
                                    min(deadline, last_new + cfg.drain_stall) - now)

    async def _finish(self, load: Load, reader: Reader, report: Report) -> dict[str, Any]:
        """After the drain, before the workers stop: a subclass's own measurements (kept in
        ``CrashResult.extra``)."""
        return {}

    def _not_ready(self) -> list[str]:
        """Workers whose /readyz is not 200 after the drain (a stalled partition says so)."""
        out = []
        for i, w in enumerate(self.workers):
            try:
                status, body = w.get("/readyz")
            except OSError as e:
                status, body = 0, repr(e).encode()
            if status != 200:
                out.append(f"w{i}: {status} {body[:200].decode('utf-8', 'replace')}")
        return out

    def _stop_workers(self) -> None:
        for w in self.workers:
            proc = w.proc
            w.stop()
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


# ---------------------------------------------------------------------------- soak entry point


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tests.crashload",
        description="SIGKILL the worker under load on a fresh embedded broker, then check "
                    "every output against the contract (lost, gaps, forks, dead letters).")
    p.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    p.add_argument("--kill-every", type=float, default=20.0, help="seconds between SIGKILLs")
    p.add_argument("--kills", type=int, default=None,
                   help="exact number of kills (default: every --kill-every within --duration)")
    p.add_argument("--rate", type=float, default=100.0, help="complaints per second")
    p.add_argument("--forge-every", type=int, default=10,
                   help="one case (and one directive task) in N gets a forged ack that must "
                        "be dead-lettered (0: none)")
    p.add_argument("--directive-every", type=int, default=50,
                   help="a directive to 3-20 random streets every N complaints (0: none)")
    p.add_argument("--report-every", type=int, default=3,
                   help="one directive in N asks for a report (report_by far ahead)")
    p.add_argument("--silent-every", type=int, default=5,
                   help="one directive in N has a target that never acks (must not complete)")
    p.add_argument("--min-uptime", type=float, default=3.0,
                   help="never kill sooner than this after the worker is ready")
    p.add_argument("--jitter", type=float, default=2.0,
                   help="each kill comes up to this many seconds later (random phase)")
    p.add_argument("--ready-timeout", type=float, default=60.0)
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument("--drain-stall", type=float, default=15.0,
                   help="the drain ends this long after the last new output")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workers", type=int, default=1,
                   help="workers of one group, killed in turn (default 1)")
    p.add_argument("--down", type=float, default=5.0,
                   help="with several workers: seconds a killed worker stays down")
    p.add_argument("--workdir", type=Path, default=None,
                   help="worker data dir and logs (default var/crashload/<time>)")
    p.add_argument("--json", type=Path, default=None, help="write a JSON summary here")
    args = p.parse_args(argv)

    workdir = args.workdir or ROOT / "var" / "crashload" / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = CrashConfig(duration=args.duration, kill_every=args.kill_every, rate=args.rate,
                      kills=args.kills, min_uptime=args.min_uptime, jitter=args.jitter,
                      ready_timeout=args.ready_timeout, drain_timeout=args.drain_timeout,
                      drain_stall=args.drain_stall, forge_every=args.forge_every,
                      directive_every=args.directive_every,
                      report_every=args.report_every, silent_every=args.silent_every,
                      seed=args.seed, workers=args.workers, down=args.down)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
    progress(f"broker on {broker.bootstrap}, workdir {workdir}")
    try:
        result = asyncio.run(CrashRun(broker.bootstrap, workdir, cfg, progress).run())
    finally:
        proc = broker.proc
        broker.stop()
        if proc is not None and proc.poll() is None:
            progress(f"broker pid {proc.pid} still running after stop")
    print(result.summary())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2))
        print(f"JSON summary: {args.json}")
    return 0 if result.report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
