"""``zhida.intake.complaints`` → open-case commands, through their merge group (一事多诉)."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from engine.core.ids import case_id_for
from engine.core.model import Command, Complainant, OpenCase, Origin
from engine.data.catalogue import Catalogue
from engine.runtime import intake
from engine.runtime.app import Engine
from schemas.codec import decode
from schemas.inbound import Complaint


def to_command(catalogue: Catalogue, raw: bytes | None, origin: Origin, now: datetime
               ) -> Command:
    c = decode(Complaint, raw)
    known = catalogue.get(c.category, "complaint")
    priority = c.priority or (known.priority if known else "normal")
    body = OpenCase(
        source="complaint", key=c.complaint_id, category=c.category, priority=priority,
        location=c.location.model_dump(), summary=c.description, reported_at=c.reported_at,
        complainant=Complainant(complaint_id=c.complaint_id, channel=c.channel,
                                citizen=c.citizen),
    )
    return Command(aggregate=case_id_for("complaint", c.complaint_id), at=now, body=body,
                   origin=origin)


def register(engine: Engine) -> None:
    intake.register(engine, "complaints", intake.grouped(
        engine.world, partial(to_command, engine.world.catalogue)))
