"""The ticker's scan of the timer index over RocksDB tombstones, with the scan floor and without.

    python -m bench.timer_index [--fired 10000,100000,1000000] [--future 1000000] [--calls 200]

Why: a fired or disarmed timer is a delete, and RocksDB keeps a tombstone where the key was
until compaction drops it. ``CaseStore.due_timers`` (engine/runtime/store.py), which the ticker
calls
every 100 ms for every partition it owns (engine/runtime/timers.py), used to seek to the start of
``t:`` and step over every one of those tombstones before reaching the first live key; it now
starts at a per-partition floor (``_timer_floor``): the first live key the last scan found,
lowered by any timer written below it. This measures what one call costs either way.

No broker, no worker: one partition, a ``CaseStore`` over a fake faust table whose store is
one RocksDB opened exactly as the engine's worker opens its table's (faust-streaming's
``RocksDBOptions`` with ``use_rocksdict`` and the engine's options, engine/runtime/app.py
``_rocksdb_options`` at the default settings), in a fresh temp dir per row. For each K: first
``--future`` timers due a day after the clock (armed, never due during the run), then K timers
due over the hour before it, both written with ``rocksdict.WriteBatch`` in chunks of 10,000;
then the K are fired as the engine fires them: ``due_timers(limit=1000)`` (``MAX_IN_FLIGHT``)
and the writer's delete of each returned key through ``CaseStore.write``, until none is due.
Then, each call a simulated tick 100 ms after the last: (a) ``--calls`` ``due_timers`` calls
with the floor as the previous call left it (the ticker's steady state), then (b) ``--calls``
calls each after ``store.on_assignment()``, which clears the floor, so the scan starts at
``t:`` as before the floor existed. Not interleaved: a no-floor scan reads every block the
tombstones sit in and evicts from the 32 MiB block cache what the next floor call needs,
which the ticker never does (tried: at K = 100,000 the floor's median went from ~15 µs to
~105 µs). Nothing is written during the calls and nothing is compacted by hand; the LSM's
shape when the calls start (RocksDB properties) is in the table. Nothing is due in any timed
call (all return no timers): what is timed is the seek and the tombstones it steps over. One
call timed alone with ``time.perf_counter``; one thread (RocksDB's own background threads
aside).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from bench.harness import ROOT, generated, machine, page_text, progress, write_page
from engine.core.sla import Timer
from engine.runtime.faust_app import rocksdb_options as _rocksdb_options
from engine.runtime.settings import Settings
from engine.runtime.store import CaseStore, dump_timer, timer_key
from engine.runtime.timers import MAX_IN_FLIGHT, TICK_S

OUT = ROOT / "docs" / "benchmarks-timers-index.md"
PARTITION = 0
CHUNK = 10_000
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class OnePartition:
    """faust's RocksDB store as ``CaseStore`` sees it: a DB per partition (one here) and
    persisted offsets (not needed: every write passes ``changelog_offset=None``)."""

    def __init__(self, path: Path) -> None:
        options = RocksDBOptions(use_rocksdict=True, **_rocksdb_options(Settings()))
        self.db: rocksdict.Rdict = options.open(path)

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        return self.db

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        pass


class Table:
    def __init__(self, data: OnePartition) -> None:
        self.data = data


@dataclass
class Row:
    fired: int
    future: int
    setup_s: float
    fire_s: float
    floor_us: list[float]
    bare_us: list[float]
    lsm: str


def _timers(n: int, first: datetime, step: timedelta, prefix: str
            ) -> Iterator[tuple[bytes, bytes]]:
    for i in range(n):
        at = first + step * i
        yield timer_key(f"{prefix}-{i}", at), dump_timer(Timer("due", "resolve", at))


def _put(db: rocksdict.Rdict, records: Iterator[tuple[bytes, bytes]]) -> None:
    batch = rocksdict.WriteBatch(raw_mode=True)
    for k, v in records:
        batch.put(k, v)
        if len(batch) >= CHUNK:
            db.write(batch)
            batch = rocksdict.WriteBatch(raw_mode=True)
    if len(batch):
        db.write(batch)


def _lsm(db: rocksdict.Rdict) -> str:
    """Where the records are: files per level, and the memtable's deletes."""
    def prop(name: str) -> int:
        return int(db.property_value(f"rocksdb.{name}") or 0)

    levels = [prop(f"num-files-at-level{n}") for n in range(7)]
    files = ", ".join(f"L{n} {c}" for n, c in enumerate(levels) if c)
    return (f"{files or 'no files'}; memtable {prop('num-entries-active-mem-table'):,} "
            f"entries, {prop('num-deletes-active-mem-table'):,} deletes")


def _timed(store: CaseStore, now: datetime) -> float:
    t = time.perf_counter()
    out, oldest = store.due_timers(PARTITION, now, limit=MAX_IN_FLIGHT)
    took = time.perf_counter() - t
    assert not out and oldest is None, "a timed call found something due"
    return took * 1e6


