"""Generate docs from the code: JSON Schemas of the contract messages, the AsyncAPI document
(engine/docgen/asyncapi.py), the lifecycle diagram.

``python -m engine.docgen`` writes them; ``tests/unit/test_docs_fresh.py`` fails when stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine.core.transitions import TRANSITIONS
from schemas.inbound import CitizenFeedback, Complaint, Directive, SensedAlarm, UnitUpdate
from schemas.outbound import (
    CaseEventMessage,
    CitizenNotification,
    DeadLetter,
    DirectiveEventMessage,
    DispatchOrder,
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


def lifecycle() -> str:
    lines = ["stateDiagram-v2"]
    seen: set[str] = set()
    for t in TRANSITIONS.values():
        for src in sorted(t.sources):
            for tgt in t.targets:
                targets = {"previous": sorted(TRANSITIONS["suspend"].sources),
                           "same": [src]}.get(tgt, [tgt])
                for to in targets:
                    a = "[*]" if src == "new" else src
                    line = f"    {a} --> {to}: {t.action}"
                    if line not in seen:
                        seen.add(line)
                        lines.append(line)
    lines.append("    closed --> [*]")
    rows = ["| action | from | who | to | events | rule |", "|---|---|---|---|---|---|"]
    for t in TRANSITIONS.values():
        only = "" if len(t.case_sources) == 2 else f" ({'/'.join(sorted(t.case_sources))} only)"
        rows.append(f"| `{t.action}`{only} | {', '.join(sorted(t.sources))} | "
                    f"{', '.join(sorted(t.who))} | {', '.join(t.targets)} | "
                    f"{', '.join(t.events)} | {t.note} |")
    return "\n".join([
        "# Case lifecycle",
        "",
        "Generated from `engine/core/transitions.py` by `python -m engine.docgen`; do not edit.",
        "A test fails when this file and the table disagree.",
        "",
        "```mermaid", *lines, "```",
        "",
        "## Transition table",
        "",
        *rows,
        "",
        "Who: `holder` is the unit the case is dispatched to, `co_handler` a unit added by",
        "`assist`, `ancestor` any unit above the holder. An actor with none of these roles gets",
        "`unauthorized`; a role the action does not allow also gets `unauthorized`; a state the",
        "action does not start from gets `invalid_transition` naming the state and the action.",
        "",
    ])


def all_files() -> dict[Path, str]:
    from engine.docgen import asyncapi  # it reads SCHEMAS from here

    return {**schema_files(), **asyncapi.files(), DOCS / "lifecycle.md": lifecycle()}


def main() -> None:
    for path, text in all_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
