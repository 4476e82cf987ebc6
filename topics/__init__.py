"""Every topic of the engine, declared once (CONTRACT.md "Topics in" / "Topics out").

Names carry a configurable prefix (default ``zhida.``). Inbound and outbound topics are the
contract; ``case.commands`` is internal: the one stream, keyed by case id, through which every
change of a case passes (the single writer, DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["in", "out", "internal"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    key: str  # logical name used in code
    suffix: str  # name after the prefix
    direction: Direction
    keyed_by: str
    doc: str


SPECS: tuple[TopicSpec, ...] = (
    TopicSpec("complaints", "intake.complaints", "in", "complaint_id", "hotline/app complaints"),
    TopicSpec("sensed", "intake.sensed", "in", "sensor_id", "IoT sensor alarms"),
    TopicSpec("directives", "intake.directives", "in", "directive_id", "directives to fan out"),
    TopicSpec("unit_updates", "unit.updates", "in", "case_id or directive_id",
              "acknowledgements, returns, progress, resolutions from units"),
    TopicSpec("citizen_feedback", "citizen.feedback", "in", "case_id", "citizens' ratings"),
    TopicSpec("case_commands", "case.commands", "internal", "case_id",
              "every change of a case, serialised per case (single writer)"),
    TopicSpec("case_events", "case.events", "out", "case_id", "audit trail of every case"),
    TopicSpec("directive_events", "directive.events", "out", "directive_id",
              "changes of directives and their per-target tasks"),
    TopicSpec("notifications", "citizen.notifications", "out", "case_id",
              "what to tell each complainant"),
    TopicSpec("insights", "insights", "out", "insight_id",
              "hotspots, disputes, rulings and revoked precedents (engine/core/insights.py)"),
    TopicSpec("deadletter", "deadletter", "out", "original key", "input the engine refused"),
)
DISPATCH_SUFFIX = "dispatch."
CITY_DISPATCH = "city"


@dataclass(frozen=True)
class TopicNames:
    prefix: str = "zhida."

    def __getattr__(self, key: str) -> str:
        for spec in SPECS:
            if spec.key == key:
                return self.prefix + spec.suffix
        raise AttributeError(key)

    def dispatch(self, district_or_city: str) -> str:
        """``zhida.dispatch.<district code>`` or ``zhida.dispatch.city``."""
        return f"{self.prefix}{DISPATCH_SUFFIX}{district_or_city}"

    def all(self, districts: list[str]) -> list[str]:
        fixed = [self.prefix + s.suffix for s in SPECS]
        return fixed + [self.dispatch(d) for d in (*districts, CITY_DISPATCH)]