def measure(fired: int, future: int, calls: int) -> Row:
    tmp = Path(tempfile.mkdtemp(prefix="zhida-timer-index-"))
    data = OnePartition(tmp / "p0")
    store = CaseStore(Table(data), partitions=1)
    try:
        t = time.perf_counter()
        _put(data.db, _timers(future, NOW + timedelta(days=1), timedelta(milliseconds=50),
                              "future"))
        _put(data.db, _timers(fired, NOW - timedelta(hours=1),
                              timedelta(hours=1) / max(fired, 1), "fired"))
        setup = time.perf_counter() - t
        t = time.perf_counter()
        n = 0
        while True:
            due, _ = store.due_timers(PARTITION, NOW, limit=MAX_IN_FLIGHT)
            if not due:
                break
            store.write(PARTITION, [(k, None) for k, _, _ in due], None)
            n += len(due)
        fire = time.perf_counter() - t
        assert n == fired, (n, fired)
        lsm = _lsm(data.db)
        ticks = (NOW + timedelta(seconds=TICK_S * (i + 1)) for i in range(2 * calls))
        floor_us = [_timed(store, next(ticks)) for _ in range(calls)]
        bare_us = []
        for _ in range(calls):
            store.on_assignment()
            bare_us.append(_timed(store, next(ticks)))
        return Row(fired, future, setup, fire, floor_us, bare_us, lsm)
    finally:
        data.db.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _q(us: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(sorted(us), n=100, method="inclusive")
    return statistics.median(us), q[98]


def _us(v: float) -> str:
    return f"{v:,.0f} µs" if v >= 100 else f"{v:.1f} µs"


def write(rows: list[Row], command: str, took: float) -> None:
    m = {**machine(), "rocksdict": metadata.version("rocksdict")}
    write_page(OUT, render({"date": datetime.now(UTC), "machine": m, "rows": rows,
                            "command": command, "took": took}))


def render(data: dict[str, Any]) -> str:
    """The page from the figures alone (no I/O), so a test can render it from a sample."""
    rows, command, took, m = data["rows"], data["command"], data["took"], data["machine"]
    table = [
        "| armed then fired (K) | armed, not due | floor as built: median | p99 | "
        "no floor: median | p99 | median no floor / floor | share of a 100 ms tick, no floor "
        "(median) | LSM when the calls start |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        fm, fp = _q(r.floor_us)
        bm, bp = _q(r.bare_us)
        table.append(
            f"| {r.fired:,} | {r.future:,} | **{_us(fm)}** | {_us(fp)} | **{_us(bm)}** | "
            f"{_us(bp)} | {bm / fm:,.0f}× | {bm / (TICK_S * 1e6):.2%} | {r.lsm} |")
    setup = "; ".join(f"K = {r.fired:,}: writing {r.future + r.fired:,} timers "
                      f"{r.setup_s:.1f} s, firing K {r.fire_s:.1f} s" for r in rows)
    calls = len(rows[0].floor_us) if rows else 0
    lines = [
        "# SLA timers: the index scan over tombstones, with the floor and without",
        "",
        *generated("bench.timer_index"),
        "",
        f"Measured {data['date']:%Y-%m-%d %H:%M} UTC (run took {took:.0f} s) with",
        "",
        "```",
        command,
        "```",
        "",
        "| | |",
        "|---|---|",
        f"| cores (`os.cpu_count()`) | {m['cores']} ({m['cpu']}) |",
        f"| OS | {m['os']} |",
        f"| Python | {m['python']} |",
        f"| rocksdict | {m['rocksdict']} |",
        f"| faust-streaming | {m['faust']} |",
        f"| engine commit | `{m['commit']}` (working tree at the time of the run) |",
        "",
        f"One `CaseStore.due_timers` call on one partition, {calls} calls of each kind "
        "(first all with the floor, then all without), none finding anything due:",
        "",
        *table,
        "",
        f"Set-up, not timed: {setup}.",
        "",
        "The ticker makes one such call per owned partition per tick (every "
        f"{TICK_S * 1000:.0f} ms), on the event loop the writer shares. \"No floor\" starts "
        "where every scan started before the floor (at `t:`; that code, not measured here, "
        "had no iterate upper bound and stopped at the first live key past the bound), and "
        "is what the first call after each rebalance still costs (`on_assignment()` clears "
        "the floor).",
        "",
    ]
    return page_text(lines, __doc__)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.timer_index", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fired", default="10000,100000,1000000",
                   help="comma-separated K: timers armed, then fired, before the calls")
    p.add_argument("--future", type=int, default=1_000_000,
                   help="timers armed a day ahead (never due during the run)")
    p.add_argument("--calls", type=int, default=200, help="timed calls of each kind per K")
    args = p.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m bench.timer_index", *argv])
    started = time.perf_counter()
    rows = []
    for k in (int(x) for x in args.fired.split(",")):
        progress(f"K = {k:,}: arming {args.future:,} + {k:,}, firing {k:,}, "
                 f"{args.calls} calls each")
        r = measure(k, args.future, args.calls)
        fm, bm = statistics.median(r.floor_us), statistics.median(r.bare_us)
        progress(f"K = {k:,}: floor {fm:.1f} µs, no floor {bm:.1f} µs (median)")
        rows.append(r)
    write(rows, command, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
