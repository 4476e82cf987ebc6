"""Build and run the engine's faust worker."""

from __future__ import annotations

import asyncio
import sys

import faust

from engine.runtime import logs, signing, timers
from engine.runtime.app import Engine
from engine.runtime.health import Health
from engine.runtime.http import routes as web
from engine.runtime.kafka.admin import ensure_topics
from engine.runtime.settings import Settings
from engine.runtime.world import load_world

log = logs.get("zhida.worker")


def build(settings: Settings) -> Engine:
    world = load_world(
        str(settings.topology) if settings.topology else None,
        str(settings.catalogue) if settings.catalogue else None,
        str(settings.policy) if settings.policy else None,
    )
    from handlers import register_all  # handlers import engine.runtime.app: keep the import here

    engine = Engine(settings, world)
    if settings.keys is not None:
        install_keys(engine, settings)
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


def install_keys(engine: Engine, settings: Settings) -> None:
    """Every update and directive must be signed by its unit's key (engine/runtime/signing.py); the
    key set is reloaded on SIGHUP and when the file changes, without a restart."""
    assert settings.keys is not None
    keyset = engine.keyset = signing.KeySet(settings.keys)  # KeysError: one line, exit 2
    log.info("keys", file=str(settings.keys), kids=len(keyset))

    @engine.app.task
    async def keys_reload() -> None:
        signing.install_sighup(asyncio.get_running_loop(), keyset)
        await signing.watch(keyset, settings.keys_poll)


def run(settings: Settings) -> None:
    logs.configure(settings.log_level)
    try:
        engine = build(settings)
    except signing.KeysError as e:  # a bad key set: one line, no traceback
        print(e, file=sys.stderr)
        raise SystemExit(2) from None
    asyncio.run(ensure_topics(settings, engine.world.topology.districts))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(
        engine.app, loglevel=settings.log_level,
        redirect_stdouts=False, override_logging=False, quiet=True,
        loop=asyncio.new_event_loop(),
    )
    worker.execute_from_commandline()
