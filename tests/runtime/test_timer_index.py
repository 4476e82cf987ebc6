"""The timer index's scan floor (engine/runtime/store.py, ``CaseStore._timer_floor``) against a
model.

``due_timers`` starts its scan at a per-partition floor instead of the start of ``t:``, so
RocksDB need not step over the tombstones of fired timers. The floor is a cache: whatever
is written, fired, skipped or reassigned, a scan must answer exactly what a scan of every
live key would. Both stores faust may give the writer are exercised, without faust: a
memory store (one dict for all partitions) and one raw-mode RocksDB (rocksdict) per
partition, opened as faust-streaming's rocksdict driver opens them.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from engine.core.sla import Timer
from engine.runtime.store import CaseStore, dump_timer, timer_bound, timer_key
from tests.support.stores import BACKENDS, PARTITIONS, close_store, make_store

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def ids_on(store: CaseStore, partition: int, n: int, prefix: str = "case") -> list[str]:
    """``n`` ids whose partition (``partition_of``) is ``partition``."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        cid = f"{prefix}-{i}"
        if store.partition(cid) == partition:
            out.append(cid)
        i += 1
    return out


def timer_for(at: datetime, target: str | None = None) -> Timer:
    return Timer("due", "resolve", at, target)


# ---------------------------------------------------------------- the model


# owners: cases, and directives whose task timers carry a target (``directive|target``)
OWNERS = [(f"case-{i}", None) for i in range(9)] + [("dir-1", "500103001"), ("dir-2", "500104")]


def _owner(key: bytes) -> tuple[str, str | None]:
    owner, _, target = key.decode().split(":", 2)[2].partition("|")
    return owner, target or None


