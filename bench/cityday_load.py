"""bench/cityday.py's day and load: the day's shape by hour, the reactions of units and
citizens and their delays, what was sent (``CityDaySent``) and ``CityDayLoad``, on
bench/crashload_load.py's ``Load``."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.crashload_load import (
    CITY,
    Load,
    SentComplaint,
    SentDirective,
    SentLog,
    SentUpdate,
    _now_rfc3339,
)
from bench.crashload_read import NAMES, TOPO, Reader, Record
from engine.core.ids import case_id_for
from engine.tools.sim.generator import SENSORS_PER_STREET, Generator

DAY = 86_400.0

# complaints to a city hotline by hour of the day (relative): night lows, 10:00 and 15:00 peaks
COMPLAINTS_BY_HOUR = (1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4.5, 6.5, 6.8, 6.2,
                      4.5, 5.0, 6.3, 6.5, 6.2, 5.5, 4.5, 4.0, 3.6, 3.0, 2.3, 1.5)
# sensor alarms: flatter, with the rush hours (traffic) on top
ALARMS_BY_HOUR = (2.0, 1.5, 1.2, 1.0, 1.0, 1.5, 3.0, 5.0, 5.5, 4.0, 3.5, 3.5,
                  3.5, 3.5, 3.5, 4.0, 5.0, 5.5, 5.0, 4.0, 3.5, 3.0, 2.5, 2.0)
# a reaction's delay as a share of its stage's time: (weight, low, high)
EARLY, REMINDED, LATE = (0.80, 0.05, 0.75), (0.12, 0.82, 0.98), (0.08, 1.05, 2.5)
ANSWER = (EARLY, REMINDED, LATE)
RATE_DELAY = ((1.0, 0.1, 0.7),)  # ratings come inside the feedback window (unless lagging)
P_RETURN, P_ASSIGN, P_SILENT, P_UNRESOLVED, P_UNRATED, P_UNVERIFIED = (
    0.08, 0.85, 0.03, 0.03, 0.15, 0.05)
RATINGS = (("satisfied", 0.72), ("basically_satisfied", 0.13), ("unsatisfied", 0.15))
MAX_RETURNS = 2  # the policy's cap: returns the load makes at most per case
HOLDER_CHANGES = frozenset({"dispatched", "triaged", "returned", "assigned", "reopened"})
EVENT_FOR = {"ack": "acknowledged", "return": "returned", "assign": "assigned",
             "resolve": "resolved", "verify": "verified"}


# ---------------------------------------------------------------------------- the day


@dataclass
class DayConfig:
    """What the day holds; the times are those of the simulated day, mapped onto ``seconds``."""

    seconds: float = DAY / 100  # real seconds the day takes (86,400 / speed)
    complaints: int = 30_000
    alarms: int = 5_000  # the storm included
    storm: int = 400  # waterlogging alarms from one street's sensors...
    storm_seconds: float = 5.0  # ...within this many real seconds
    storm_hour: float = 17.5
    directives: int = 20
    office: tuple[float, float] = (9.0, 17.0)  # hours in which directives are issued
    directive_ack: float = 20.0  # ack_within of the directives, seconds
    directive_report: float = 60.0  # report_by, seconds after issue (every second directive)
    forge_every: int = 50
    seed: int = 2026

    @property
    def speed(self) -> float:
        return DAY / self.seconds


def share_by(profile: tuple[float, ...], x: float) -> float:
    """The share of a day's volume due by ``x`` (0..1 of the day), hour by hour linear."""
    x = min(max(x, 0.0), 1.0) * len(profile)
    whole = int(x)
    done = sum(profile[:whole]) + (profile[whole] * (x - whole) if whole < len(profile) else 0)
    return done / sum(profile)


def delay_share(mix: tuple[tuple[float, float, float], ...], rng: Any) -> float:
    """A reaction's delay as a share of its stage's time, from a (weight, low, high) mix."""
    pick = rng.random() * sum(w for w, _, _ in mix)
    for w, low, high in mix:
        if pick < w:
            return rng.uniform(low, high)
        pick -= w
    return rng.uniform(mix[-1][1], mix[-1][2])


def directive_targets(n: int, rng: Any) -> tuple[str, dict[str, Any], tuple[str, ...]]:
    """The ``n``-th directive's issuer, ``targets`` and the units they name (CONTRACT.md
    "Directives"): all districts, one or two districts' streets, a district centre to its own
    streets, or a list of districts and streets."""
    shape = n % 4
    if shape == 0:
        return CITY, {"level": "district"}, tuple(TOPO.districts)
    if shape in (1, 2):
        within = rng.sample(TOPO.districts, 2 if shape == 1 else 1)
        units = tuple(dict.fromkeys(s for d in within for s in TOPO.streets_of(d)))
        issuer = CITY if shape == 1 else within[0]
        return issuer, {"level": "street", "within": within}, units
    units = tuple(dict.fromkeys([*rng.sample(TOPO.districts, 3), *rng.sample(TOPO.streets, 5)]))
    return CITY, {"units": list(units)}, units


