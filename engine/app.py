"""The faust app and the engine around it: topics, the case table, emitting and dead letters.

Handlers (one module per inbound stream) register their agents on an ``Engine``; they hold
no state of their own.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import faust
from faust.types import EventT

from engine import envelope, logs, state_codec, transport
from engine.clock import Clock, system_clock
from engine.core import Output, World
from engine.core.model import CaseState, Origin, StateName
from engine.metrics import Metrics
from engine.settings import Settings
from engine.topology import CITY_TOPIC_KEY
from schemas.codec import encode
from schemas.outbound import DeadLetter
from topics import SPECS, TopicNames

log = logs.get("zhida.engine")
STATES: tuple[str, ...] = StateName.__args__  # type: ignore[attr-defined]


class Engine:
    def __init__(self, settings: Settings, world: World, clock: Clock = system_clock,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.world = world
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.names = TopicNames(settings.prefix)
        self.ready = False
        state_codec.register()
        transport.register()
        self.app = faust.App(
            settings.app_id,
            broker=[f"{transport.SCHEME}://{b.strip()}" for b in settings.bootstrap.split(",")],
            store=settings.store,
            datadir=str(settings.data_dir),
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication,
            topic_allow_declare=True,
            table_standby_replicas=0,
            consumer_auto_offset_reset="earliest",
            # NOTES.md: the defaults make the group join wait ~30 s on the embedded broker
            broker_rebalance_timeout=4.0,
            broker_session_timeout=6.0,
            broker_heartbeat_interval=1.0,
            broker_commit_interval=1.0,
            web_enabled=True,
            web_port=settings.http_port,
            web_bind=settings.http_host,
            web_host=settings.http_host,
            producer_linger=0.005,
        )
        self.topics: dict[str, faust.TopicT] = {
            spec.key: self.app.topic(self.names.prefix + spec.suffix,
                                     partitions=settings.partitions)
            for spec in SPECS
        }
        districts = [*world.topology.districts, CITY_TOPIC_KEY]
        self.dispatch: dict[str, faust.TopicT] = {
            d: self.app.topic(self.names.dispatch(d), partitions=settings.partitions)
            for d in districts
        }
        self.cases = self.app.Table(
            "cases", partitions=settings.partitions, key_type=str,
            help="case state, one writer per case",
        )
        # faust derives table serializers from key/value types only (falling back to json)
        # and builds the changelog topic with them at once: without this, recovery cannot
        # decode the changelog and waits forever (seen on the embedded broker)
        self.cases.key_serializer = "raw"
        self.cases.value_serializer = state_codec.NAME
        self.cases.changelog_topic = self.cases._new_changelog_topic()
        self.app.on_rebalance_complete.connect(self._on_rebalance_complete)

    async def _on_rebalance_complete(self, *_: Any, **__: Any) -> None:
        counts: dict[str, int] = {}
        for state in self.cases.values():
            counts[state.state] = counts.get(state.state, 0) + 1
        for name in STATES:
            self.metrics.cases.labels(name).set(counts.get(name, 0))
        self.ready = True
        self.metrics.ready.set(1)
        log.info("ready", cases=sum(counts.values()))

    # ---- table ----

    def load(self, case_id: str) -> CaseState | None:
        return self.cases.get(case_id)

    def store(self, case_id: str, state: CaseState) -> None:
        self.cases[case_id] = state

    # ---- producing ----

    async def emit(self, out: Output) -> None:
        topic = self.dispatch[out.district or CITY_TOPIC_KEY] if out.channel == "dispatch" \
            else self.topics[out.channel]
        at: datetime = getattr(out.value, "at", None) or out.value.issued_at
        # straight to the producer: faust's Topic.send machinery costs more than the send, and
        # the consumer still flushes this producer before it commits offsets
        await self.app.producer.send(
            topic.get_topic_name(), out.key.encode(), encode(out.value), None, None,
            envelope.headers(out.ce_id, out.ce_type, self.settings.source, at),
        )

    async def send_command(self, case_id: str, command: bytes) -> None:
        await self.app.producer.send(self.names.case_commands, case_id.encode(), command, None,
                                     None, None)

    async def dead_letter(self, reason: str, detail: str, *, topic: str,
                          partition: int | None, offset: int | None, key: bytes | str | None,
                          value: bytes | str | None) -> None:
        self.metrics.deadletters.labels(reason).inc()
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        original: str | None = None
        original_b64: str | None = None
        if isinstance(value, str):
            original = value
        elif value is not None:
            try:
                original = value.decode("utf-8")
            except UnicodeDecodeError:
                original_b64 = base64.b64encode(value).decode()
        now = self.clock()
        letter = DeadLetter(reason=reason, detail=detail, source_topic=topic,
                            partition=partition, offset=offset, key=key, original=original,
                            original_base64=original_b64, at=now)
        ce_id = f"deadletter/{topic}/{partition}/{offset}"
        log.warning("dead_letter", reason=reason, detail=detail, topic=topic,
                    partition=partition, offset=offset)
        await self.topics["deadletter"].send(
            key=key.encode() if key else None, value=encode(letter),
            headers=envelope.headers(ce_id, "zhida.deadletter", self.settings.source, now),
        )

    async def dead_letter_event(self, event: EventT, reason: str, detail: str) -> None:
        m = event.message
        await self.dead_letter(reason, detail, topic=m.topic, partition=m.partition,
                               offset=m.offset, key=m.key, value=m.value)

    async def dead_letter_origin(self, origin: Origin | None, reason: str, detail: str) -> None:
        o = origin or Origin(topic=self.names.case_commands)
        await self.dead_letter(reason, detail, topic=o.topic, partition=o.partition,
                               offset=o.offset, key=o.key, value=o.original)

    @staticmethod
    def origin_of(event: EventT) -> Origin:
        m = event.message
        key = m.key.decode("utf-8", "replace") if isinstance(m.key, bytes) else m.key
        value = m.value.decode("utf-8", "replace") if isinstance(m.value, bytes) else ""
        return Origin(topic=m.topic, partition=m.partition, offset=m.offset, key=key,
                      original=value, timestamp=m.timestamp)
