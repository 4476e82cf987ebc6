"""The case as the core sees it: its state, the commands that change it, the events it emits.

A case is stored as two records: ``CaseState``, the small part every command rewrites (what
``decide`` needs), and ``CaseFile``, what the case is about (place, summary, complainants),
written when the case opens. Its history is not in either: each event is its own record
(``engine/runtime/store.py``), appended once, so a command writes a bounded number of bytes however
old the case is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from schemas.inbound import Citizen, CitizenFeedback, Directive, UnitUpdate
from schemas.outbound import HotspotInsight

StateName = Literal[
    "received", "triage", "dispatched", "acknowledged", "suspended", "resolved", "closed"
]
Source = Literal["complaint", "sensed"]
Priority = Literal["urgent", "normal"]
Outcome = Literal["satisfied", "basically_satisfied", "unrated", "verified"]
EventType = Literal[
    "created", "dispatched", "triaged", "acknowledged", "progress", "returned", "assigned",
    "assisted", "suspended", "resumed", "resolved", "verified", "rated", "reopened", "closed",
    "merged", "warned", "escalated",
]
Stage = Literal["triage", "ack", "resolve", "feedback"]
TimerKind = Literal["warn", "due", "supervise", "resume"]
APPLIED_KEYS_KEPT = 16  # client retries repeat recent keys; replays are caught by ``through``
JOIN_KEYS_KEPT = 64  # reports joined to one case remembered for their repeats
SUMMARY_CHARS = 280


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Complainant(Frozen):
    """Personal data: lives only in the case state, never on ``case.events``."""

    complaint_id: str
    channel: str
    citizen: Citizen | None = None


class Pause(Frozen):
    """The open suspension of a case (closed pauses live only in its history)."""

    start: datetime
    reason: str | None = None
    until: datetime | None = None


# ---- commands: everything that may change a case, serialised on one partition per case ----


class Origin(Frozen):
    """Where the input came from, for the dead letter if the case writer refuses it."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    original: str = ""
    timestamp: float | None = None  # the input message's Kafka timestamp, epoch seconds


class OpenCase(Frozen):
    kind: Literal["open"] = "open"
    source: Source
    key: str  # the idempotency key: complaint_id or event_id
    category: str
    priority: Priority
    location: dict[str, Any]
    summary: str
    reported_at: datetime
    sensor_id: str | None = None
    severity: str | None = None
    complainant: Complainant | None = None
    group: str | None = None  # the merge group it came through (engine/core/merge.py)
    # a precedent of its place (engine/core/insights.py): the ruling's id and the ruled unit,
    # set by the group; it overrides the catalogue's owner, not triage or the border rule
    precedent: str | None = None
    precedent_unit: str | None = None


class ApplyUpdate(Frozen):
    kind: Literal["update"] = "update"
    update: UnitUpdate


class ApplyRating(Frozen):
    kind: Literal["rate"] = "rate"
    feedback: CitizenFeedback


class Expire(Frozen):
    """A timer of the case fell due (engine/runtime/timers.py fires it from the durable index).

    ``instant`` is the moment the timer was armed for; the writer applies it only while the
    case still has exactly that timer armed (engine/core/sla.py), so a stale or repeated
    firing is ignored.
    """

    kind: Literal["expire"] = "expire"
    timer: TimerKind
    stage: Stage | None
    instant: datetime


class JoinCase(Frozen):
    """一事多诉 / a repeated alarm: the report joins this open case (engine/core/merge.py)."""

    kind: Literal["join"] = "join"
    open: OpenCase
    own_case_id: str  # the case the report opens if this one has closed meanwhile


class GroupOpen(Frozen):
    """A report that may merge, sent to its group (``case_id`` = the group key)."""

    kind: Literal["group_open"] = "group_open"
    open: OpenCase
    case_id: str  # the report's own case, if it opens one


class GroupForget(Frozen):
    """A case of the group closed: later reports must not join it."""

    kind: Literal["group_forget"] = "group_forget"
    case_id: str


class GroupReopened(Frozen):
    """A case of the group was reopened (不满意): its hotspot counts it (core/insights.py)."""

    kind: Literal["group_reopened"] = "group_reopened"
    case_id: str


class GroupRuling(Frozen):
    """A disputed case of the group was ruled: later reports of its place go to ``unit``."""

    kind: Literal["group_ruling"] = "group_ruling"
    ruling_id: str
    case_id: str
    category: str
    place: str | dict[str, float]
    unit: str


