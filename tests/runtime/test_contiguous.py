"""The contiguous consumer's rule (engine/runtime/kafka/transport.py), and the faust sources it
replaces.

Hand on offset N only when N is the partition's next; drop what is below it or was fetched
before the last seek applied; a record past it seeks back, never skips, except the first
record fetched from the seek's offset (the log has nothing in between). The integration proof
is tests/integration/test_crash_workers.py (three workers killed in turn under load).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from types import SimpleNamespace

import aiokafka
import faust
import pytest

from engine.runtime.kafka.transport import ContiguousConsumer, _Rewind

TP = "tp"


def consumer(nxt: int | None = None, rewind: _Rewind | None = None, stamp: int = 0
             ) -> SimpleNamespace:
    return SimpleNamespace(_next={} if nxt is None else {TP: nxt},
                           _rewinds={} if rewind is None else {TP: rewind}, _stamp=stamp)


def decide(c: SimpleNamespace, offset: int) -> str:
    return ContiguousConsumer._decide(c, TP, offset)  # type: ignore[arg-type]


def test_nothing_is_handed_on_before_the_position_is_known() -> None:
    assert decide(consumer(), 5) == "drop"


def test_in_order_only() -> None:
    assert decide(consumer(10), 9) == "drop"  # handed on already
    assert decide(consumer(10), 10) == "hand"
    assert decide(consumer(10), 12) == "rewind"  # a hole: seek back, never skip


def test_a_seek_in_flight_or_a_batch_from_before_it_is_dropped() -> None:
    r = _Rewind(10)
    assert decide(consumer(10, r, stamp=3), 12) == "drop"  # seek not applied yet
    r.stamp = 4
    assert decide(consumer(10, r, stamp=3), 12) == "drop"  # drained before the seek


def test_only_the_first_record_after_a_clean_seek_may_jump() -> None:
    r = _Rewind(10)
    r.stamp = 4
    assert decide(consumer(10, r, stamp=4), 10) == "hand"
    assert decide(consumer(10, r, stamp=4), 12) == "jump"  # 10, 11 are not in the log
    r.clean = False  # a record was consumed and not handed on since the seek
    assert decide(consumer(10, r, stamp=4), 12) == "rewind"


# The engine replaces these faust functions (engine/runtime/kafka/transport.py,
# engine/runtime/kafka/recovery.py) with
# versions that follow their code; a new faust must be read again before it is used.
PINNED = {
    "faust.transport.consumer:Consumer._drain_messages": "44a2500309e83c63",
    "faust.transport.consumer:Consumer.getmany": "4b168d84882a70d6",
    "faust.transport.consumer:Consumer.perform_seek": "0e8c130ff4b0afd8",
    "faust.transport.consumer:Consumer.seek": "b86a9fe05f956b30",
    "faust.transport.consumer:Consumer.on_partitions_revoked": "d04b7ae72c6fc206",
    "faust.transport.consumer:Consumer.on_partitions_assigned": "29ce96596f05a18c",
    "faust.tables.recovery:Recovery.on_recovery_completed": "6ef567acf072e46d",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.getmany": "26fc5fc9f3b667e1",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._fetch_records":
        "39a2c6c79fc1455a",
}


def test_the_pinned_versions() -> None:
    assert faust.__version__ == "0.15.3"
    assert aiokafka.__version__ == "0.14.0"


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_replaced_faust_code_is_what_it_was(name: str) -> None:
    module, qualname = name.split(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    digest = hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]
    assert digest == PINNED[name], (f"{name} changed: read it against "
                                   "engine/runtime/kafka/transport.py")
