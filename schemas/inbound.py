"""Messages other systems produce into the engine (CONTRACT.md, "Topics in")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.common import Code, Duration, Id, Location, Open, Priority, Time

Channel = Literal["hotline", "app", "web", "grid", "media"]
Severity = Literal["info", "warning", "critical"]
Rating = Literal["satisfied", "basically_satisfied", "unsatisfied"]
CaseAction = Literal[
    "ack", "return", "progress", "assist", "resolve", "suspend", "resume", "verify", "assign"
]
DirectiveAction = Literal["ack", "report"]
CASE_ACTIONS: frozenset[str] = frozenset(CaseAction.__args__)  # type: ignore[attr-defined]
DIRECTIVE_ACTIONS: frozenset[str] = frozenset(DirectiveAction.__args__)  # type: ignore[attr-defined]


class Citizen(Open):
    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=40)


class Complaint(Open):
    complaint_id: Id
    channel: Channel
    category: Code
    description: str = Field(max_length=10_000)
    location: Location
    reported_at: Time
    priority: Priority | None = None
    citizen: Citizen | None = None


class SensedAlarm(Open):
    event_id: Id
    sensor_id: Id
    kind: Code
    severity: Severity
    location: Location
    observed_at: Time
    value: float | None = None
    unit: str | None = None


class UnitsTarget(Open):
    units: list[Code] = Field(min_length=1)


class LevelTarget(Open):
    level: Literal["district", "street"]
    within: list[Code] | None = None


class Directive(Open):
    directive_id: Id
    issuer: Code
    title: str = Field(min_length=1, max_length=500)
    body: str = Field(max_length=50_000)
    targets: UnitsTarget | LevelTarget
    ack_within: Duration
    issued_at: Time
    report_by: Time | None = None


class UnitUpdate(Open):
    update_id: Id
    actor: Code
    action: CaseAction | DirectiveAction
    at: Time
    case_id: Id | None = None
    directive_id: Id | None = None
    reason: str | None = Field(default=None, max_length=2000)
    note: str | None = Field(default=None, max_length=10_000)
    assist_units: list[Code] | None = None
    until: Time | None = None
    assign_to: Code | None = None

    @model_validator(mode="after")
    def _fields_per_action(self) -> UnitUpdate:
        if (self.case_id is None) == (self.directive_id is None):
            raise ValueError("exactly one of case_id and directive_id is required")
        if self.directive_id is not None:
            if self.action not in DIRECTIVE_ACTIONS:
                raise ValueError(f"action {self.action!r} is not a directive action (ack, report)")
            return self
        missing = {
            "return": ["reason"],
            "suspend": ["reason", "until"],
            "assign": ["assign_to"],
            "assist": ["assist_units"],
        }.get(self.action, [])
        absent = [f for f in missing if not getattr(self, f)]
        if absent:
            raise ValueError(f"action {self.action!r} requires {', '.join(absent)}")
        return self


class CitizenFeedback(Open):
    feedback_id: Id
    case_id: Id
    rating: Rating
    at: Time
