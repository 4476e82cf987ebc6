"""Which partitions' local state is ahead of the changelog, and where it goes (the worker's
restart against a new broker is tests/integration/test_stale_state.py)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import rocksdict
from faust.types import TP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.runtime import logs
from engine.runtime.kafka.recovery import discard_dir, move_partition_store, stale_partitions

A, B, C, D = (TP("zhida-cases-changelog", p) for p in range(4))


def test_only_a_local_offset_past_a_known_last_offset_is_stale() -> None:
    local = {A: 5, B: 3, C: None, D: 7}
    highwaters = {A: -1, B: 3, C: -1}  # D: no answer from the broker
    assert stale_partitions(local, highwaters) == {A: (5, -1)}
    assert stale_partitions({A: 0}, {A: -1}) == {A: (0, -1)}  # one record applied, none kept
    assert stale_partitions({A: -1}, {A: -1}) == {}


def test_each_discard_gets_its_own_folder(tmp_path: Path) -> None:
    now = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
    first, second = discard_dir(tmp_path, now), discard_dir(tmp_path, now)
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name.startswith("discarded-20261207T200000")


@settings(max_examples=300, deadline=None)
@given(st.datetimes(datetime(2020, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)))
@example(datetime(2026, 12, 8, 1, 33, 57, 681755, tzinfo=UTC))
def test_the_folder_name_is_logged_as_it_is(now: datetime) -> None:
    """No instant makes the folder's name look like a phone number to the log masking: with
    its microseconds, 01:33:57.681755 (13357681755) was logged masked, found by a clean-clone
    run at that time."""
    with tempfile.TemporaryDirectory() as d:
        where = discard_dir(Path(d), now)
        assert logs.mask_text(where.name) == where.name


class _Store:
    """The parts of faust's RocksDB store the move touches."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dbs: dict[int, rocksdict.Rdict] = {}
        self._key_index: dict[bytes, int] = {}

    def partition_path(self, partition: int) -> Path:
        return self.root / f"cases-{partition}.db"


def test_a_partition_store_is_closed_and_moved_whole(tmp_path: Path) -> None:
    store = _Store(tmp_path / "tables")
    store.root.mkdir()
    db = rocksdict.Rdict(str(store.partition_path(1)))
    db[b"s:c1"] = b"state"
    store._dbs[1] = db
    store._key_index = {b"s:c1": 1, b"s:c2": 2}
    where = discard_dir(tmp_path)
    moved = move_partition_store(store, 1, where)
    assert moved == where / "cases-1.db"
    assert not store.partition_path(1).exists() and 1 not in store._dbs
    assert store._key_index == {b"s:c2": 2}
    kept = rocksdict.Rdict(str(moved))
    assert kept[b"s:c1"] == b"state"
    kept.close()
    assert move_partition_store(store, 3, where) is None  # never opened, nothing on disk
