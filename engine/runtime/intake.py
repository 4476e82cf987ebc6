"""The shared loop of every inbound handler: decode, turn into a case command, forward.

Inbound handlers never touch case state; the case writer (handlers/case_commands.py) does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import faust

from engine.core import World, merge
from engine.core.model import Command, GroupOpen, OpenCase, Origin
from engine.runtime import logs
from engine.runtime.app import Engine
from engine.runtime.kafka.guard import ContiguityGuard
from engine.runtime.outputs import input_time, origin_of
from engine.runtime.signing import signature_header
from schemas.codec import Refused, encode

log = logs.get("zhida.intake")

ToCommand = Callable[[bytes | None, Origin, datetime], Command]
SignedBy = Callable[[Command], str]


async def forward(engine: Engine, stream: faust.StreamT, name: str, to_command: ToCommand,
                  signed_by: SignedBy | None = None) -> None:
    """Each input becomes a command for the case writer, or a dead letter.

    A dead letter the brokers will not take stops the input's partition instead of crashing
    the agent or skipping the input (engine/runtime/deadletter.py): records of a stopped partition
    already fetched are withheld here, before the guard, which then still expects them.
    """
    consumer = f"intake_{name}"
    inputs = engine.metrics.inputs.labels(name)
    guard = ContiguityGuard(engine.app, consumer, engine.metrics)
    stops = engine.outputs.letter_stops
    async for event in stream.events():
        if stops.holds(engine.app, event):
            continue
        if not await guard.accept(event):
            continue
        inputs.inc()
        try:
            origin = origin_of(event)
            cmd = to_command(event.message.value, origin, input_time(origin, engine.clock()))
            if signed_by is not None and engine.keyset is not None:  # --keys: prove the unit
                engine.keyset.verify(event.message.value or b"",
                                     signature_header(event.message.headers), signed_by(cmd))
            raw = encode(cmd)
        except Refused as r:
            await engine.outputs.dead_letter_event(event, r.reason, r.detail, consumer=consumer)
            continue
        except Exception as e:  # a bug must not stop the stream; the input is kept
            log.exception("intake_failed", topic=event.message.topic)
            await engine.outputs.dead_letter_event(
                event, "schema", f"could not be processed: {e!r}", consumer=consumer)
            continue
        await engine.outputs.send_command(cmd.aggregate, raw)


def via_group(world: World, cmd: Command) -> Command:
    """A report that may merge goes to its merge group first (engine/core/merge.py), which
    decides on its partition whether it joins an open case or opens its own."""
    body = cmd.body
    if not isinstance(body, OpenCase):
        return cmd
    group = merge.group_of(world, body)
    if group is None:
        return cmd
    return Command(aggregate=group, at=cmd.at, origin=cmd.origin,
                   body=GroupOpen(open=body, case_id=cmd.aggregate))


def grouped(world: World, to_command: ToCommand) -> ToCommand:
    def to_group(raw: bytes | None, origin: Origin, now: datetime) -> Command:
        return via_group(world, to_command(raw, origin, now))
    return to_group


def register(engine: Engine, name: str, to_command: ToCommand,
             signed_by: SignedBy | None = None) -> None:
    """An agent on the inbound topic ``name`` (a key of ``topics.SPECS``) forwarding commands.

    ``signed_by`` names the unit whose key must have signed the input (CONTRACT.md "Signed
    messages"), checked when the worker has a key set; decoded first, so a body that is not
    a valid message is refused for that (``schema``), a valid one without its signature as
    ``unauthorized``."""

    async def intake(stream: faust.StreamT) -> None:
        await forward(engine, stream, name, to_command, signed_by)

    intake.__name__ = intake.__qualname__ = f"intake_{name}"
    engine.app.agent(engine.topics[name], name=f"intake-{name.replace('_', '-')}")(intake)