# ---------------------------------------------------------------------------- what was sent


@dataclass(slots=True)
class SentAlarm:
    event_id: str
    case_id: str
    kind: str
    street: str
    storm: bool
    t: float
    confirmed: bool = False
    error: str | None = None


@dataclass(slots=True)
class SentRating:
    feedback_id: str
    case_id: str
    rating: str
    t: float
    confirmed: bool = False
    error: str | None = None


@dataclass
class CityDaySent(SentLog):
    alarms: list[SentAlarm] = field(default_factory=list)
    ratings: list[SentRating] = field(default_factory=list)


@dataclass(slots=True)
class Track:
    """What the load knows of one of its cases, from the outputs it has read."""

    source: str
    returns: int = 0
    bound: bool = False  # 首接负责: the holder may not assign it on
    returner: str | None = None
    reopened: int = 0
    first_order: float | None = None  # load seconds when its first order was read


Action = Callable[[AIOKafkaProducer], Awaitable[None]]


class CityDayLoad(Load):
    """The day's inputs on their curves, and every unit's and citizen's reaction, delayed."""

    def __init__(self, bootstrap: str, reader: Reader, day: DayConfig) -> None:
        super().__init__(bootstrap, reader, 0.0, forge_every=day.forge_every, directive_every=0,
                         seed=day.seed, tag=f"d{day.seed}")
        self.day = day
        self.gen = Generator(day.seed, TOPO)
        self.alarms: dict[str, SentAlarm] = {}  # by event_id
        self.ratings: dict[str, SentRating] = {}  # by feedback_id
        self.cases: dict[str, Track] = {}  # every case id the load's inputs may open
        self.latency: list[tuple[float, float]] = []  # (load seconds sent, seconds to order)
        self._seen: set[str] = set()  # order ids and case/seq already reacted to
        self._plan: list[tuple[float, int, Action]] = []  # (load seconds, tiebreak, action)
        self._ticket = itertools.count()
        self._regular = self._storm_n = 0
        self.storm_street = self.gen.streets.pick(self.rng)
        self.storm_district = TOPO.district_of(self.storm_street) or self.storm_street
        self._directive_times = [
            self._at_hour(day.office[0] + (day.office[1] - day.office[0]) * (k + 0.5)
                          / day.directives) for k in range(day.directives)]

    def _at_hour(self, hour: float) -> float:
        return hour / 24 * self.day.seconds

    # ---- what was sent

    def sent(self) -> CityDaySent:
        base = super().sent()
        every = [*self.alarms.values(), *self.ratings.values()]
        return CityDaySent(
            complaints=base.complaints, updates=base.updates,
            send_errors=base.send_errors + sum(1 for x in every if x.error),
            directives=base.directives, directive_updates=base.directive_updates,
            alarms=[a for a in self.alarms.values() if a.confirmed],
            ratings=[r for r in self.ratings.values() if r.confirmed])

    def counts(self) -> dict[str, int]:
        return {**super().counts(), "alarms": len(self.alarms),
                "storm_alarms": sum(a.storm for a in self.alarms.values()),
                "ratings": len(self.ratings)}

    def progress_line(self) -> str:
        c = self.counts()
        hour = min(self._elapsed() / self.day.seconds * 24, 24.0) if self._t0 else 0.0
        return (f"{int(hour):02d}:{int(hour % 1 * 60):02d} of the day: {c['complaints']:,} "
                f"complaints, {c['alarms']:,} alarms ({c['storm_alarms']} storm), "
                f"{c['directives']} directives; {c['acks']:,} acks, {c['returns']} returns, "
                f"{c['assigns']} assigns, {c['resolves']:,} resolves, {c['verifies']:,} "
                f"verifies, {c['ratings']:,} ratings, {c['forged'] + c['directive_forged']} "
                f"forged, {c['directive_acks']} task acks")

    # ---- the loop

    async def _after_reading(self, producer: AIOKafkaProducer) -> None:
        now = self._elapsed()
        while self._plan and self._plan[0][0] <= now:
            await heapq.heappop(self._plan)[2](producer)

    async def _inputs(self, producer: AIOKafkaProducer, t: float) -> None:
        """Everything the day's curves have due by ``t`` (load seconds)."""
        x = t / self.day.seconds
        regular_alarms = self.day.alarms - self.day.storm
        while self._n < round(self.day.complaints * share_by(COMPLAINTS_BY_HOUR, x)):
            await self._complaints(producer)
        while self._regular < round(regular_alarms * share_by(ALARMS_BY_HOUR, x)):
            await self._alarm(producer, self.gen.alarm(datetime.now(UTC)).value, False)
            self._regular += 1
        storm_t = self._at_hour(self.day.storm_hour)
        if t >= storm_t and self._storm_n < self.day.storm:
            if self._storm_n == 0:  # the rain reaches the rest of the district too
                for item in self.gen.storm(datetime.now(UTC), district=self.storm_district):
                    await self._alarm(producer, item.value, True)
            due = min(self.day.storm, round(self.day.storm * (t - storm_t)
                                            / self.day.storm_seconds) + 1)
            while self._storm_n < due:
                self._storm_n += 1
                sensor = self._storm_n % SENSORS_PER_STREET["waterlogging"]
                severity = "critical" if self._storm_n % 10 == 0 else "warning"
                item = self.gen.alarm(datetime.now(UTC), kind="waterlogging",
                                      street=self.storm_street, sensor=sensor,
                                      severity=severity, storm=True)
                await self._alarm(producer, item.value, True)
        while self._directive_times and self._directive_times[0] <= t:
            self._directive_times.pop(0)
            await self._directive(producer)

    async def _complaints(self, producer: AIOKafkaProducer) -> None:
        """One complaint from the simulator, and sometimes neighbours about the same thing."""
        first = self.gen.complaint(datetime.now(UTC))
        items = [first]
        if self.rng.random() < 0.05:
            items += self.gen.repeats(first)
        for item in items:
            self._n += 1
            v = item.value
            case_id = item.case_id
            rec = SentComplaint(v["complaint_id"], case_id, item.unit or "", v["category"],
                                self._elapsed())
            self.complaints[case_id] = rec
            self.cases[case_id] = Track("complaint")
            await self._send(producer, NAMES.complaints, item.key, v, rec)

    async def _alarm(self, producer: AIOKafkaProducer, v: dict[str, Any], storm: bool) -> None:
        case_id = case_id_for("sensed", v["event_id"])
        rec = SentAlarm(v["event_id"], case_id, v["kind"], v["location"]["unit"], storm,
                        self._elapsed())
        self.alarms[v["event_id"]] = rec
        self.cases[case_id] = Track("sensed")
        await self._send(producer, NAMES.sensed, v["sensor_id"], v, rec)  # type: ignore[arg-type]

    async def _directive(self, producer: AIOKafkaProducer) -> None:
        self._n_directives += 1
        n = self._n_directives
        issuer, targets, units = directive_targets(n, self.rng)
        report = n % 2 == 0
        silent = self.rng.choice(units) if n % 5 == 0 else None
        directive_id = f"D-{self.tag}-{n:03d}"
        rec = SentDirective(directive_id, units, report, silent, self._elapsed())
        self.directives[directive_id] = rec
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "directive_id": directive_id, "issuer": issuer, "title": f"城市一日政令 {n}",
            "body": "请按时签收，落实后反馈。", "targets": targets,
            "ack_within": f"PT{self.day.directive_ack:g}S", "issued_at": now.isoformat()}
        if report:
            body["report_by"] = (now + timedelta(seconds=self.day.directive_report)).isoformat()
        await self._send(producer, NAMES.directives, directive_id, body, rec)

    # ---- reactions: scheduled, each decided when it falls due

    def _later(self, seconds: float, action: Action) -> None:
        heapq.heappush(self._plan, (self._elapsed() + max(seconds, 0.0), next(self._ticket),
                                    action))

    def _span(self, body: dict[str, Any], start: str = "at") -> float:
        """Seconds of the stage a message opens: its ``due`` minus its time (20 s if none)."""
        try:
            return max((datetime.fromisoformat(body["due"])
                        - datetime.fromisoformat(body[start])).total_seconds(), 0.5)
        except (KeyError, TypeError, ValueError):
            return 20.0

    async def _react(self, producer: AIOKafkaProducer, r: Record) -> None:
        if r.kind == "devent" or (r.kind == "order" and r.f.get("directive_id")):
            await self._react_directive(producer, r)
            return
        case_id = r.f.get("case_id")
        track = self.cases.get(case_id) if isinstance(case_id, str) else None
        if track is None or r.kind not in ("order", "event"):
            return
        ident = str(r.f.get("order_id")) if r.kind == "order" else f"{case_id}#{r.f.get('seq')}"
        if ident in self._seen:
            return  # a copy (redelivered after a crash)
        self._seen.add(ident)
        if r.kind == "order":
            self._on_order(r, case_id, track)
        else:
            await self._on_event(producer, r, case_id, track)

    def _on_order(self, r: Record, case_id: str, track: Track) -> None:
        """Only timed: the unit's answer is decided on the event that sent the order, which
        carries what the decision needs (returns, 首接负责) in the same record."""
        if r.f.get("kind") == "case" and track.first_order is None:
            track.first_order = self._elapsed()
            sent = self.complaints.get(case_id)
            if sent is not None:
                self.latency.append((sent.t, track.first_order - sent.t))

    async def _answer(self, producer: AIOKafkaProducer, case_id: str, target: str) -> None:
        """The order's target decides: return it, assign it on, leave it, or sign for it."""
        track, rng = self.cases[case_id], self.rng
        level = TOPO.level(target)
        if (level == "street" and track.returns < MAX_RETURNS and not track.bound
                and rng.random() < P_RETURN):
            await self._case_update(producer, case_id, target, "return",
                                    reason="不属于本单位职责，申请退回")
            return
        below = self._below(target, track)
        if below and not track.bound and rng.random() < P_ASSIGN:
            await self._case_update(producer, case_id, target, "assign",
                                    assign_to=rng.choice(below))
            return
        if rng.random() < P_SILENT:
            return
        if self.forge_every and rng.random() < 1 / self.forge_every:
            await self._update(producer, case_id, self._forger(target), "ack", "unauthorized")
        await self._case_update(producer, case_id, target, "ack")

    def _below(self, target: str, track: Track) -> list[str]:
        """Streets a centre assigns a case it was handed to: a district's own after a return
        (not the returner), any street for the city centre (triage, boundary cases)."""
        if target == CITY:
            return TOPO.streets
        if TOPO.level(target) == "district" and track.returns:
            return [s for s in TOPO.streets_of(target) if s != track.returner]
        return []

    async def _on_event(self, producer: AIOKafkaProducer, r: Record, case_id: str,
                        track: Track) -> None:
        t, unit = r.f.get("type"), str(r.f.get("unit"))
        if t in HOLDER_CHANGES:  # an order to ``unit``: its answer, after a while
            b = r.body()
            if t == "returned":
                track.returns = int(b.get("returns") or 0)
                track.bound = bool(b.get("first_responsible"))
                track.returner = b.get("actor")
            track.reopened += t == "reopened"
            self._later(delay_share(ANSWER, self.rng) * self._span(b),
                        lambda p: self._answer(p, case_id, unit))
        elif t == "acknowledged" and self.rng.random() >= P_UNRESOLVED:
            self._later(delay_share(ANSWER, self.rng) * self._span(r.body()),
                        lambda p: self._case_update(p, case_id, unit, "resolve"))
        elif t == "resolved" and track.source == "complaint":
            if self.rng.random() >= P_UNRATED:
                self._later(delay_share(RATE_DELAY, self.rng) * self._span(r.body()),
                            lambda p: self._rate(p, case_id, track))
        elif t == "resolved" and self.rng.random() >= P_UNVERIFIED:
            verifier = TOPO.parent(unit) or unit  # the city centre verifies its own
            self._later(delay_share(ANSWER, self.rng) * self._span(r.body()),
                        lambda p: self._case_update(p, case_id, verifier, "verify"))

    async def _case_update(self, producer: AIOKafkaProducer, case_id: str, actor: str,
                           action: str, **fields: Any) -> None:
        """One update the engine must apply (crashload's ``_update`` with the action's own
        fields: ``reason`` of a return, ``assign_to``)."""
        update_id = f"up-{self.tag}-{next(self._ticket):08d}"
        rec = SentUpdate(update_id, case_id, actor, action, "event", self._elapsed())
        self.updates[update_id] = rec
        body = {"update_id": update_id, "actor": actor, "action": action,
                "at": _now_rfc3339(), "case_id": case_id, "note": "城市一日", **fields}
        await self._send(producer, NAMES.unit_updates, case_id, body, rec)

    async def _rate(self, producer: AIOKafkaProducer, case_id: str, track: Track) -> None:
        choices = RATINGS if not track.reopened else RATINGS[:2]  # a second round settles
        rating = self.rng.choices([c for c, _ in choices], [w for _, w in choices])[0]
        feedback_id = f"fb-{self.tag}-{next(self._ticket):08d}"
        rec = SentRating(feedback_id, case_id, rating, self._elapsed())
        self.ratings[feedback_id] = rec
        body = {"feedback_id": feedback_id, "case_id": case_id, "rating": rating,
                "at": _now_rfc3339()}
        await self._send(producer, NAMES.citizen_feedback, case_id, body, rec)  # type: ignore[arg-type]

    async def _task_answer(self, producer: AIOKafkaProducer, directive_id: str, target: str,
                           action: str, r: Record) -> None:
        """After a while: an ack within the directive's span, a report within the day's."""
        delay = (delay_share(ANSWER, self.rng) * self._span(r.body(), "issued_at")
                 if action == "ack" else self.rng.uniform(0.1, 0.6) * self.day.directive_report)
        self._later(delay, lambda p: self._directive_update(p, directive_id, target, action,
                                                            "event"))
