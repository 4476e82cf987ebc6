"""The contract's message models by topic, published as JSON Schemas (docs/schemas/): shared by
the schema files and the AsyncAPI document (engine/docgen/asyncapi.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.inbound import CitizenFeedback, Complaint, Directive, SensedAlarm, UnitUpdate
from schemas.outbound import (
    CaseEventMessage,
    CitizenNotification,
    DeadLetter,
    DirectiveEventMessage,
    DispatchOrder,
    InsightMessage,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    "intake.complaints": (Complaint, "in"),
    "intake.sensed": (SensedAlarm, "in"),
    "intake.directives": (Directive, "in"),
    "unit.updates": (UnitUpdate, "in"),
    "citizen.feedback": (CitizenFeedback, "in"),
    "dispatch": (DispatchOrder, "out"),
    "case.events": (CaseEventMessage, "out"),
    "directive.events": (DirectiveEventMessage, "out"),
    "citizen.notifications": (CitizenNotification, "out"),
    "insights": (InsightMessage, "out"),
    "deadletter": (DeadLetter, "out"),
}


def open_schema(schema: Any) -> Any:
    """``schema`` without ``additionalProperties: false`` anywhere.

    The engine builds its own messages strictly (``extra="forbid"`` catches a typo in a
    field name at once), but the contract says more fields are welcome: a published schema
    that forbade them would make every consumer validating against it break the day a
    field is added. Inbound models already say ``true`` (extra fields are kept).
    """
    if isinstance(schema, dict):
        return {k: open_schema(v) for k, v in schema.items()
                if not (k == "additionalProperties" and v is False)}
    if isinstance(schema, list):
        return [open_schema(v) for v in schema]
    return schema


def schema_files() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for topic, (model, direction) in SCHEMAS.items():
        mode = "validation" if direction == "in" else "serialization"
        schema = open_schema(model.model_json_schema(mode=mode))
        schema["$id"] = f"https://zhida.example/schemas/{topic}.json"
        schema["description"] = (f"Body of zhida.{topic}" + (".<district>" if topic == "dispatch"
                                                             else "") + f" ({direction}). "
                                 + (schema.get("description") or ""))
        text = json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
        files[DOCS / "schemas" / f"{topic}.json"] = text
    return files
