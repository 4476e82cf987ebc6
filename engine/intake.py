"""The shared loop of every inbound handler: decode, turn into a case command, forward.

Inbound handlers never touch case state; the case writer (handlers/case_commands.py) does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import faust

from engine import logs
from engine.app import Engine
from engine.core.model import Command, Origin
from engine.guard import ContiguityGuard
from schemas.codec import Refused, encode

log = logs.get("zhida.intake")

ToCommand = Callable[[bytes | None, Origin, datetime], Command]


async def forward(engine: Engine, stream: faust.StreamT, name: str, to_command: ToCommand
                  ) -> None:
    inputs = engine.metrics.inputs.labels(name)
    guard = ContiguityGuard(engine.app, f"intake_{name}", engine.metrics)
    async for event in stream.events():
        if not await guard.accept(event):
            continue
        inputs.inc()
        try:
            origin = engine.origin_of(event)
            cmd = to_command(event.message.value, origin, engine.input_time(origin))
            raw = encode(cmd)
        except Refused as r:
            await engine.dead_letter_event(event, r.reason, r.detail)
            continue
        except Exception as e:  # a bug must not stop the stream; the input is kept
            log.exception("intake_failed", topic=event.message.topic)
            await engine.dead_letter_event(event, "schema", f"could not be processed: {e!r}")
            continue
        await engine.send_command(cmd.case_id, raw)


def register(engine: Engine, name: str, to_command: ToCommand) -> None:
    """An agent on the inbound topic ``name`` (a key of ``topics.SPECS``) forwarding commands."""

    async def intake(stream: faust.StreamT) -> None:
        await forward(engine, stream, name, to_command)

    intake.__name__ = intake.__qualname__ = f"intake_{name}"
    engine.app.agent(engine.topics[name], name=f"intake-{name.replace('_', '-')}")(intake)
