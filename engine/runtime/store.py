"""The case writer's records in faust's table store, addressed by partition.

faust's ``Table`` finds the partition of a write from the *current event*, which a batch
writer does not have, and it writes the local store before the changelog. The writer needs
the opposite order (engine/runtime/writer.py), so it keeps faust for what faust does well (the
changelog topic, recovery on assignment, RocksDB per partition, persisted offsets) and does
its own reads and writes here: raw bytes, explicit partition.

Keys: engine/runtime/storekeys.py says which there are and how ids are escaped in them; its builders
are importable from here as before.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import orjson
from aiokafka.partitioner import murmur2
from faust.types import TP
from pydantic import BaseModel

from engine.core.directive import DirectiveState, Task
from engine.core.merge import GroupState
from engine.core.model import CaseEvent, CaseFile, CaseState
from engine.core.sla import Timer
from engine.runtime.storekeys import (  # noqa: F401  (re-exported: the store's key builders)
    INSIGHT_PREFIX,
    MS_DIGITS,
    PRECEDENT_PREFIX,
    SEQ_DIGITS,
    TIMER_PREFIX,
    directive_key,
    event_key,
    figures_day_key,
    figures_day_prefix,
    figures_now_key,
    file_key,
    group_key,
    insight_key,
    marks_key,
    policy_key,
    precedent_key,
    state_key,
    task_key,
    task_prefix,
    task_target,
    timer_bound,
    timer_key,
    timer_owner,
)

M = TypeVar("M", bound=BaseModel)
UNKEYED = (INSIGHT_PREFIX, PRECEDENT_PREFIX)  # records whose key does not name a partition


def dump_timer(t: Timer) -> bytes:
    d: dict[str, Any] = {"kind": t.kind, "stage": t.stage, "at": t.at}
    if t.target is not None:
        d["target"] = t.target
    return orjson.dumps(d)


def load_timer(raw: bytes) -> Timer:
    d = orjson.loads(raw)
    return Timer(d["kind"], d["stage"], datetime.fromisoformat(d["at"]), d.get("target"))


ZLIB = 0x01  # first byte of a compressed value; JSON values start with '{' or '['


def pack(obj: object) -> bytes:
    """JSON, deflated when that is smaller (every record counts against the changelog)."""
    raw = orjson.dumps(obj)
    z = zlib.compress(raw, 6)
    return bytes((ZLIB,)) + z if len(z) + 1 < len(raw) else raw


def unpack(raw: bytes) -> Any:
    return orjson.loads(zlib.decompress(raw[1:]) if raw[:1] == b"\x01" else raw)


def dump(model: BaseModel, exclude: frozenset[str] = frozenset({"case_id"})) -> bytes:
    """Compact: defaults left out, and the ids, which the key already says."""
    return pack(model.model_dump(mode="python", exclude_defaults=True, exclude=set(exclude)))


DIRECTIVE_IDS = frozenset({"directive_id"})
GROUP_IDS = frozenset({"key"})
TASK_IDS = frozenset({"directive_id", "target"})
# what a stored task leaves out (its defaults), put back when tasks are read as dicts
TASK_DEFAULTS = {name: f.default for name, f in Task.model_fields.items() if name not in TASK_IDS}


def dump_events(events: list[CaseEvent]) -> bytes:
    return pack([e.model_dump(mode="python", exclude_defaults=True,
                              exclude={"opened", "case_id"}) for e in events])


def partition_of(key: str, partitions: int) -> int:
    """The partition aiokafka's default partitioner gives a keyed message (Java-compatible)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass
class Marks:
    """Per partition: the offset of the last command folded in, and open cases by state.

    Derived figures carry their own watermark so a replayed command folds into them once:
    a command at or below ``through`` is already counted (engine/runtime/writer.py).
    """

    through: int = -1
    counts: dict[str, int] = field(default_factory=dict)
    timers: int = 0  # cases with an armed timer

    def dump(self) -> bytes:
        return orjson.dumps({"through": self.through, "counts": self.counts,
                             "timers": self.timers})

    @classmethod
    def load(cls, raw: bytes | None) -> Marks:
        if raw is None:
            return cls()
        d = orjson.loads(raw)
        return cls(through=d["through"], counts=dict(d["counts"]), timers=d.get("timers", 0))

    def copy(self) -> Marks:
        return Marks(self.through, dict(self.counts), self.timers)

    def moved(self, before: str | None, after: str) -> None:
        if before == after:
            return
        if before is not None:
            self.counts[before] = self.counts.get(before, 0) - 1
        self.counts[after] = self.counts.get(after, 0) + 1


