"""Messages the engine produces (CONTRACT.md, "Topics out")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from schemas.common import Priority, Time

CaseStateName = Literal[
    "received", "triage", "dispatched", "acknowledged", "suspended", "resolved", "closed"
]
Outcome = Literal["satisfied", "basically_satisfied", "unrated", "verified"]
DeadLetterReason = Literal[
    "decode", "schema", "unknown_unit", "unknown_case", "unauthorized",
    "invalid_transition", "oversize",
]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DispatchOrder(Out):
    """Work for a unit, on ``zhida.dispatch.<district>``, keyed by ``target``."""

    order_id: str
    kind: Literal["case", "directive", "reminder", "supervision"]
    target: str
    case_id: str | None = None
    directive_id: str | None = None
    stage: str
    due: Time | None = None
    escalation_level: int = 0
    summary: str = ""
    category: str | None = None
    priority: Priority | None = None
    location: dict[str, Any] | None = None
    role: Literal["handler", "assist"] = "handler"
    late_unit: str | None = None  # kind=supervision: the unit that missed the deadline
    issuer: str | None = None  # directive orders: the issuing centre
    body: str | None = None  # kind=directive: the directive's text
    source: Literal["complaint", "sensed"] | None = None
    citizen: dict[str, Any] | None = None
    issued_at: Time
    dispute: bool | None = None  # the arbiter's order of a disputed case (扯皮, 2026-12)


class CaseEventMessage(Out):
    """One state change of a case on ``zhida.case.events``; never carries personal data."""

    event_id: str
    case_id: str
    seq: int
    type: str
    state: CaseStateName
    unit: str
    at: Time
    due: Time | None = None
    stage: str | None = None
    actor: str | None = None
    category: str | None = None
    priority: Priority | None = None
    source: Literal["complaint", "sensed"] | None = None
    escalation_level: int = 0
    returns: int = 0
    outcome: Outcome | None = None
    rating: str | None = None
    reason: str | None = None
    assist_units: list[str] | None = None
    first_responsible: bool | None = None
    late_unit: str | None = None  # warned/escalated: who is (about to be) late
    supervisor: str | None = None  # escalated: the unit supervising now (督办)
    supervise_due: Time | None = None  # escalated: the supervisor's deadline
    top: bool | None = None  # escalated: the breach reached the city centre
    boundary: bool | None = None  # placed near a district line: the common ancestor assigns
    complainants: int | None = None  # merged: complainants now on the case (一事多诉)
    alarms: int | None = None  # merged: alarms now grouped in the case
    precedent: str | None = None  # dispatched: the ruling whose precedent routed it (2026-12)
    dispute: str | None = None  # returned (a dispute) and assigned (its ruling): the dispute's id


class DirectiveEventMessage(Out):
    """One change of a directive or of one target's task on ``zhida.directive.events``."""

    event_id: str
    directive_id: str
    seq: int
    type: Literal["issued", "delivered", "acknowledged", "reported", "warned", "escalated",
                  "completed"]
    at: Time
    target: str | None = None  # per-target events
    state: Literal["delivered", "acknowledged", "reported"] | None = None  # the task's, after
    due: Time | None = None
    stage: Literal["ack", "report"] | None = None
    escalation_level: int = 0
    actor: str | None = None
    note: str | None = None  # reported: the target's 落实反馈
    late_unit: str | None = None
    supervisor: str | None = None
    supervise_due: Time | None = None
    top: bool | None = None
    issuer: str | None = None  # issued
    title: str | None = None  # issued
    targets: int | None = None  # issued: how many tasks


class CitizenNotification(Out):
    """What to tell one complainant; the hotline system maps ``complaint_id`` to the person."""

    notification_id: str
    case_id: str
    complaint_id: str
    channel: str
    kind: Literal["received", "resolved", "closed", "reopened"]
    ask_rating: bool = False
    state: CaseStateName
    outcome: Outcome | None = None
    message: str
    at: Time


# what a dead letter carries at most (engine/runtime/deadletter.py keeps to it and says why).
# The encoded letter: any input within the intake's 256 KiB that is JSON (escaping at most
# doubles it) or not UTF-8 (base64: 4/3) fits whole; with the key and headers, far below the
# producer's 1,000,000-byte requests and the brokers' 1 MiB messages.
LETTER_MAX_BYTES = 768 * 1024
DETAIL_MAX = 1000  # characters of ``detail``
KEY_MAX_BYTES = 1024  # UTF-8 bytes of ``key`` (and of the letter's Kafka key)


class DeadLetter(Out):
    """An input the engine refused; at most 768 KiB encoded, whatever the input: always sendable."""

    reason: DeadLetterReason
    detail: str = Field(description=f"What was wrong: at most {DETAIL_MAX:,} characters, a "
                                    "longer one cut and ending in `… (+N chars)`")
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = Field(default=None, description="The input's key (invalid UTF-8 "
                            f"replaced): at most {KEY_MAX_BYTES:,} bytes, a longer one cut "
                            "and ending in `… (+N bytes)`, with `key_truncated`")
    original: str | None = Field(default=None, description="The input's value when valid "
                                 "UTF-8: whole, or its first characters when `truncated`")
    original_base64: str | None = Field(default=None, description="The input's value when "
                                        "not UTF-8: whole, or its first bytes when `truncated`")
    truncated: bool = Field(default=False, description="The original was too large to carry "
                            "whole: `original` or `original_base64` holds a prefix of it")
    original_bytes: int | None = Field(default=None, description="Size of the whole original "
                                       "in bytes (set whenever the input had a value)")
    original_sha256: str | None = Field(default=None, description="SHA-256 (hex) of the "
                                        "whole original (set whenever the input had a value)")
    key_truncated: bool = Field(default=False, description="`key` is cut, and so is the "
                                f"letter's Kafka key: the input's key was over "
                                f"{KEY_MAX_BYTES:,} bytes")
    at: Time


# ---- zhida.insights (CONTRACT.md "Recurring problems and disputes", 2026-12) ----

Place = str | dict[str, float]  # a unit code, or a point cluster {"lat", "lon", "radius_m"}


class Insight(Out):
    insight_id: str
    at: Time


class HotspotInsight(Insight):
    """每月一题 / 未诉先办: complaints of one category at one place reached the policy's count."""

    kind: Literal["hotspot"] = "hotspot"
    category: str
    place: Place
    unit: str
    window_start: Time
    reports: int
    cases: int
    repeat_callers: int
    reopened: int


class DisputeInsight(Insight):
    """临界模糊地带扯皮: a second unit returned the case; its lowest common ancestor arbitrates."""

    kind: Literal["dispute"] = "dispute"
    case_id: str
    category: str
    place: Place | None
    units: list[str]
    arbiter: str


class RulingInsight(Insight):
    """The arbiter's (or an ancestor's) first assign of a disputed case: the owner it ruled."""

    kind: Literal["ruling"] = "ruling"
    case_id: str
    category: str
    place: Place | None
    unit: str
    dispute_id: str


class RevokedInsight(Insight):
    """``zhida precedents revoke``: the ruling's precedent ended."""

    kind: Literal["revoked"] = "revoked"
    ruling_id: str


class InsightMessage(RootModel[HotspotInsight | DisputeInsight | RulingInsight
                               | RevokedInsight]):
    """One message on ``zhida.insights``: its ``kind`` says which fields it has."""


class PrecedentRecord(Out):
    """One of ``GET /precedents``: a ruling that routes its place's later cases."""

    insight_id: str
    category: str
    place: Place
    unit: str
    case_id: str
    at: Time
    revoked_at: Time | None = None
