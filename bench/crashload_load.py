"""The crash soak's load: what is sent, and the record of it (bench/crashload.py).

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
- The ``Sent*`` records: every input, with what the engine must make of it; :class:`SentLog`,
  the ones the broker confirmed, is the checker's view of the input
  (bench/crashload_check.py).

The load reacts to the outputs the reader (bench/crashload_read.py) has read so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bench.crashload_read import NAMES, TOPO, Reader, Record
from engine.core.ids import case_id_for
from engine.data.catalogue import Catalogue

# complaint categories a street owns: a complaint on a street code is dispatched to that street
STREET_CATEGORIES = sorted(c.code for c in Catalogue.load().by_code.values()
                           if c.source == "complaint" and c.owner == "street")
CHANNELS = ("hotline", "app", "web", "grid", "media")

TICK = 0.01  # pacing of the load loop (not a synchronisation)
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
        return {"complaints": len(self.complaints), "acks": by["ack"], "returns": by["return"],
                "assigns": by["assign"], "resolves": by["resolve"], "verifies": by["verify"],
                "forged": by["forged"], "directives": len(self.directives),
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
        """Send on schedule and answer what the engine wrote, until stopped."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks="all")
        await producer.start()
        try:
            self._t0 = asyncio.get_running_loop().time()
            cursor = 0
            while not self._stop.is_set():
                await self._inputs(producer, self._elapsed())
                new, cursor = self.reader.since(cursor)
                for r in new:
                    await self._react(producer, r)
                await self._after_reading(producer)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), TICK)
        finally:
            try:
                await producer.flush()
            finally:
                await producer.stop()

    async def _inputs(self, producer: AIOKafkaProducer, t: float) -> None:
        """The inputs due by ``t`` seconds into the run: complaints at a steady rate."""
        while self._n < int(t * self.rate):
            await self._complaint(producer)

    async def _after_reading(self, producer: AIOKafkaProducer) -> None:
        """Actions planned for later (a load with delays overrides this)."""

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
            await self._task_answer(producer, d.directive_id, target, "ack", r)
        elif (r.kind == "devent" and r.f.get("type") == "acknowledged" and d.report
              and task in self._task_acked and task not in self._task_reported):
            self._task_reported.add(task)
            await self._task_answer(producer, d.directive_id, target, "report", r)

    async def _task_answer(self, producer: AIOKafkaProducer, directive_id: str, target: str,
                           action: str, r: Record) -> None:
        """A target's ``ack`` or ``report`` of its task: at once (a load with delays
        overrides this)."""
        await self._directive_update(producer, directive_id, target, action, "event")

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