class CaseStore:
    """Bytes by partition over faust's memory or RocksDB store (``table.data``)."""

    def __init__(self, table: Any, partitions: int) -> None:
        self.table = table
        self.partitions = partitions
        # memory:// only: the timer keys, sorted (RocksDB keeps its keys sorted itself);
        # built from the recovered dict on first use after an assignment
        self._memory_timers: list[bytes] | None = None
        # per partition, a key no live timer sorts below: the ticker's scan starts there.
        # A fired or disarmed timer leaves a RocksDB tombstone where it was; a scan from the
        # start of ``t:`` steps over every one of them until compaction, and a day of firings
        # made each tick cost milliseconds per partition (bench/timer_index.py). Raised to
        # the first live key each scan; lowered by every timer written below it.
        self._timer_floor: dict[int, bytes] = {}
        # memory:// only: the partition of each insight and precedent written (the key does
        # not say it, and the memory store is one dict for every partition)
        self._owners: dict[bytes, int] = {}

    def on_assignment(self) -> None:
        self._memory_timers = None
        self._timer_floor.clear()  # recovery wrote the store behind our back

    @property
    def _store(self) -> Any:
        return self.table.data

    @property
    def rocks(self) -> bool:
        return hasattr(self._store, "_db_for_partition")

    def changelog_tp(self, partition: int) -> TP:
        return TP(self.table.changelog_topic.get_topic_name(), partition)

    # ---- raw access ----

    def get(self, partition: int, key: bytes) -> bytes | None:
        store = self._store
        if self.rocks:
            return store._db_for_partition(partition).get(key)
        return store.data.get(key)

    def write(self, partition: int, items: Iterable[tuple[bytes, bytes | None]],
              changelog_offset: int | None) -> None:
        """Apply records already delivered to the changelog (None deletes), then remember
        how far we are."""
        store = self._store
        if self.rocks:
            floor = self._timer_floor.get(partition)
            import rocksdict

            batch = rocksdict.WriteBatch(raw_mode=True)
            for k, v in items:
                if v is None:
                    batch.delete(k)
                else:
                    batch.put(k, v)
                    if floor is not None and k < floor and k.startswith(TIMER_PREFIX):
                        self._timer_floor[partition] = floor = k
            store._db_for_partition(partition).write(batch)
            if changelog_offset is not None:
                store.set_persisted_offset(self.changelog_tp(partition), changelog_offset)
        else:
            timers = self._memory_timers
            for k, v in items:
                if k.startswith(UNKEYED):
                    self._owners[k] = partition
                if v is None:
                    if store.data.pop(k, None) is not None and timers is not None \
                            and k.startswith(TIMER_PREFIX):
                        i = bisect.bisect_left(timers, k)
                        if i < len(timers) and timers[i] == k:
                            del timers[i]
                else:
                    if k.startswith(TIMER_PREFIX):
                        if timers is not None and k not in store.data:
                            bisect.insort(timers, k)
                        # one dict holds every partition, scanned by the owner's partition
                        owner = self.partition(_timer_case(k))
                        low = self._timer_floor.get(owner)
                        if low is not None and k < low:
                            self._timer_floor[owner] = k
                    store.data[k] = v

    def due_timers(self, partition: int, now: datetime, limit: int,
                   skip: Container[bytes] = ()) -> tuple[list[tuple[bytes, str, Timer]],
                                                         datetime | None]:
        """Up to ``limit`` timers due at or before ``now`` and not in ``skip``, earliest
        first, as (key, case id, timer); and the instant of the earliest due one (skipped or
        not). Skipped keys (firings already sent) are passed over without counting: the
        earliest due keys are exactly the ones in flight, and counting them would starve
        every newer firing until they drain."""
        bound = timer_bound(now)
        start = self._timer_floor.get(partition, TIMER_PREFIX)
        out: list[tuple[bytes, str, Timer]] = []
        oldest: datetime | None = None
        if start >= bound:  # nothing live below the floor, so nothing due
            return out, oldest
        floor = bound  # nothing live below it but what the scan finds
        for k, raw in self._due_keys(partition, start, bound):
            if oldest is None:
                oldest = load_timer(raw()).at
                floor = k
            if k in skip:
                continue
            if len(out) >= limit:
                break
            out.append((k, _timer_case(k), load_timer(raw())))
        self._timer_floor[partition] = floor
        return out, oldest

    def _due_keys(self, partition: int, start: bytes, bound: bytes
                  ) -> Iterator[tuple[bytes, Callable[[], bytes]]]:
        """The live timer keys of the partition from ``start`` up to ``bound``."""
        if self.rocks:
            import rocksdict

            # the upper bound stops RocksDB too: without it, a seek past the last due key
            # still steps over every tombstone up to the next live key (the disarmed ones)
            opts = rocksdict.ReadOptions()
            opts.set_iterate_upper_bound(bound)
            it = self._store._db_for_partition(partition).iter(opts)
            it.seek(start)
            while it.valid():
                yield it.key(), it.value
                it.next()
            return
        data = self._store.data
        if self._memory_timers is None:
            self._memory_timers = sorted(k for k in data if k.startswith(TIMER_PREFIX))
        timers = self._memory_timers
        due = timers[bisect.bisect_left(timers, start):bisect.bisect_left(timers, bound)]
        for k in due:
            if self.partition(_timer_case(k)) == partition and k in data:
                yield k, (lambda k=k: data[k])

    # ---- typed access ----

    def state(self, case_id: str, partition: int | None = None) -> CaseState | None:
        return self._record(CaseState, state_key(case_id), case_id, partition)

    def file(self, case_id: str, partition: int | None = None) -> CaseFile | None:
        return self._record(CaseFile, file_key(case_id), case_id, partition)

    def _record(self, model: type[M], key: bytes, case_id: str, partition: int | None,
                id_field: str = "case_id") -> M | None:
        raw = self.get(self.partition(case_id) if partition is None else partition, key)
        return None if raw is None else model.model_validate({**unpack(raw), id_field: case_id})

    def directive(self, directive_id: str, partition: int | None = None
                  ) -> DirectiveState | None:
        return self._record(DirectiveState, directive_key(directive_id), directive_id,
                            partition, id_field="directive_id")

    def group(self, key: str, partition: int) -> GroupState | None:
        return self._record(GroupState, group_key(key), key, partition, id_field="key")

    def task(self, directive_id: str, target: str, partition: int | None = None
             ) -> Task | None:
        p = self.partition(directive_id) if partition is None else partition
        raw = self.get(p, task_key(directive_id, target))
        if raw is None:
            return None
        return Task.model_validate({**unpack(raw), "directive_id": directive_id,
                                    "target": target})

    def directives(self, partition: int) -> Iterator[DirectiveState]:
        """Every directive on ``partition`` (directives are few: a scan is fine)."""
        for k, raw in self._prefixed(partition, b"d:"):
            yield DirectiveState.model_validate({**unpack(raw),
                                                 "directive_id": k[2:].decode()})

    def tasks(self, directive_id: str) -> list[dict[str, Any]]:
        """Every task of a directive as stored (plain dicts, target filled in): one prefix
        read, no model per task (GET /directives/{id} reads 1,031 of them)."""
        p = self.partition(directive_id)
        prefix = task_prefix(directive_id)
        out = []
        for k, raw in self._prefixed(p, prefix):
            out.append({**TASK_DEFAULTS, **unpack(raw), "target": task_target(prefix, k)})
        return out

    def _prefixed(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        if self.rocks:
            it = self._store._db_for_partition(partition).iter()
            it.seek(prefix)
            while it.valid():
                k = it.key()
                if not k.startswith(prefix):
                    return
                yield k, it.value()
                it.next()
            return
        data = self._store.data
        for k in sorted(k for k in data if k.startswith(prefix)):
            yield k, data[k]

    def history(self, case_id: str, upto: int) -> list[CaseEvent]:
        """Every event up to ``upto``: one read per command, not per event."""
        p = self.partition(case_id)
        out: list[CaseEvent] = []
        seq = 1
        while seq <= upto:
            raw = self.get(p, event_key(case_id, seq))
            if raw is None:  # not expected: the writer writes every command's events
                seq += 1
                continue
            events = [CaseEvent.model_validate({**d, "case_id": case_id})
                      for d in unpack(raw)]
            out.extend(events)
            seq = events[-1].seq + 1 if events else seq + 1
        return out

    def insights(self, partition: int, kind: str | None = None) -> Iterator[dict[str, Any]]:
        """The insights kept on ``partition`` (``i:``) as published on ``zhida.insights``, a
        hotspot's counts current; with ``kind``, only that kind's (their ids start with it).
        One prefix read over every insight the partition has kept."""
        prefix = INSIGHT_PREFIX + (f"{kind}/".encode() if kind else b"")
        for _, raw in self._owned(partition, prefix):
            yield unpack(raw)

    def precedents(self, partition: int) -> Iterator[dict[str, Any]]:
        """The precedents kept on ``partition`` (``r:``, ``PrecedentRecord`` as JSON), revoked
        ones included."""
        for _, raw in self._owned(partition, PRECEDENT_PREFIX):
            yield unpack(raw)

    def _owned(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """``_prefixed`` for records whose key does not name their partition (``UNKEYED``).
        RocksDB keeps a store per partition; the memory store is one dict for every
        partition, so there a key belongs to the partition it was written on, or recovered
        on (faust's ``_key_partition``), and a key neither knows is nobody's."""
        if self.rocks:
            yield from self._prefixed(partition, prefix)
            return
        recovered = getattr(self._store, "_key_partition", {})
        for k, raw in self._prefixed(partition, prefix):
            if self._owners.get(k, recovered.get(k)) == partition:
                yield k, raw

    def figures(self, partition: int, key: bytes) -> dict[str, Any]:
        """A figures record: ``{"through": offset, "units": {unit: {counter: n}}}``."""
        raw = self.get(partition, key)
        return unpack(raw) if raw is not None else {"through": -1, "units": {}}

    def figures_days(self, partition: int, first: str, last: str
                     ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The day records of ``partition`` from ``first`` to ``last`` (inclusive)."""
        prefix = figures_day_prefix(partition)
        for k, raw in self._prefixed(partition, prefix):
            day = k[len(prefix):].decode()
            if first <= day <= last:
                yield day, unpack(raw)

    def marks(self, partition: int) -> Marks:
        return Marks.load(self.get(partition, marks_key(partition)))

    def partition(self, case_id: str) -> int:
        return partition_of(case_id, self.partitions)


def _timer_case(key: bytes) -> str:
    """The aggregate a timer key belongs to: a case id, or a task's directive id."""
    return timer_owner(key)[0]
