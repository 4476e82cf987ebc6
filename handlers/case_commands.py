"""The single writer: every command about a case is decided here, one partition per case.

Order of effects: outputs are produced before the table write, and faust flushes the
producer before it commits offsets. A crash in between replays the command against the old
state, which re-emits the same outputs with the same ids: duplicates a consumer can drop,
never a loss.
"""

from __future__ import annotations

import time

import orjson

from engine import logs
from engine.app import Engine
from engine.core import (
    Accepted,
    CaseState,
    Command,
    Duplicate,
    Ignored,
    apply,
    decide,
    react,
)

log = logs.get("zhida.cases")


def register(engine: Engine) -> None:
    world, metrics = engine.world, engine.metrics

    @engine.app.agent(engine.topics["case_commands"], name="case-writer")
    async def case_writer(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            started = time.perf_counter()
            try:
                cmd = Command.model_validate(orjson.loads(event.message.value))
            except Exception as e:  # written by our own intake: a bug, but keep the input
                await engine.dead_letter_event(event, "schema", f"bad internal command: {e}")
                continue
            state = engine.load(cmd.case_id)
            try:
                decision = decide(state, cmd, world)
                if isinstance(decision, Accepted):
                    new = apply(state, cmd, decision.events)
                    outputs = react(new, decision.events, world.topology)
            except Exception as e:  # a bug in the core must not stop every other case
                log.exception("decide_failed", case_id=cmd.case_id, kind=cmd.body.kind)
                metrics.internal_errors.inc()
                await engine.dead_letter_origin(
                    cmd.origin, "invalid_transition",
                    f"engine error deciding {cmd.body.kind} for case {cmd.case_id}: {e!r}")
                continue
            if isinstance(decision, Accepted):
                for out in outputs:
                    await engine.emit(out)
                engine.store(cmd.case_id, new)
                _count(engine, cmd, state, new, decision)
            elif isinstance(decision, Duplicate):
                metrics.duplicates.labels(cmd.body.kind).inc()
            elif isinstance(decision, Ignored):
                metrics.ignored.inc()
            else:
                await engine.dead_letter_origin(cmd.origin, decision.reason, decision.detail)
            metrics.decide_seconds.observe(time.perf_counter() - started)


def _count(engine: Engine, cmd: Command, before: CaseState | None, after: CaseState,
           decision: Accepted) -> None:
    m = engine.metrics
    m.case_moved(before.state if before else None, after.state)
    for e in decision.events:
        m.case_events.labels(e.type).inc()
        if e.type in ("dispatched", "triaged") and before is None:
            # from the input's own timestamp (producer time) when it has one
            since = cmd.origin.timestamp if cmd.origin and cmd.origin.timestamp else None
            now = engine.clock()
            lag = now.timestamp() - since if since else (now - cmd.at).total_seconds()
            m.intake_to_dispatch.observe(max(lag, 0.0))
