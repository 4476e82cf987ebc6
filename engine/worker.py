"""Build and run the engine's faust worker."""

from __future__ import annotations

import asyncio

import faust

from engine import logs, timers, web
from engine.admin import ensure_topics
from engine.app import Engine
from engine.core import World
from engine.health import Health
from engine.settings import Settings

log = logs.get("zhida.worker")


def build(settings: Settings) -> Engine:
    world = World.load(
        str(settings.topology) if settings.topology else None,
        str(settings.catalogue) if settings.catalogue else None,
        str(settings.policy) if settings.policy else None,
    )
    from handlers import register_all  # handlers import engine.app: keep the import here

    engine = Engine(settings, world)
    register_all(engine)
    timers.register(engine)
    web.register(engine, Health.install(engine))
    uncovered = world.fallback_years(engine.clock().date())
    engine.metrics.calendar_fallback.set(len(uncovered))
    if uncovered:
        log.warning("calendar_fallback", years=uncovered,
                    detail="no holiday data: weekends only; list the announced days in the "
                    "policy's [calendar.years.<year>] (docs/policy.md)")
    log.info("policy", digest=world.policy.digest, clock=world.policy.clock)
    return engine


def run(settings: Settings) -> None:
    logs.configure(settings.log_level)
    engine = build(settings)
    asyncio.run(ensure_topics(settings, engine.world.topology.districts))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(
        engine.app, loglevel=settings.log_level,
        redirect_stdouts=False, override_logging=False, quiet=True,
        loop=asyncio.new_event_loop(),
    )
    worker.execute_from_commandline()
