"""The faust app and the engine around it: topics, the case table, emitting and dead letters.

Handlers (one module per inbound stream) register their agents on an ``Engine``; they hold
no state of their own.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import faust
from faust.types import EventT

from engine.core import Accepted, Command, Output, World
from engine.core.model import CaseState, Origin, StateName
from engine.data.topology import CITY_TOPIC_KEY
from engine.runtime import deadletter, envelope, logs
from engine.runtime.clock import Clock, system_clock
from engine.runtime.directive_status import StatusCache
from engine.runtime.kafka import recovery, transport
from engine.runtime.metrics import Metrics
from engine.runtime.settings import Settings
from engine.runtime.signing import KeySet
from engine.runtime.store import CaseStore
from schemas.codec import clip, encode
from topics import SPECS, TopicNames

if TYPE_CHECKING:  # the ticker holds the engine: the engine holds it by type only
    from engine.runtime.timers import Ticker

log = logs.get("zhida.engine")
STATES: tuple[str, ...] = StateName.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Record:
    """One message to produce: an output, a dead letter or a changelog record."""

    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (a changelog delete)
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None


def _rocksdb_options(settings: Settings) -> dict[str, int]:
    mib = 1024 * 1024
    return {"write_buffer_size": settings.rocksdb_write_buffer_mb * mib,
            "max_write_buffer_number": 2,
            "target_file_size_base": 4 * settings.rocksdb_write_buffer_mb * mib,
            "block_cache_size": settings.rocksdb_block_cache_mb * mib}


def _credentials(settings: Settings) -> faust.SASLCredentials | None:
    if settings.security_protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if settings.security_protocol == "SASL_SSL":
        import ssl

        ssl_context = ssl.create_default_context()
    return faust.SASLCredentials(username=settings.sasl_username,
                                 password=settings.sasl_password,
                                 mechanism=settings.sasl_mechanism, ssl_context=ssl_context)


def advertised_host(settings: Settings) -> str:
    """The host in this worker's ``canonical_url``, which the group's assignor hands to every
    member: the others route ``/cases/{id}`` and ask for this worker's share of the city's
    figures there. A wildcard bind address is no address to call, so then the host name."""
    if settings.advertised_host:
        return settings.advertised_host
    if settings.http_host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return settings.http_host


class Engine:
    def __init__(self, settings: Settings, world: World, clock: Clock = system_clock,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.world = world
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.names = TopicNames(settings.prefix)
        self.ready = False
        transport.register()
        transport.CLIENT_KWARGS.clear()  # for the engine's own aiokafka clients
        transport.CLIENT_KWARGS.update(settings.client_kwargs())
        transport.FETCH_MAX_WAIT_MS = settings.fetch_max_wait_ms
        recovery.BULK_MIN = settings.bulk_restore_min
        self.keyset: KeySet | None = None  # when the worker has --keys
        self.letter_stops = deadletter.Stops()  # partitions stopped on an unsent dead letter
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
            table_standby_replicas=settings.standby_replicas,
            consumer_auto_offset_reset="earliest",
            # the defaults make the group join wait ~30 s on the embedded broker (NOTES.md)
            broker_rebalance_timeout=settings.rebalance_timeout,
            broker_session_timeout=settings.session_timeout,
            broker_heartbeat_interval=1.0,
            consumer_group_instance_id=settings.instance_id or None,  # KIP-345, opt-in
            broker_commit_interval=1.0,
            web_enabled=True,
            web_port=settings.http_port,
            web_bind=settings.http_host,
            web_host=advertised_host(settings),  # canonical_url: what the other workers call
            producer_linger=settings.producer_linger,
            producer_acks=-1,  # acks=all: every in-sync replica (min.insync.replicas, admin.py)
            # bulk-loads a changelog partition the local store is far behind
            # (engine/runtime/kafka/recovery.py)
            TableManager="engine.runtime.kafka.recovery:TableManager",
            broker_credentials=_credentials(settings),
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
        # one table for every record of the case writer (engine/runtime/store.py): raw bytes, read
        # and written by partition by the writer itself; faust keeps the changelog topic,
        # recovery on assignment and the local store
        self.cases = self.app.Table(
            "cases", partitions=settings.partitions, key_type=bytes, value_type=bytes,
            help="case writer records: states, files, history, partition marks",
            options=_rocksdb_options(settings) if settings.store.startswith("rocksdb") else None,
        )
        # faust derives table serializers from key/value types only (falling back to json)
        # and builds the changelog topic with them at once: without this, recovery cannot
        # decode the changelog and waits forever (seen on the embedded broker)
        self.cases.key_serializer = "raw"
        self.cases.value_serializer = "raw"
        self.cases.changelog_topic = self.cases._new_changelog_topic()
        self.store = CaseStore(self.cases, settings.partitions)
        self.statuses = StatusCache()  # GET /directives/{id} answers (the writer patches it)
        # called with the partitions of case.commands once they are recovered
        self.on_assignment: list[Callable[[list[int]], object]] = []
        self.partitions: list[int] = []  # of case.commands, held by this worker
        self.ticker: Ticker | None = None  # once registered (engine/runtime/timers.py)
        self.app.on_rebalance_complete.connect(self._on_rebalance_complete)

    async def _on_rebalance_complete(self, *_: Any, **__: Any) -> None:
        """Tables are recovered: figures come from each partition's marks, not a scan."""
        commands = self.names.case_commands
        partitions = sorted(tp.partition for tp in self.app.consumer.assignment()
                            if tp.topic == commands)
        self.partitions = partitions
        self.statuses.forget()
        for callback in self.on_assignment:
            callback(partitions)
        if self.ticker is not None:  # faust resumes the streams after this returns
            await self.ticker.recovered()
        self.ready = True
        self.metrics.ready.set(1)
        log.info("ready", partitions=partitions)

    def set_case_gauges(self, totals: dict[str, int]) -> None:
        for name in STATES:
            self.metrics.cases.labels(name).set(totals.get(name, 0))

    # ---- table ----

    def load(self, case_id: str) -> CaseState | None:
        return self.store.state(case_id)

    # ---- producing ----

    def output_record(self, out: Output) -> Record:
        topic = self.dispatch[out.district or CITY_TOPIC_KEY] if out.channel == "dispatch" \
            else self.topics[out.channel]
        at: datetime = getattr(out.value, "at", None) or out.value.issued_at
        return Record(topic.get_topic_name(), out.key.encode(), encode(out.value), None,
                      envelope.headers(out.ce_id, out.ce_type, self.settings.source, at))

    def count_case(self, cmd: Command, before: CaseState | None, after: CaseState,
                   decision: Accepted) -> None:
        m = self.metrics
        for e in decision.events:
            m.case_events.labels(e.type).inc()
            if e.type == "created" and e.opened is not None:
                loc = e.opened.location
                method = "unit" if "unit" in loc else "point" if "lat" in loc else "address"
                outcome = ("boundary" if e.boundary else "triage"
                           if any(x.type == "triaged" for x in decision.events) else "placed")
                m.placements.labels(method, outcome).inc()
            if e.type in ("dispatched", "triaged") and before is None:
                # from the input's own timestamp (producer time) when it has one
                since = cmd.origin.timestamp if cmd.origin and cmd.origin.timestamp else None
                now = self.clock()
                lag = now.timestamp() - since if since else (now - cmd.at).total_seconds()
                m.intake_to_dispatch.observe(max(lag, 0.0))

    async def send_command(self, case_id: str, command: bytes) -> None:
        await self.app.producer.send(self.names.case_commands, case_id.encode(), command, None,
                                     None, None)

    def dead_letter_record(self, reason: str, detail: str, *, topic: str,
                           partition: int | None, offset: int | None,
                           key: bytes | str | None, value: bytes | str | None,
                           at: datetime | None = None) -> Record:
        """The dead letter for an input; given ``at``, a replay resends the same bytes.

        Every letter is built here, bounded (engine/runtime/deadletter.py): whatever the input, its
        detail or its key, the record fits the producer's and the brokers' limits.
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
                      envelope.headers(ce_id, "zhida.deadletter", self.settings.source, now))

    def dead_letter_origin_record(self, origin: Origin | None, reason: str, detail: str,
                                  at: datetime | None = None) -> Record:
        o = origin or Origin(topic=self.names.case_commands)
        return self.dead_letter_record(reason, detail, topic=o.topic, partition=o.partition,
                                       offset=o.offset, key=o.key, value=o.original, at=at)

    async def send(self, r: Record) -> None:
        """Queue one record; faust flushes the producer before it commits offsets."""
        await self.app.producer.send(r.topic, r.key, r.value, r.partition, None, r.headers)

    async def dead_letter_event(self, event: EventT, reason: str, detail: str, *,
                                consumer: str) -> bool:
        """Dead-letter a refused input and wait until the brokers have the letter.

        False when it could not be sent even after retries: then the input's partition is
        stopped, the event kept unacknowledged (``deadletter.Stops``), never skipped.
        """
        m = event.message
        at = self.input_time(self.origin_of(event))
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

    def input_time(self, origin: Origin) -> datetime:
        """The core's "now" for an input: its record's timestamp, never later than now.

        Deterministic: an input read again after a crash becomes the same command, with the
        same deadlines and bytes. (Stamping the wall clock made a re-read update a second
        command with another ``at``: one seq with two bodies in a crash soak.) The SLA clock
        starts when the input reached the bus, also while no worker ran.
        """
        now = self.clock()
        if origin.timestamp is None:
            return now
        return min(datetime.fromtimestamp(origin.timestamp, UTC), now)

    @staticmethod
    def origin_of(event: EventT) -> Origin:
        m = event.message
        key = m.key.decode("utf-8", "replace") if isinstance(m.key, bytes) else m.key
        value = m.value.decode("utf-8", "replace") if isinstance(m.value, bytes) else ""
        return Origin(topic=m.topic, partition=m.partition, offset=m.offset, key=key,
                      original=value, timestamp=m.timestamp)
