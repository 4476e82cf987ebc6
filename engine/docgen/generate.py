"""Generate docs from the code: JSON Schemas of the contract messages, the AsyncAPI document
(engine/docgen/asyncapi.py), the lifecycle diagram.

``python -m engine.docgen`` writes them; ``tests/contract/test_docs_fresh.py`` fails when stale.
"""

from __future__ import annotations

from pathlib import Path

from engine.core.transitions import TRANSITIONS
from engine.docgen import asyncapi
from engine.docgen.schemas import DOCS, ROOT, schema_files

__all__ = ["DOCS", "ROOT", "all_files", "lifecycle", "main"]


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
    return {**schema_files(), **asyncapi.files(), DOCS / "lifecycle.md": lifecycle()}


def main() -> None:
    for path, text in all_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
