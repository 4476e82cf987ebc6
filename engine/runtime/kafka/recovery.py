"""Fast restore of a table partition whose local state is far behind its changelog.

faust replays a changelog record by record through its stream machinery, about 110 µs each
here (measured: 405k records in 44 s), so a worker that lost its data dir would need ~7 minutes
for a million open cases (4 records each). Reading the partition with a plain aiokafka
consumer in large fetches straight into RocksDB write batches skips that path. faust's own
recovery then reads only the tail, exactly as when local state is kept.

Hooked where faust allows: the ``TableManager`` app setting names our manager, whose
``Recovery`` bulk-loads in ``_build_offsets``, after the highwaters are known and before faust
seeks and reads. The load stops at ``BULK_BUDGET_S`` (faust bounds that step by its request
timeout) and leaves any remainder to faust.

The same hook handles local state that is *ahead* of its changelog (CONTRACT.md "Restarts
against a new or emptied broker"): the embedded broker forgets everything when it stops, and
on real Kafka topics can be deleted and recreated. faust would raise ``ConsistencyError``
("persisted offset is higher than the highwater") and stop the worker at every start in that
folder. The changelog is the truth, as in Kafka Streams (TaskCorruptedException wipes the
task's store): the partition's store is moved aside, never deleted, and rebuilt.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiokafka
from aiokafka import TopicPartition
from faust.tables import TableManager as _TableManager
from faust.tables.recovery import Recovery as _Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from engine.runtime import logs
from engine.runtime.kafka import transport

log = logs.get("zhida.recovery")

BULK_BUDGET_S = 60.0
FETCH_BYTES = 32 * 1024 * 1024


# records behind before a partition is bulk-loaded (below it faust's path is fine): set from
# the settings when the engine is built (engine/runtime/app.py)
BULK_MIN = 20_000


def bulk_min() -> int:
    return BULK_MIN


class Recovery(_Recovery):
    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """faust 0.15.3's (tables/recovery.py ``on_recovery_completed``), except that the
        streams' queues are cleared (``flow_control.resume`` clears them) before the stream
        partitions are resumed and sought to their committed offsets, never after: a record
        handed on after the seek and then cleared from its queue would be passed over."""
        consumer = self.app.consumer
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [asyncio.ensure_future(table.on_recovery_completed(
            self.actives_for_table[table], self.standbys_for_table[table]))
            for table in self.tables.values()]
        if callbacks:
            await asyncio.wait(callbacks)
        assignment = consumer.assignment()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning(f"Recovery rebalancing again app id "
                             f"{self.app.consumer_generation_id} param {generation_id}")
            return
        self.app.flow_control.resume()  # clears every stream queue: before the seek
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(),
                             timeout=self.app.conf.broker_request_timeout)
        self.completed.set()
        consumer.resume_flow()
        await self.app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _build_offsets(self, consumer: Any, tps: set[TP], destination: Counter[TP],
                             title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title == "standby":
            await self._discard_stale_standbys(consumer, tps, destination)
            return
        if title != "active":
            return
        stale = stale_partitions(destination, self.active_highwaters)
        if stale:
            self._discard(stale, destination)
        deadline = time.monotonic() + BULK_BUDGET_S
        for tp in sorted(tps):
            highwater = self.active_highwaters.get(tp)
            start = destination[tp] + 1 if destination[tp] is not None else 0
            if highwater is None or highwater - start < bulk_min():
                continue
            table = self.tp_to_table.get(tp)
            if table is None:
                continue
            last = await self._bulk_load(table, tp, start, highwater, deadline)
            if last is not None:
                destination[tp] = last

    async def _discard_stale_standbys(self, consumer: Any, tps: set[TP],
                                      destination: Counter[TP]) -> None:
        """A standby's store can be ahead of its changelog as well (the same emptied broker
        under a kept data dir), and faust checks standbys with the same ``ConsistencyError``
        that stops the worker. Standbys are not bulk-loaded: faust reads them after the
        actives are ready, so a large one costs CPU in the background, never readiness."""
        if not tps:
            return
        highwaters: Counter[TP] = Counter()
        await self._build_highwaters(consumer, tps, highwaters, "standby")
        stale = stale_partitions({tp: destination[tp] for tp in tps}, highwaters)
        if stale:
            self._discard(stale, destination, "stale_standby_discarded")

    def _discard(self, stale: dict[TP, tuple[int, int]], destination: Counter[TP],
                 event: str = "stale_state_discarded") -> None:
        """Move the stale partitions' stores aside and read their changelogs from the start.
        Standbys log under their own ``event``: the log's rate limit (engine/runtime/logfilter.py)
        passes one line per event in 10 s, and the actives' line comes just before."""
        moved: list[str] = []
        where: Path | None = None
        for tp in sorted(stale):
            table = self.tp_to_table.get(tp)
            store = getattr(table, "data", None)
            if store is not None and hasattr(store, "partition_path"):
                where = where or discard_dir(Path(self.app.conf.datadir))
                path = move_partition_store(store, tp.partition, where)
                if path is not None:
                    moved.append(str(path))
            destination[tp] = -1  # faust's "nothing read yet": seek to the start
        log.warning(event,
                    partitions=[{"topic": tp.topic, "partition": tp.partition,
                                 "local_offset": local, "changelog_last_offset": high}
                                for tp, (local, high) in sorted(stale.items())],
                    moved_to=str(where) if where else None, stores=moved)

    async def _bulk_load(self, table: Any, tp: TP, start: int, end: int, deadline: float
                         ) -> int | None:
        """Read [start, end) into the table's store; the last offset applied, or None."""
        store = table.data
        bootstrap = faust_aiokafka.server_list(self.app.transport.url,
                                               self.app.transport.default_port)
        reader = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50,
            fetch_max_bytes=FETCH_BYTES, max_partition_fetch_bytes=FETCH_BYTES,
            max_poll_records=100_000, **transport.CLIENT_KWARGS)
        started = time.monotonic()
        last: int | None = None
        n = 0
        await reader.start()
        try:
            ktp = TopicPartition(tp.topic, tp.partition)
            reader.assign([ktp])
            reader.seek(ktp, start)
            while (last is None or last < end - 1) and time.monotonic() < deadline:
                batch = await reader.getmany(ktp, timeout_ms=1000)
                records = batch.get(ktp) or []
                if not records:
                    if last is not None and last >= end - 1:
                        break
                    continue
                _apply(store, tp.partition, [(r.key, r.value) for r in records])
                last = records[-1].offset
                n += len(records)
                if hasattr(store, "set_persisted_offset"):
                    store.set_persisted_offset(tp, last)
        finally:
            await reader.stop()
        took = time.monotonic() - started
        log.info("bulk_restore", topic=tp.topic, partition=tp.partition, records=n,
                 seconds=round(took, 1), per_second=round(n / took) if took else None,
                 complete=last is not None and last >= end - 1)
        return last


