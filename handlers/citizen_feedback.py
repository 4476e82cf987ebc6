"""``zhida.citizen.feedback`` → rating commands."""

from __future__ import annotations

from datetime import datetime

from engine.app import Engine
from engine.core.model import ApplyRating, Command, Origin
from engine.intake import forward
from schemas.codec import decode
from schemas.inbound import CitizenFeedback


def to_command(raw: bytes | None, origin: Origin, now: datetime) -> Command:
    f = decode(CitizenFeedback, raw)
    return Command(case_id=f.case_id, at=now, body=ApplyRating(feedback=f), origin=origin)


def register(engine: Engine) -> None:
    @engine.app.agent(engine.topics["citizen_feedback"], name="intake-citizen-feedback")
    async def citizen_feedback(stream):  # type: ignore[no-untyped-def]
        await forward(engine, stream, "citizen_feedback", to_command)
