"""The single writer: every command about a case is decided here, one partition per case.

The agent only batches: the rules are in ``engine/core`` and the order of effects that makes a
SIGKILL harmless is in ``engine/runtime/writer.py``.
"""

from __future__ import annotations

from engine.runtime.app import Engine
from engine.runtime.writer import CaseWriter


def register(engine: Engine) -> None:
    writer = CaseWriter(engine)
    engine.on_assignment.append(lambda ps: engine.metrics.set_case_gauges(writer.on_assignment(ps)))

    @engine.app.agent(engine.topics["case_commands"], name="case-writer")
    async def case_writer(stream):  # type: ignore[no-untyped-def]
        # take_events acks a batch only after this body has written it
        conf = engine.settings
        async for events in stream.take_events(conf.writer_batch_max,
                                               within=conf.writer_batch_within):
            await writer.handle(events)
