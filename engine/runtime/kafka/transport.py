"""faust's aiokafka transport with a shorter fetch wait.

faust 0.15.3 hard-codes ``fetch_max_wait_ms=1500`` for the worker consumer. Against the
embedded broker a multi-partition fetch then waits out most of that before answering, which
put 0.6–1.4 s on every hop of the engine (measured: intake→dispatch 1.3 s median at low
rate). The contract wants a complaint dispatched within a second, so the wait is configurable
(``ZHIDA_FETCH_MAX_WAIT_MS``, default 50 ms; with 10 ms both hops took ~20 ms).
Used through the broker URL scheme ``zhida://``.

It also corrects end offsets. Tansu 0.6.0 answers ListOffsets(latest) with the base offset of
the partition's last record batch + 1, not the offset after its last record, whenever that
batch holds several records (measured: 50 records sent as one batch moved the end by 1).
faust's table recovery reads the changelog only up to that end, so a restarted worker lost
the cases written in the tail of a batch (3 of 20,000 in the benchmark). The corrected end is
taken from a fetch response's high watermark (``true_end_offsets``).

And it hands each stream partition's records to the agents in offset order with none passed
over, whatever the rebalances (``ContiguousConsumer``). faust 0.15.3 lost inputs with several
workers under kill -9 (NOTES.md "Several workers under kill -9": 443 complaints never
dispatched, resolves forwarded before their acks): its drain loop hands on whatever is above a
per-partition "read offset" that several tasks overwrite, records leave aiokafka and are
dropped in several places during a rebalance, and the seek to the committed offsets runs
while records already flow. Here one number per partition says which offset goes next.
This module and engine/runtime/kafka/recovery.py hold every faust internal the engine relies on;
both are
tied to the pinned faust-streaming 0.15.3 (tests/runtime/test_contiguous.py checks the sources
they replace have not changed).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiokafka
from aiokafka import TopicPartition
from faust.transport import drivers
from faust.transport.consumer import CONSUMER_FETCHING, ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka

from engine.runtime import logs
from engine.runtime.kafka.offsets import fetched_ends

# authentication for the engine's own aiokafka clients (the end-offset probe, the bulk
# restore): set from the settings when the engine is built (engine/runtime/app.py)
CLIENT_KWARGS: dict[str, Any] = {}

log = logs.get("zhida.transport")

SCHEME = "zhida"


# the consumer fetch wait, set from the settings when the engine is built (engine/runtime/app.py)
FETCH_MAX_WAIT_MS = 50


def fetch_max_wait_ms() -> int:
    return FETCH_MAX_WAIT_MS


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms()
        return consumer

    async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
        reported = await super()._highwaters(partitions)
        bootstrap = faust_aiokafka.server_list(self.transport.url, self.transport.default_port)
        return await true_end_offsets(bootstrap, reported)


async def true_end_offsets(bootstrap: Any, reported: Mapping[Any, int],
                           deadline_s: float = 30.0) -> dict[Any, int]:
    """Each partition's end, by a probe consumer of its own (``fetched_ends``)."""
    if not reported:
        return dict(reported)
    probe = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      fetch_max_wait_ms=50, auto_offset_reset="none",
                                      **CLIENT_KWARGS)
    await probe.start()
    try:
        tps = {tp: TopicPartition(tp.topic, tp.partition) for tp in reported}
        probe.assign(list(tps.values()))
        ends = await fetched_ends(probe, {tps[k]: n for k, n in reported.items()}, deadline_s)
    finally:
        await probe.stop()
    if len(ends) < len(reported):  # the deadline passed: keep what was reported
        log.warning("end_offsets_unconfirmed", after_s=deadline_s,
                    partitions=sorted(str(k) for k in reported if tps[k] not in ends))
    return {k: ends.get(tps[k], n) for k, n in reported.items()}


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


# ---------------------------------------------------------------- contiguous delivery

class _Stamped:
    """A batch of fetched records and the number of stream seeks the consumer thread had
    applied when the batch was drained from aiokafka."""

    __slots__ = ("records", "stamp")

    def __init__(self, records: Any, stamp: int) -> None:
        self.records = records
        self.stamp = stamp


