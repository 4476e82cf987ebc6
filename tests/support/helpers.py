"""Builders for commands and inputs, codes and instants, shared by every kind of test."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.core.model import ApplyRating, ApplyUpdate, Command, Complainant, Expire, OpenCase
from engine.core.world import World
from engine.runtime.world import load_world
from schemas.inbound import Citizen, CitizenFeedback, UnitUpdate

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
STREET = "500103001"  # 渝中区 七星岗街道
DISTRICT = "500103"  # 渝中区
OTHER_STREET = "500103003"  # 解放碑街道
OTHER_DISTRICT_STREET = "500104001"
CITY = "500000"


def open_cmd(case_id: str = "c1", *, category: str = "road_damage", unit: str = STREET,
             location: dict[str, Any] | None = None, source: str = "complaint",
             at: datetime = T0, priority: str = "normal") -> Command:
    complainant = None
    if source == "complaint":
        complainant = Complainant(complaint_id=f"k-{case_id}", channel="hotline",
                                  citizen=Citizen(name="张三", phone="13800138000"))
    body = OpenCase(source=source, key=f"k-{case_id}", category=category, priority=priority,
                    location=location or {"unit": unit}, summary="路面塌陷", reported_at=at,
                    sensor_id="s-1" if source == "sensed" else None, complainant=complainant)
    return Command(aggregate=case_id, at=at, body=body)


_n = 0


def update_cmd(action: str, actor: str, case_id: str = "c1", *, at: datetime | None = None,
               update_id: str | None = None, **fields: Any) -> Command:
    global _n
    _n += 1
    defaults = {"return": {"reason": "not ours"}, "suspend": {"reason": "rain",
                                                              "until": T0 + timedelta(days=9)}}
    data = {**defaults.get(action, {}), **fields}
    u = UnitUpdate(update_id=update_id or f"u{_n}", actor=actor, action=action,
                   at=at or T0, case_id=case_id, **data)
    return Command(aggregate=case_id, at=at or T0, body=ApplyUpdate(update=u))


def rate_cmd(rating: str, case_id: str = "c1", *, at: datetime | None = None,
             feedback_id: str | None = None) -> Command:
    global _n
    _n += 1
    f = CitizenFeedback(feedback_id=feedback_id or f"f{_n}", case_id=case_id, rating=rating,
                        at=at or T0)
    return Command(aggregate=case_id, at=at or T0, body=ApplyRating(feedback=f))


def expire_cmd(stage: str, due: datetime, case_id: str = "c1", at: datetime | None = None,
               timer: str = "due") -> Command:
    return Command(aggregate=case_id, at=at or due,
                   body=Expire(timer=timer, stage=stage, instant=due))


# Polling intervals of the condition waits (each loop also has a deadline): never a
# synchronisation by itself.
POLL = 0.02
POLL_PROCESS = 0.1


def world_with(policy: str, directory: Path, today: date = date(2026, 11, 23)) -> World:
    """A ``World`` with the default topology and catalogue and this policy text."""
    f = directory / "policy.toml"
    f.write_text(policy, encoding="utf-8")
    return load_world(policy=str(f), today=today)


async def until(done: Callable[[], object], timeout: float = 10.0, what: str = "condition"
                ) -> None:
    """Poll ``done`` every ``POLL`` s until it is true; AssertionError after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        assert loop.time() < deadline, f"{what} not met within {timeout:g} s"
        await asyncio.sleep(POLL)
