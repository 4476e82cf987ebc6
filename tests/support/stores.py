"""The case store without faust, on both stores faust may give the writer: a memory store
(one dict for all partitions) and one raw-mode RocksDB (rocksdict) per partition, opened as
faust-streaming's rocksdict driver opens them. Shared by tests/runtime/test_timer_index.py
and tests/runtime/test_storekeys.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rocksdict

from engine.runtime.store import CaseStore

BACKENDS = ["memory", "rocksdb"]
PARTITIONS = 3


class MemoryData:
    """faust's memory store as the writer sees it: ``.data`` is one dict for every partition
    (no ``_db_for_partition``, so ``CaseStore.rocks`` is False)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def close(self) -> None:
        pass


class RocksData:
    """faust's RocksDB store as the writer sees it: one raw-mode Rdict per partition."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbs: dict[int, rocksdict.Rdict] = {}

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        db = self.dbs.get(partition)
        if db is None:
            # as faust/stores/rocksdb.py (RocksDBOptions.open, use_rocksdict) opens them
            options = rocksdict.Options(raw_mode=True)
            options.create_if_missing(True)
            db = rocksdict.Rdict(str(self.root / f"p{partition}"), options=options,
                                 access_type=rocksdict.AccessType.read_write())
            db.set_read_options(rocksdict.ReadOptions())
            self.dbs[partition] = db
        return db

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        pass

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()
        self.dbs.clear()


class FakeTable:
    """A faust table as ``CaseStore`` uses it: only its ``.data``."""

    def __init__(self, data: MemoryData | RocksData) -> None:
        self.data = data


def make_store(backend: str, root: Path, partitions: int = PARTITIONS) -> CaseStore:
    """A ``CaseStore`` on a ``backend`` of ``BACKENDS`` (RocksDB files under ``root``)."""
    data = MemoryData() if backend == "memory" else RocksData(root)
    store = CaseStore(FakeTable(data), partitions=partitions)
    assert store.rocks == (backend == "rocksdb")
    return store


def close_store(store: CaseStore) -> None:
    store.table.data.close()
