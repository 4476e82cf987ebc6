"""``zhida.unit.updates`` → case commands (directive updates wait for the directive work)."""

from __future__ import annotations

from datetime import datetime

from engine import intake
from engine.app import Engine
from engine.core.model import ApplyUpdate, Command, Origin
from schemas.codec import Refused, decode
from schemas.inbound import UnitUpdate


def to_command(raw: bytes | None, origin: Origin, now: datetime) -> Command:
    u = decode(UnitUpdate, raw)
    if u.case_id is None:
        raise Refused("unknown_case", f"directive {u.directive_id} is unknown: this engine "
                      "version does not process directives yet")
    return Command(case_id=u.case_id, at=now, body=ApplyUpdate(update=u), origin=origin)


def register(engine: Engine) -> None:
    intake.register(engine, "unit_updates", to_command)