class _Rewind:
    """A seek of one stream partition to ``offset``: ``stamp`` is the thread's seek count
    once applied (None while in flight); ``clean`` until a record of the partition past
    ``offset`` was consumed from aiokafka without being handed on."""

    __slots__ = ("clean", "offset", "stamp")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.stamp: int | None = None
        self.clean = True


class ContiguousConsumerThread(ConsumerThread):
    _seeks = 0  # stream seeks applied, counted in the consumer thread

    def _seek_counted(self, tp: Any, offset: int) -> int:
        self._ensure_consumer().seek(tp, offset)  # in the consumer thread, never another
        self._seeks += 1
        return self._seeks

    async def seek_counted(self, tp: Any, offset: int) -> int:
        return await self.call_thread(self._seek_counted, tp, offset)

    async def getmany(self, active_partitions: Any, timeout: float) -> Any:
        consumer = self._ensure_consumer()
        return await self.call_thread(self._fetch_stamped, consumer, active_partitions,
                                      timeout=timeout, max_records=consumer._max_poll_records)

    async def _fetch_stamped(self, consumer: Any, active_partitions: Any,
                             timeout: float | None = None, max_records: int | None = None
                             ) -> _Stamped:
        records = await self._fetch_records(consumer, active_partitions, timeout=timeout,
                                            max_records=max_records)
        # no suspension point between aiokafka draining its buffer and this read
        return _Stamped(records, self._seeks)