class GroupRevoke(Frozen):
    """``zhida precedents revoke``: the ruling's precedent ends; routing follows the rules."""

    kind: Literal["group_revoke"] = "group_revoke"
    ruling_id: str


DirectiveStage = Literal["ack", "report"]


class IssueDirective(Frozen):
    """A directive from ``zhida.intake.directives``: the writer fans it out (core/directive.py)."""

    kind: Literal["directive_issue"] = "directive_issue"
    directive: Directive


class DirectiveUpdate(Frozen):
    """A target's ``ack`` or ``report`` (or an ancestor's, acting for ``target``)."""

    kind: Literal["directive_update"] = "directive_update"
    update: UnitUpdate
    target: str  # the task it is about: the actor, or the ``target`` an ancestor names


class DirectiveExpire(Frozen):
    """A task's timer fell due; applied only while the task has exactly that timer armed."""

    kind: Literal["directive_expire"] = "directive_expire"
    target: str
    timer: TimerKind
    stage: DirectiveStage | None
    instant: datetime


Body = Annotated[OpenCase | ApplyUpdate | ApplyRating | Expire | JoinCase | GroupOpen
                 | GroupForget | GroupReopened | GroupRuling | GroupRevoke | IssueDirective
                 | DirectiveUpdate | DirectiveExpire,
                 Field(discriminator="kind")]
DIRECTIVE_KINDS = frozenset({"directive_issue", "directive_update", "directive_expire"})
GROUP_KINDS = frozenset({"group_open", "group_forget", "group_reopened", "group_ruling",
                         "group_revoke"})


class Command(Frozen):
    # The aggregate the command is for, and its key on ``zhida.case.commands``: a case id, a
    # directive id (``directive_*`` bodies) or a merge group key (``group_*`` bodies). The
    # three share the command log and its single writer; their records are apart. Commands
    # written before the field had this name carry it as ``case_id``, still read.
    aggregate: str = Field(validation_alias=AliasChoices("aggregate", "case_id"))
    at: datetime  # engine time when the input was taken: the core's "now", stable on replay
    body: Body
    origin: Origin | None = None

    @property
    def key(self) -> str:
        b = self.body
        if isinstance(b, OpenCase):
            return f"open:{b.key}"
        if isinstance(b, ApplyUpdate):
            return f"update:{b.update.update_id}"
        if isinstance(b, ApplyRating):
            return f"feedback:{b.feedback.feedback_id}"
        if isinstance(b, JoinCase):
            return f"join:{b.open.key}"
        if isinstance(b, GroupOpen):
            return f"group:{b.open.key}"
        if isinstance(b, GroupForget):
            return f"forget:{b.case_id}"
        if isinstance(b, GroupReopened):
            return f"reopened:{b.case_id}"
        if isinstance(b, GroupRuling):
            return f"ruling:{b.ruling_id}"
        if isinstance(b, GroupRevoke):
            return f"revoke:{b.ruling_id}"
        if isinstance(b, IssueDirective):
            return f"directive:{b.directive.directive_id}"
        if isinstance(b, DirectiveUpdate):
            return f"update:{b.update.update_id}"
        if isinstance(b, DirectiveExpire):
            return f"expire:{b.target}:{b.timer}:{b.stage}:{b.instant.isoformat()}"
        return f"expire:{b.timer}:{b.stage}:{b.instant.isoformat()}"


# ---- events and state ----


class CaseEvent(Frozen):
    case_id: str
    seq: int
    type: EventType
    at: datetime
    state: StateName
    unit: str
    actor: str | None = None
    stage: Stage | None = None
    due: datetime | None = None
    escalation_level: int = 0
    returns: int = 0
    reason: str | None = None
    note: str | None = None
    rating: str | None = None
    outcome: Outcome | None = None
    assist_units: tuple[str, ...] | None = None
    first_responsible: bool | None = None
    until: datetime | None = None
    warn_at: datetime | None = None  # the stage's reminder point (on events that start one)
    late_unit: str | None = None  # on ``escalated``: the unit that missed the deadline
    supervisor: str | None = None  # on ``escalated``: the unit now supervising (督办)
    supervise_due: datetime | None = None  # on ``escalated``: the supervisor's deadline
    top: bool | None = None  # on ``escalated``: the breach reached the city; nothing higher
    policy: str | None = None  # on ``created``: the digest of the policy frozen on the case
    boundary: bool | None = None  # placed near a district line (CONTRACT.md "Intake")
    complainants: int | None = None  # on ``merged``: complainants now on the case
    alarms: int | None = None  # on ``merged``: alarms now grouped in the case
    priority: Priority | None = None  # on ``merged``: a critical alarm raised it to urgent
    group: str | None = None  # on ``created``: the merge group that opened it
    opened: OpenCase | None = None  # only on ``created``: what evolve builds the case from
    precedent: str | None = None  # on ``dispatched``: the ruling that routed it there
    # 扯皮 (engine/core/insights.py): on a ``returned`` that is a dispute, its id and the
    # returning units; on the ``assigned`` that rules it, the ruling's id and ``dispute``
    dispute: str | None = None
    units: tuple[str, ...] | None = None
    ruling: str | None = None
    place: str | dict[str, float] | None = None  # on dispute and ruling events


