"""A bounded check that no input record is passed over.

faust-streaming 0.15.3 can drop records after a rebalance: its fetch loop keeps a per
partition "read offset" and silently drops any record below it (``DROPPED MESSAGE ROFF``,
faust/transport/consumer.py ``_drain_messages``). When a stale read offset survives a seek
to the committed position (the loop sets it after a callback that a rebalance interrupted),
the records between the committed offset and the stale one never reach the agent; they stay
uncommitted, so only the next restart brings them back (NOTES.md: 107 inputs passed over in
one restart of four). faust-streaming issues 216/221 and PRs 217/223/241 fixed neighbours of
this race, not this one.

The guard sits in the agent and knows where each partition must continue: for the case
writer, its own durable watermark (``Marks.through`` + 1); for the stateless intake agents,
the offset faust committed for the partition when the generation began. A record beyond
that is a hole: the guard seeks the partition back, drops what arrives until the missing
offset comes, and counts the event. Offsets can legitimately jump (transaction markers on
an upstream topic, retention): if after the seek the same record arrives again first, the
broker has nothing in between and the guard accepts the jump.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from engine.runtime import logs

log = logs.get("zhida.guard")

SEEK_PATIENCE_S = 30.0


@dataclass
class _Seek:
    expected: int
    found: int  # the offset that revealed the hole
    since: float = 0.0


class ContiguityGuard:
    def __init__(self, app: Any, name: str, metrics: Any | None = None) -> None:
        self.app = app
        self.name = name
        self.metrics = metrics
        self._seeking: dict[Any, _Seek] = {}
        self._next: dict[Any, int] = {}
        self._generation: int | None = None

    def _new_generation(self) -> None:
        gen = getattr(self.app, "consumer_generation_id", None)
        if gen != self._generation:
            self._generation = gen
            self._next.clear()
            self._seeking.clear()

    def committed(self, tp: Any) -> int | None:
        """Where faust resumed this partition in this generation (None: unknown)."""
        consumer = getattr(self.app, "consumer", None)
        offsets = getattr(consumer, "_committed_offset", None)
        return offsets.get(tp) if offsets is not None else None

    async def accept(self, event: Any, expected: int | None = None) -> bool:
        """True to process the event; False to drop it (a seek back is under way).

        ``expected`` is the next offset the caller knows it needs; when None the guard
        follows the records it has accepted, starting from faust's committed offset.
        A dropped event is never acknowledged: faust would let its offset be committed
        (it tolerates a gap of one below the lowest acknowledged offset).
        """
        if await self._accept(event.message.tp, event.message.offset, expected):
            return True
        event.message.acked = True  # withheld: Message.ack() will not reach the consumer
        return False

    async def _accept(self, tp: Any, offset: int, expected: int | None) -> bool:
        self._new_generation()
        if expected is None:
            expected = self._next.get(tp)
            if expected is None:
                expected = self.committed(tp)
        seek = self._seeking.get(tp)
        if seek is not None:
            if offset == seek.expected or offset < seek.expected:
                del self._seeking[tp]
            elif offset == seek.found:  # fetched again from the seek: nothing in between
                log.warning("offset_jump_accepted", consumer=self.name, topic=tp.topic,
                            partition=tp.partition, expected=seek.expected, offset=offset)
                del self._seeking[tp]
            elif time.monotonic() - seek.since > SEEK_PATIENCE_S:
                # never a skip: restart the partition's consumption from the missing offset
                log.error("offset_hole_unrecovered", consumer=self.name, topic=tp.topic,
                          partition=tp.partition, expected=seek.expected, offset=offset)
                seek.since = time.monotonic()
                await self.app.consumer.seek(tp, seek.expected)
                return False
            else:
                return False
        elif expected is not None and offset > expected:
            await self._seek_back(tp, expected, offset)
            return False
        self._next[tp] = offset + 1
        return True

    async def _seek_back(self, tp: Any, expected: int, found: int) -> None:
        log.warning("offset_hole", consumer=self.name, topic=tp.topic, partition=tp.partition,
                    expected=expected, offset=found, missing=found - expected)
        if self.metrics is not None:
            self.metrics.offset_holes.labels(self.name).inc()
        self._seeking[tp] = _Seek(expected, found, since=time.monotonic())
        await self.app.consumer.seek(tp, expected)
