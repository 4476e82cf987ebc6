"""The crash soak's reader: every output topic read back from offset 0 (bench/crashload.py).

:class:`Reader` reads every output topic from the beginning with confluent-kafka (librdkafka),
a client that shares no code with the engine's aiokafka/faust stack: a client bug common to
producer and reader cannot hide a loss. It assigns partitions (no group). Each message is kept
as a :class:`Record`: its raw value (for body comparison) and the few fields the load reacts to
and the checker (bench/crashload_check.py) judges.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from engine.data.topology import Topology
from topics import TopicNames

NAMES = TopicNames("zhida.")
TOPO = Topology.load()


@dataclass(slots=True)
class Record:
    """One output message: raw value kept for body comparison, a few fields extracted."""

    topic: str
    partition: int
    offset: int
    key: str | None
    raw: bytes
    ce_id: str | None
    kind: str  # event (case), devent (directive), order, notice, dead
    f: dict[str, Any]

    def body(self) -> Any:
        return orjson.loads(self.raw)


_FIELDS = {
    "event": ("event_id", "case_id", "seq", "type", "state", "unit"),
    "devent": ("event_id", "directive_id", "seq", "type", "target", "actor", "targets"),
    "order": ("order_id", "kind", "case_id", "directive_id", "target", "role"),
    "notice": ("notification_id", "case_id", "kind", "complaint_id"),
    "dead": ("reason", "source_topic", "partition", "offset"),
}


def kind_of(topic: str) -> str:
    if topic == NAMES.case_events:
        return "event"
    if topic == NAMES.directive_events:
        return "devent"
    if topic == NAMES.notifications:
        return "notice"
    if topic == NAMES.deadletter:
        return "dead"
    return "order"


def make_record(topic: str, partition: int, offset: int, key: bytes | None, raw: bytes,
                headers: Iterable[tuple[str, bytes]] | None) -> Record:
    kind = kind_of(topic)
    hdrs = dict(headers or ())
    ce = hdrs.get("ce_id")
    f: dict[str, Any] = {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        f["_undecodable"] = True
    else:
        f = {k: value.get(k) for k in _FIELDS[kind]}
        if kind == "dead":
            f["detail"] = str(value.get("detail") or "")[:200]
            f["ref"] = _dead_letter_ref(value)
    return Record(topic, partition, offset, key.decode("utf-8", "replace") if key else None,
                  raw, ce.decode("utf-8", "replace") if ce else None, kind, f)


def _dead_letter_ref(value: dict[str, Any]) -> str | None:
    """The idempotency key of the refused input (update_id or complaint_id), if readable."""
    original = value.get("original")
    if not isinstance(original, str):
        return None
    try:
        o = orjson.loads(original)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(o, dict):
        return None
    ref = (o.get("update_id") or o.get("complaint_id") or o.get("feedback_id")
           or o.get("event_id"))
    return ref if isinstance(ref, str) else None


def output_topics() -> list[str]:
    return [NAMES.case_events, NAMES.directive_events, NAMES.notifications, NAMES.deadletter,
            *(NAMES.dispatch(d) for d in (*TOPO.districts, "city"))]


class Reader:
    """Every output topic from offset 0, by librdkafka in a thread; records in arrival order."""

    def __init__(self, bootstrap: str, topics: Sequence[str] | None = None) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics or output_topics())
        self._records: list[Record] = []
        self._lock = threading.Lock()
        self._more = threading.Condition(self._lock)  # notified when records are added
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    def start(self, timeout: float = 15.0) -> Reader:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": f"crashload-reader-{uuid.uuid4().hex[:8]}",  # required; never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 20,
        })
        md = consumer.list_topics(timeout=timeout)
        missing = [t for t in self.topics if t not in md.topics or md.topics[t].error]
        if missing:
            consumer.close()
            raise RuntimeError(f"output topics missing on the broker: {missing[:5]}")
        tps = [TopicPartition(t, p, OFFSET_BEGINNING)
               for t in self.topics for p in md.topics[t].partitions]
        consumer.assign(tps)
        self._thread = threading.Thread(target=self._run, args=(consumer,), daemon=True,
                                        name="crashload-reader")
        self._thread.start()
        return self

    def _run(self, consumer: Consumer) -> None:
        try:
            while not self._stop.is_set():
                batch = consumer.consume(num_messages=2000, timeout=0.1)
                out = []
                for m in batch:
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            self.errors.append(str(err))
                        continue
                    out.append(make_record(m.topic(), m.partition(), m.offset(), m.key(),
                                           m.value() or b"", m.headers()))
                if out:
                    with self._more:
                        self._records.extend(out)
                        self._more.notify_all()
        finally:
            consumer.close()

    def since(self, index: int) -> tuple[list[Record], int]:
        with self._lock:
            new = self._records[index:]
            return new, index + len(new)

    def wait_for_more(self, seen: int, timeout: float) -> bool:
        """Block until more than ``seen`` records are held, or ``timeout`` s pass."""
        with self._more:
            return self._more.wait_for(lambda: len(self._records) > seen,
                                       max(timeout, 0.0))

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
