"""Intake messages for the real broker, shared by the integration tests: a complaint, a unit's
update, and a case opened through the worker (its ``created`` and ``dispatched`` read back).
"""

from __future__ import annotations

import uuid
from typing import Any

from engine.core.ids import case_id_for
from tests.support.broker import NAMES, Collector
from tests.support.helpers import STREET


def complaint(**over: Any) -> dict[str, Any]:
    c = {"complaint_id": f"it-{uuid.uuid4().hex[:12]}", "channel": "hotline",
         "category": "road_damage", "description": "解放碑附近路面塌陷，电话13800138000",
         "location": {"unit": STREET}, "reported_at": "2026-11-23T09:00:00+08:00",
         "citizen": {"name": "李四", "phone": "13900139000"}, "x_extra": "kept"}
    c.update(over)
    return c


def update(case_id: str, actor: str, action: str, **fields: Any) -> dict[str, Any]:
    return {"update_id": uuid.uuid4().hex, "actor": actor, "action": action,
            "at": "2026-11-23T10:00:00+08:00", "case_id": case_id, **fields}


async def open_case(kafka: Collector, **over: Any) -> tuple[str, dict[str, Any]]:
    c = complaint(**over)
    await kafka.send(NAMES.complaints, c, key=c["complaint_id"])
    case_id = case_id_for("complaint", c["complaint_id"])
    await kafka.events(case_id, 2)
    return case_id, c