def stale_partitions(local: Mapping[TP, int | None], highwaters: Mapping[TP, int | None]
                     ) -> dict[TP, tuple[int, int]]:
    """Partitions whose local store has applied an offset the changelog does not have.

    faust's offsets are "last applied" and its highwaters "last offset" (end - 1), so -1 on
    both sides means empty. Only a known highwater counts: never discard on a missing answer.
    """
    out: dict[TP, tuple[int, int]] = {}
    for tp, offset in local.items():
        high = highwaters.get(tp)
        if offset is not None and high is not None and offset > high:
            out[tp] = (offset, high)
    return out


def discard_dir(data_dir: Path, now: datetime | None = None) -> Path:
    """``<data dir>/discarded-<UTC time>/``, new for each discard (a suffix if it exists).

    To the second, no run of 7+ digits after the date: the logs mask such runs as phone
    numbers (``T013357681755Z`` with its microseconds was logged as ``T0*******1755Z``)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    path = data_dir / f"discarded-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = data_dir / f"discarded-{stamp}-{n}"
    path.mkdir(parents=True)
    return path


def move_partition_store(store: Any, partition: int, where: Path) -> Path | None:
    """Close a RocksDB partition store and move its directory under ``where``; faust opens
    a new empty one at the old path on the next access. None when it had no directory."""
    db = store._dbs.pop(partition, None)
    if db is not None:
        db.close()
    for key in [k for k, p in store._key_index.items() if p == partition]:
        store._key_index.pop(key, None)
    path = Path(store.partition_path(partition))
    if not path.exists():
        return None
    target = where / path.name
    path.rename(target)
    return target


def _apply(store: Any, partition: int, items: list[tuple[bytes | None, bytes | None]]) -> None:
    if hasattr(store, "_db_for_partition"):
        import rocksdict

        wb = rocksdict.WriteBatch(raw_mode=True)
        for k, v in items:
            if k is None:
                continue
            if v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
        store._db_for_partition(partition).write(wb)
        return
    data = store.data  # memory store: keys and values are raw bytes (engine/runtime/app.py)
    for k, v in items:
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v


class TableManager(_TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery  # type: ignore[return-value]