class ContiguousConsumer(Consumer):
    """faust's consumer, handing each stream partition's records on in offset order with
    none passed over, whatever the rebalances.

    faust 0.15.3 decides what to hand on with a per-partition "read offset" that the drain
    loop writes after every record and that seeks write too, while records are consumed
    from aiokafka and then discarded in several places (a batch cut short by a rebalance,
    a partition paused during recovery, queues cleared on resume) and the seek to the
    committed offsets runs while the drain loop is already handing records on. Here one
    number per stream partition, ``_next``, says which offset may be handed on next; it
    moves only by handing that record on, or by a seek that moves aiokafka there too.
    Unknown (after every assignment, until ``perform_seek``): nothing is handed on.
    A record past ``_next`` means records were consumed and not handed on: the partition
    is sought back to ``_next``; only the first record fetched from ``_next`` after that
    seek may be past it (the log has nothing in between: transaction markers, compaction,
    retention), and then the offsets in between are added to faust's gaps so that commits
    pass them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next: dict[Any, int] = {}
        self._rewinds: dict[Any, _Rewind] = {}
        self._epoch = 0  # moved by every revocation and assignment
        self._stamp = 0  # of the batch being drained
        self.counters: Counter[str] = Counter()

    def _new_consumer_thread(self) -> ContiguousConsumerThread:
        return ContiguousConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _is_stream_tp(self, tp: Any) -> bool:
        return not self._is_changelog_tp(tp)

    # ---- rebalances and seeks ----

    def _forget(self) -> None:
        self._epoch += 1
        self._next.clear()
        self._rewinds.clear()

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        self._forget()
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
        self._forget()
        await super().on_partitions_assigned(assigned, generation_id)

    async def _rewind(self, tp: Any, offset: int, epoch: int | None = None) -> None:
        """Seek ``tp`` to ``offset`` and hand on from there."""
        epoch = self._epoch if epoch is None else epoch
        if epoch != self._epoch:
            return
        self._next[tp] = offset
        rewind = self._rewinds[tp] = _Rewind(offset)
        try:
            stamp = await self._thread.seek_counted(tp, offset)
        except Exception as e:  # revoked meanwhile (IllegalStateError): the rebalance decides
            log.info("rewind_failed", topic=tp.topic, partition=tp.partition, offset=offset,
                     error=repr(e))
            if self._rewinds.get(tp) is rewind:
                del self._rewinds[tp]  # the next record past ``_next`` seeks again
            return
        if self._rewinds.get(tp) is rewind:
            rewind.stamp = stamp

    async def seek(self, partition: Any, offset: int) -> None:
        tp = ensure_TP(partition)
        if not self._is_stream_tp(tp):
            await super().seek(partition, offset)
            return
        await self._rewind(tp, offset)
        self._read_offset[tp] = offset if offset else None

    async def perform_seek(self) -> None:
        """Every stream partition from its committed offset (its beginning when none)."""
        epoch = self._epoch
        committed = await self.seek_to_committed()
        starts = {tp: off for tp, off in committed.items()
                  if self._is_stream_tp(tp) and off is not None and off > 0}
        fresh = [tp for tp in committed if self._is_stream_tp(tp) and tp not in starts]
        if fresh:
            if self.app.conf.consumer_auto_offset_reset == "latest":
                ends = await self.highwaters(*fresh)
            else:
                ends = await self.earliest_offsets(*fresh)
            starts.update({tp: max(ends.get(tp) or 0, 0) for tp in fresh})
        if epoch != self._epoch:
            return  # another rebalance: its own perform_seek decides
        self._read_offset.update({tp: off if off is not None and off >= 0 else None
                                  for tp, off in committed.items()})
        self._committed_offset.update({ensure_TP(tp): off if off else None
                                       for tp, off in committed.items() if off is not None})
        for tp, start in starts.items():
            await self._rewind(tp, start, epoch)
        log.info("stream_positions", starts={f"{tp.topic}/{tp.partition}": o
                                             for tp, o in sorted(starts.items())})

    # ---- fetching ----

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        got = await self._thread.getmany(active_partitions, timeout)
        if isinstance(got, _Stamped):
            self._stamp = got.stamp
            return got.records
        return got

    def _consumed_unhanded(self, tp: Any) -> None:
        """A record of ``tp`` left aiokafka and will not be handed on."""
        rewind = self._rewinds.get(tp)
        if rewind is not None and rewind.stamp is not None and self._stamp >= rewind.stamp:
            rewind.clean = False

    async def getmany(self, timeout: float) -> Any:
        """faust's, except that records it does not hand on are noted, not lost silently,
        and a batch fetched while the flow is stopped is dropped without a seek (every
        assignment ends with ``perform_seek``)."""
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        pending = {tp for tp in records}
        if not self.flow_active:
            for tp in pending:
                self._consumed_unhanded(tp)
            return
        to_message = self._to_message
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                for tp2 in pending:
                    self._consumed_unhanded(tp2)
                break
            if (active_partitions is None or tp in active_partitions
                    or tp in self._buffered_partitions):
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)
            else:
                self._consumed_unhanded(tp)

    def _decide(self, tp: Any, offset: int) -> str:
        """'hand' the record on, 'drop' it, 'rewind' the partition, or 'jump' over offsets
        the log does not have."""
        nxt = self._next.get(tp)
        if nxt is None or offset < nxt:
            return "drop"
        if offset == nxt:
            return "hand"
        rewind = self._rewinds.get(tp)
        if rewind is not None and rewind.offset == nxt:
            if rewind.stamp is None or self._stamp < rewind.stamp:
                return "drop"  # fetched before the seek: aiokafka is past it already
            if rewind.clean:
                return "jump"  # the first record fetched from ``nxt`` after the seek
        return "rewind"

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        counters = self.counters
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    epoch = self._epoch
                    if self._is_stream_tp(tp):
                        action = self._decide(tp, offset)
                        if action == "drop":
                            counters["dropped"] += 1
                            continue
                        if action == "rewind":
                            counters["rewinds"] += 1
                            log.warning("stream_rewind", topic=tp.topic, partition=tp.partition,
                                        expected=self._next[tp], offset=offset)
                            await self._rewind(tp, self._next[tp])
                            continue
                        if action == "jump":
                            nxt = self._next[tp]
                            counters["jumps"] += 1
                            log.warning("stream_offsets_absent", topic=tp.topic,
                                        partition=tp.partition, expected=nxt, offset=offset)
                            if acks_enabled_for(message.topic):
                                await self._add_gap(tp, nxt, offset - 1)
                        self._next[tp] = offset + 1
                        self._rewinds.pop(tp, None)
                    else:  # a changelog partition: faust's own rule
                        r_offset = get_read_offset(tp)
                        if r_offset is not None and offset < r_offset:
                            continue
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    set_read_offset(tp, offset)
                    handing = callback(message)
                    done = await self.wait_first(handing, self.suspend_flow.wait())
                    if (handing not in done.done and self._is_stream_tp(tp)
                            and self._epoch == epoch and self._next.get(tp) == offset + 1):
                        self._next[tp] = offset  # not handed on: a rebalance is starting
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class Transport(faust_aiokafka.Transport):
    Consumer = ContiguousConsumer


def register() -> None:
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
