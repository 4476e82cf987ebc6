"""``zhida.citizen.feedback`` → rating commands."""

from __future__ import annotations

from datetime import datetime

from engine.core.model import ApplyRating, Command, Origin
from engine.runtime import intake
from engine.runtime.app import Engine
from schemas.codec import decode
from schemas.inbound import CitizenFeedback


def to_command(raw: bytes | None, origin: Origin, now: datetime) -> Command:
    f = decode(CitizenFeedback, raw)
    return Command(aggregate=f.case_id, at=now, body=ApplyRating(feedback=f), origin=origin)


def register(engine: Engine) -> None:
    intake.register(engine, "citizen_feedback", to_command)
