"""The pure core: decide / evolve / react over pydantic models, no I/O, no clock."""

from engine.core.decide import (
    Accepted,
    Decision,
    Duplicate,
    Ignored,
    Rejected,
    apply,
    decide,
    file_after,
)
from engine.core.model import CaseEvent, CaseFile, CaseState, Command
from engine.core.react import Output, react
from engine.core.world import World

__all__ = [
    "Accepted",
    "CaseEvent",
    "CaseFile",
    "CaseState",
    "Command",
    "Decision",
    "Duplicate",
    "Ignored",
    "Output",
    "Rejected",
    "World",
    "apply",
    "decide",
    "file_after",
    "react",
]
