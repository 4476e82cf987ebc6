"""The pure core: decide / evolve / react over pydantic models, no I/O, no clock."""

from engine.core.decide import Accepted, Decision, Duplicate, Ignored, Rejected, apply, decide
from engine.core.model import CaseEvent, CaseState, Command
from engine.core.react import Output, react
from engine.core.world import World

__all__ = [
    "Accepted",
    "CaseEvent",
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
    "react",
]