class CaseFile(Frozen):
    """What the case is about: written at creation, read to build orders and notices."""

    case_id: str
    source: Source
    category: str
    location: dict[str, Any]
    summary: str
    origin_key: str
    created_at: datetime
    sensor_id: str | None = None
    complainants: tuple[Complainant, ...] = ()

    @classmethod
    def opened(cls, case_id: str, o: OpenCase, at: datetime) -> CaseFile:
        return cls(case_id=case_id, source=o.source, category=o.category, location=o.location,
                   summary=o.summary[:SUMMARY_CHARS], origin_key=o.key, created_at=at,
                   sensor_id=o.sensor_id,
                   complainants=(o.complainant,) if o.complainant else ())


class CaseState(Frozen):
    """What the rules decide with; rewritten by every command, so kept small and flat."""

    case_id: str
    source: Source
    state: StateName
    category: str
    priority: Priority
    unit: str
    co_handlers: tuple[str, ...] = ()
    seq: int = 0
    updated_at: datetime
    stage: Stage | None = None
    due: datetime | None = None
    escalation_level: int = 0
    returns: int = 0
    first_responsible: bool = False
    reopened: int = 0
    outcome: Outcome | None = None
    resume_to: StateName | None = None
    pause: Pause | None = None
    # SLA (engine/core/sla.py): the policy version frozen at creation, the stage's reminder
    # point until it fires, and the supervision ladder once the stage is late
    policy: str = ""
    warn_at: datetime | None = None
    supervisor: str | None = None
    supervise_due: datetime | None = None
    top: bool = False
    warned: bool = False  # the stage's reminder (催办) went out: yellow until it ends or is late
    boundary: bool = False  # near a district line: every event says so
    # 一事多诉 (engine/core/merge.py): reports on the case, the group to tell when it
    # closes, and the ratings of this round (the worst counts)
    complainants: int = 1
    alarms: int = 0
    group: str | None = None
    ratings: tuple[str, ...] = ()
    joins: tuple[str, ...] = ()  # the reports that joined last (a storm resends event ids)
    applied: tuple[str, ...] = ()
    # 扯皮: the units that returned the case, and its dispute awaiting a ruling by ``arbiter``
    returned_by: tuple[str, ...] = ()
    dispute: str | None = None
    arbiter: str | None = None
    # its place for insights: the group's (or location's) unit, or its point {"lat", "lon"}
    place: str | dict[str, float] | None = None
    # offset on the command partition of the last command applied: a replayed command at or
    # below it is already in this state (the writer's crash recovery, engine/runtime/writer.py)
    through: int = -1


# ---- 每月一题: a place's counting on its merge group (engine/core/insights.py) ----


class Sighting(Frozen):
    """One counted report: when, its own case, the case it went to and a caller tag."""

    at: datetime
    report: str  # the report's own case id: a report sent again is not counted twice
    case_id: str
    caller: str | None = None  # a keyed hash of the phone, or None: a caller of its own
    unit: str | None = None  # the precedent's unit when one routed it, else routed on a raise
    lat: float | None = None  # its point, to route it again on a raise
    lon: float | None = None


class Spot(Frozen):
    """The counting of one place in a group: its unit (no point) or a point cluster."""

    lat: float | None = None
    lon: float | None = None
    seen: tuple[Sighting, ...] = ()
    raised_at: datetime | None = None
    hotspot: HotspotInsight | None = None  # the last raised, kept current while it is
    cases: tuple[str, ...] = ()  # the current hotspot's cases (bounded)
    callers: tuple[tuple[str, int], ...] = ()  # its callers' tags and reports (bounded)
    reopened: tuple[str, ...] = ()  # cases of the place reopened (bounded)