class TimerIndexMachine(RuleBasedStateMachine):
    """Random arming, disarming, firing, ticking and reassignment on a few partitions;
    every ``due_timers`` call compared with a plain dict of the live keys."""

    keys = Bundle("keys")

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="timer-index-"))
        self.store = make_store(backend, self.dir)
        self.now = T0
        self.live: dict[int, dict[bytes, Timer]] = {p: {} for p in range(PARTITIONS)}
        self.returned: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}

    def teardown(self) -> None:
        close_store(self.store)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- helpers ----

    def _timer(self, owner: int, offset_ms: int) -> tuple[int, bytes, Timer]:
        owner_id, target = OWNERS[owner]
        at = self.now + timedelta(milliseconds=offset_ms)
        return (self.store.partition(owner_id), timer_key(owner_id, at, target),
                timer_for(at, target))

    def _write(self, partition: int, items: list[tuple[bytes, Timer | None]]) -> None:
        self.store.write(partition, [(k, None if t is None else dump_timer(t))
                                     for k, t in items], None)
        for k, t in items:
            if t is None:
                self.live[partition].pop(k, None)
            else:
                self.live[partition][k] = t

    # ---- rules ----

    @initialize(target=keys, owner=st.integers(0, len(OWNERS) - 1),
                offset_ms=st.integers(-5_000, 5_000))
    def arm_first(self, owner: int, offset_ms: int) -> tuple[int, bytes]:
        p, k, t = self._timer(owner, offset_ms)
        self._write(p, [(k, t)])
        return p, k

    @rule(target=keys, owner=st.integers(0, len(OWNERS) - 1),
          offset_ms=st.integers(-60_000, 60_000) | st.integers(-3, 3))
    def arm(self, owner: int, offset_ms: int) -> tuple[int, bytes]:
        p, k, t = self._timer(owner, offset_ms)
        self._write(p, [(k, t)])
        return p, k

    @rule(target=keys, owner=st.integers(0, len(OWNERS) - 1),
          back_ms=st.integers(1, 120_000))
    def arm_in_the_past(self, owner: int, back_ms: int) -> tuple[int, bytes]:
        """Due already, typically below a floor the last scan raised (a late write, a
        deadline counted from an earlier instant, a re-armed firing)."""
        p, k, t = self._timer(owner, -back_ms)
        self._write(p, [(k, t)])
        return p, k

    @rule(arms=st.lists(st.tuples(st.integers(0, len(OWNERS) - 1),
                                  st.integers(-30_000, 30_000)), min_size=1, max_size=4),
          drop=st.lists(keys, max_size=3))
    def batch(self, arms: list[tuple[int, int]], drop: list[tuple[int, bytes]]) -> None:
        """One writer batch per partition: puts and deletes together, as engine/runtime/writer.py
        writes a re-armed timer (the old key deleted, the new one put)."""
        per: dict[int, list[tuple[bytes, Timer | None]]] = {}
        for p, k in drop:
            per.setdefault(p, []).append((k, None))
        for owner, offset_ms in arms:
            p, k, t = self._timer(owner, offset_ms)
            per.setdefault(p, []).append((k, t))
        for p, items in per.items():
            self._write(p, items)

    @rule(target=keys, key=keys, offset_ms=st.integers(-60_000, 60_000))
    def rearm(self, key: tuple[int, bytes], offset_ms: int) -> tuple[int, bytes]:
        """The owner's timer moves (engine/runtime/writer.py): its old key deleted and the new one
        put,
        in one batch; a firing re-armed at an earlier instant lands below the floor."""
        p, old = key
        owner = OWNERS.index(_owner(old))
        p, k, t = self._timer(owner, offset_ms)
        self._write(p, [(old, None), (k, t)])
        return p, k

    @rule(key=keys)
    def disarm(self, key: tuple[int, bytes]) -> None:
        """Delete a timer (it may be gone already: deleting twice is harmless)."""
        p, k = key
        self._write(p, [(k, None)])

    @rule(partition=st.integers(0, PARTITIONS - 1), how_many=st.integers(0, 1_000))
    def fire(self, partition: int, how_many: int) -> None:
        """The writer applies the firings the last scan of the partition returned: each
        deletes its key (some may have been disarmed in between)."""
        fired = self.returned[partition][:how_many]
        self.returned[partition] = self.returned[partition][how_many:]
        if fired:
            self._write(partition, [(k, None) for k in fired])

    @rule(ms=st.integers(0, 2_000) | st.integers(0, 90_000) | st.just(0))
    def advance(self, ms: int) -> None:
        self.now += timedelta(milliseconds=ms)

    @rule()
    def reassign(self) -> None:
        self.store.on_assignment()

    @rule(arms=st.lists(st.tuples(st.integers(0, len(OWNERS) - 1),
                                  st.integers(-120_000, 30_000)), max_size=3),
          drop=st.lists(keys, max_size=2))
    def recover(self, arms: list[tuple[int, int]], drop: list[tuple[int, bytes]]) -> None:
        """A rebalance: recovery writes the store behind the CaseStore's back (faust's
        changelog replay, engine/runtime/kafka/recovery.py's bulk load), then the assignment
        callback."""
        data = self.store.table.data
        for p, k in drop:
            if self.store.rocks:
                data._db_for_partition(p).delete(k)
            else:
                data.data.pop(k, None)
            self.live[p].pop(k, None)
        for owner, offset_ms in arms:
            p, k, t = self._timer(owner, offset_ms)
            if self.store.rocks:
                data._db_for_partition(p)[k] = dump_timer(t)
            else:
                data.data[k] = dump_timer(t)
            self.live[p][k] = t
        self.store.on_assignment()

    @rule(partition=st.integers(0, PARTITIONS - 1),
          limit=st.integers(0, 4) | st.just(1_000),
          skip_picks=st.lists(st.integers(0, 50), max_size=4),
          skip_extra=st.lists(keys, max_size=2))
    def scan(self, partition: int, limit: int, skip_picks: list[int],
             skip_extra: list[tuple[int, bytes]]) -> None:
        bound = timer_bound(self.now)
        due = sorted(k for k in self.live[partition] if k < bound)
        # skip: some due keys (firings in flight) and arbitrary known keys (other
        # partitions', not due, or gone)
        skip = {due[i % len(due)] for i in skip_picks} if due else set()
        skip |= {k for _, k in skip_extra}
        out, oldest = self.store.due_timers(partition, self.now, limit, skip)

        want = [k for k in due if k not in skip][:limit]
        assert [k for k, _, _ in out] == want, (self.store._timer_floor, due, skip)
        for k, owner, t in out:
            assert t == self.live[partition][k]
            assert owner == _owner(k)[0]
        assert oldest == (self.live[partition][due[0]].at if due else None)
        self.returned[partition] = [k for k, _, _ in out]


