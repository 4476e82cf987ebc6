"""``zhida.unit.updates`` → case commands, or directive commands for ``directive_id``.

A directive update is about one task: the actor's own, or, for an ancestor acting for a
target, the task it names in ``target`` (an extra field; CONTRACT.md welcomes more fields).
"""

from __future__ import annotations

from datetime import datetime

from engine.core.model import ApplyUpdate, Command, DirectiveUpdate, Origin
from engine.runtime import intake
from engine.runtime.app import Engine
from schemas.codec import Refused, decode
from schemas.inbound import UnitUpdate


def to_command(raw: bytes | None, origin: Origin, now: datetime) -> Command:
    u = decode(UnitUpdate, raw)
    if u.directive_id is not None:
        target = (u.model_extra or {}).get("target", u.actor)
        if not isinstance(target, str) or not target:
            raise Refused("schema", "target, when given, must be a unit code")
        return Command(aggregate=u.directive_id, at=now,
                       body=DirectiveUpdate(update=u, target=target), origin=origin)
    assert u.case_id is not None  # the schema requires exactly one of the two ids
    return Command(aggregate=u.case_id, at=now, body=ApplyUpdate(update=u), origin=origin)


def register(engine: Engine) -> None:
    intake.register(engine, "unit_updates", to_command, signed_by=actor)


def actor(cmd: Command) -> str:
    """The unit that must have signed an update: its ``actor``."""
    body = cmd.body
    assert isinstance(body, ApplyUpdate | DirectiveUpdate)
    return body.update.actor
