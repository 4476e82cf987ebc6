"""``zhida.intake.sensed`` → open-case commands, through their merge group: repeats of one
sensor and same-kind alarms in one street join one case; a storm is reported once."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from engine.core.ids import case_id_for
from engine.core.model import Command, OpenCase, Origin
from engine.data.catalogue import Catalogue
from engine.runtime import intake
from engine.runtime.app import Engine
from engine.runtime.storms import StormWatch
from schemas.codec import decode
from schemas.inbound import SensedAlarm


def to_command(catalogue: Catalogue, raw: bytes | None, origin: Origin, now: datetime
               ) -> Command:
    a = decode(SensedAlarm, raw)
    known = catalogue.get(a.kind, "sensed")
    if a.severity == "critical":
        priority = "urgent"
    elif a.severity == "warning" and known is not None:
        priority = known.priority
    else:
        priority = "normal"
    name = known.name if known else a.kind
    reading = f" {a.value:g}{a.unit or ''}" if a.value is not None else ""
    body = OpenCase(
        source="sensed", key=a.event_id, category=a.kind, priority=priority,
        location=a.location.model_dump(), summary=f"{name} [{a.severity}] {a.sensor_id}{reading}",
        reported_at=a.observed_at, sensor_id=a.sensor_id, severity=a.severity,
    )
    return Command(aggregate=case_id_for("sensed", a.event_id), at=now, body=body, origin=origin)


def register(engine: Engine) -> None:
    storms = StormWatch(engine)
    group = intake.grouped(engine.world, partial(to_command, engine.world.catalogue))

    def to_group(raw: bytes | None, origin: Origin, now: datetime) -> Command:
        cmd = group(raw, origin, now)
        storms.saw(cmd)
        return cmd

    intake.register(engine, "sensed", to_group)