@pytest.mark.parametrize("backend", BACKENDS)
def test_due_timers_match_a_full_scan(backend: str) -> None:
    run_state_machine_as_test(
        lambda: TimerIndexMachine(backend),
        settings=settings(max_examples=60, stateful_step_count=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]))


# ---------------------------------------------------------------- regressions


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    s = make_store(request.param, tmp_path)
    yield s
    close_store(s)


def _arm(store: CaseStore, partition: int, items: list[tuple[str, datetime]]) -> list[bytes]:
    keys = [timer_key(cid, at) for cid, at in items]
    store.write(partition, [(k, dump_timer(timer_for(at)))
                            for k, (_, at) in zip(keys, items, strict=True)], None)
    return keys


def test_a_timer_armed_below_the_fired_ones_is_found(store: CaseStore) -> None:
    p = 1
    cases = ids_on(store, p, 1_002)
    fired_at = [T0 + timedelta(seconds=i) for i in range(1_000)]
    keys = _arm(store, p, list(zip(cases, fired_at, strict=False)))
    now = T0 + timedelta(hours=1)

    out, oldest = store.due_timers(p, now, limit=1_000)
    assert [k for k, _, _ in out] == keys
    assert oldest == T0
    store.write(p, [(k, None) for k in keys], None)  # every firing applied
    assert store.due_timers(p, now, limit=1_000) == ([], None)  # the floor is now `now`

    early = T0 - timedelta(minutes=5)  # below every fired timer and below the floor
    late = now + timedelta(minutes=5)
    (k_early,) = _arm(store, p, [(cases[1_000], early)])
    _arm(store, p, [(cases[1_001], late)])

    out, oldest = store.due_timers(p, now, limit=1_000)
    assert out == [(k_early, cases[1_000], timer_for(early))]
    assert oldest == early


def test_skipped_keys_hold_the_floor(store: CaseStore) -> None:
    """A scan whose earliest due keys are all in flight still reports the earliest instant
    and does not raise the floor past them: they are live until the writer deletes them."""
    p = 0
    a, b, c = ids_on(store, p, 3)
    ka, kb = _arm(store, p, [(a, T0), (b, T0 + timedelta(seconds=1))])
    now = T0 + timedelta(seconds=10)
    out, oldest = store.due_timers(p, now, limit=10, skip={ka, kb})
    assert (out, oldest) == ([], T0)
    out, oldest = store.due_timers(p, now, limit=10)
    assert [k for k, _, _ in out] == [ka, kb]
    (kc,) = _arm(store, p, [(c, T0 - timedelta(seconds=1))])
    out, oldest = store.due_timers(p, now, limit=1, skip={ka})
    assert ([k for k, _, _ in out], oldest) == ([kc], T0 - timedelta(seconds=1))


def test_other_partitions_keep_their_own_floor(store: CaseStore) -> None:
    (a,) = ids_on(store, 0, 1)
    (b,) = ids_on(store, 2, 1)
    now = T0 + timedelta(minutes=1)
    (ka,) = _arm(store, 0, [(a, T0)])
    assert store.due_timers(2, now, limit=10) == ([], None)  # raises partition 2's floor
    (kb,) = _arm(store, 2, [(b, T0 - timedelta(seconds=1))])
    assert [k for k, _, _ in store.due_timers(0, now, limit=10)[0]] == [ka]
    assert [k for k, _, _ in store.due_timers(2, now, limit=10)[0]] == [kb]


def test_memory_floor_follows_the_owner_partition(tmp_path: Path) -> None:
    """The memory store scans one dict by the owner's partition: a timer written under
    another partition (a command topic with another partition count) must still lower the
    floor its owner's scan starts from."""
    store = make_store("memory", tmp_path)
    try:
        (c,) = ids_on(store, 1, 1)
        now = T0 + timedelta(minutes=1)
        assert store.due_timers(1, now, limit=10) == ([], None)  # raises partition 1's floor
        (k,) = _arm(store, 0, [(c, T0)])
        assert [key for key, _, _ in store.due_timers(1, now, limit=10)[0]] == [k]
    finally:
        close_store(store)
