"""What the worker produces: outputs of the core as records, dead letters, commands.

Every record the engine writes besides the changelog is built here, so the topic of an
output, the CloudEvents headers and the bounds of a dead letter are decided in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import faust
from faust.types import EventT

from engine.core import Output
from engine.core.model import Origin
from engine.data.topology import CITY_TOPIC_KEY
from engine.runtime import deadletter, envelope, logs
from engine.runtime.clock import Clock
from engine.runtime.metrics import Metrics
from schemas.codec import clip, encode
from topics import TopicNames

if TYPE_CHECKING:
    from faust.types import TopicT

log = logs.get("zhida.engine")


@dataclass(frozen=True, slots=True)
class Record:
    """One message to produce: an output, a dead letter or a changelog record."""

    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (a changelog delete)
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None


def origin_of(event: EventT) -> Origin:
    """Where an input came from, kept on its command (for its dead letter and its time)."""
    m = event.message
    key = m.key.decode("utf-8", "replace") if isinstance(m.key, bytes) else m.key
    value = m.value.decode("utf-8", "replace") if isinstance(m.value, bytes) else ""
    return Origin(topic=m.topic, partition=m.partition, offset=m.offset, key=key,
                  original=value, timestamp=m.timestamp)


def input_time(origin: Origin, now: datetime) -> datetime:
    """The core's "now" for an input: its record's timestamp, never later than now.

    Deterministic: an input read again after a crash becomes the same command, with the
    same deadlines and bytes. (Stamping the wall clock made a re-read update a second
    command with another ``at``: one seq with two bodies in a crash soak.) The SLA clock
    starts when the input reached the bus, also while no worker ran.
    """
    if origin.timestamp is None:
        return now
    return min(datetime.fromtimestamp(origin.timestamp, UTC), now)


class Outputs:
    """Builds and sends the worker's records; holds the partitions stopped on a letter."""

    def __init__(self, app: faust.App, names: TopicNames, topics: dict[str, TopicT],
                 dispatch: dict[str, TopicT], source: str, clock: Clock,
                 metrics: Metrics) -> None:
        self.app = app
        self.names = names
        self.topics = topics
        self.dispatch = dispatch
        self.source = source  # the CloudEvents ``source`` of every record
        self.clock = clock
        self.metrics = metrics
        self.letter_stops = deadletter.Stops()  # partitions stopped on an unsent dead letter

    def output_record(self, out: Output) -> Record:
        topic = self.dispatch[out.district or CITY_TOPIC_KEY] if out.channel == "dispatch" \
            else self.topics[out.channel]
        at: datetime = getattr(out.value, "at", None) or out.value.issued_at
        return Record(topic.get_topic_name(), out.key.encode(), encode(out.value), None,
                      envelope.headers(out.ce_id, out.ce_type, self.source, at))

    async def send_command(self, aggregate: str, command: bytes) -> None:
        await self.app.producer.send(self.names.case_commands, aggregate.encode(), command,
                                     None, None, None)

    async def send(self, r: Record) -> None:
        """Queue one record; faust flushes the producer before it commits offsets."""
        await self.app.producer.send(r.topic, r.key, r.value, r.partition, None, r.headers)

    def dead_letter_record(self, reason: str, detail: str, *, topic: str,
                           partition: int | None, offset: int | None,
                           key: bytes | str | None, value: bytes | str | None,
                           at: datetime | None = None) -> Record:
        """The dead letter for an input; given ``at``, a replay resends the same bytes.

        Every letter is built here, bounded (engine/runtime/deadletter.py): whatever the
        input, its detail or its key, the record fits the producer's and the brokers' limits.
        """
        self.metrics.deadletters.labels(reason).inc()
        now = at or self.clock()
        letter = deadletter.build_letter(reason, detail, source_topic=topic,
                                         partition=partition, offset=offset, key=key,
                                         value=value, at=now)
        ce_id = f"deadletter/{topic}/{partition}/{offset}"
        log.warning("dead_letter", reason=reason, detail=clip(letter.detail, 200), topic=topic,
                    partition=partition, offset=offset, truncated=letter.truncated)
        return Record(self.names.deadletter, letter.key, letter.value, None,
                      envelope.headers(ce_id, "zhida.deadletter", self.source, now))

    def dead_letter_origin_record(self, origin: Origin | None, reason: str, detail: str,
                                  at: datetime | None = None) -> Record:
        o = origin or Origin(topic=self.names.case_commands)
        return self.dead_letter_record(reason, detail, topic=o.topic, partition=o.partition,
                                       offset=o.offset, key=o.key, value=o.original, at=at)

    async def dead_letter_event(self, event: EventT, reason: str, detail: str, *,
                                consumer: str) -> bool:
        """Dead-letter a refused input and wait until the brokers have the letter.

        False when it could not be sent even after retries: then the input's partition is
        stopped, the event kept unacknowledged (``deadletter.Stops``), never skipped.
        """
        m = event.message
        at = input_time(origin_of(event), self.clock())
        record = self.dead_letter_record(reason, detail, topic=m.topic, partition=m.partition,
                                         offset=m.offset, key=m.key, value=m.value, at=at)
        error = await deadletter.send_letter(self.app.producer, record)
        if error is None:
            return True
        name = deadletter.error_name(error)
        stop = self.letter_stops.hold(self.app, event, consumer, name)
        self.metrics.deadletter_failures.labels(consumer).inc()
        log.error("deadletter_failed", consumer=consumer, reason=reason, topic=m.topic,
                  partition=m.partition, offset=m.offset, error=name,
                  message=clip(str(error), 300), stopped=stop.where)
        return False
