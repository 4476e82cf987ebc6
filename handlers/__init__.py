"""One module per inbound stream; ``register_all`` wires them onto an engine."""

from __future__ import annotations

from engine.runtime.app import Engine
from handlers import (
    case_commands,
    citizen_feedback,
    complaints,
    directives,
    sensed,
    unit_updates,
)

MODULES = (complaints, sensed, directives, unit_updates, citizen_feedback, case_commands)


def register_all(engine: Engine) -> None:
    for module in MODULES:
        module.register(engine)
