"""Keys and output ids no id can forge (engine/runtime/storekeys.py, engine/core/ids.py, merge
group keys).

Ids come from outside and may hold any character. Properties: escaping round-trips and leaves
ordinary ids alone; composite keys parse back to their parts (so they are injective); a task
or history prefix names one aggregate; the orders the store relies on hold. Then the store
itself, without a broker: a directive ``X|500103-0`` on ``X``'s partition keeps its tasks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core import ids, merge
from engine.core.directive import Task
from engine.core.ids import KEY_RESERVED, escape, unescape
from engine.core.model import CaseEvent
from engine.core.sla import Timer
from engine.runtime.store import TASK_IDS, CaseStore, dump, dump_events, dump_timer
from engine.runtime.storekeys import (
    HISTORY_RESERVED,
    SEQ_DIGITS,
    event_key,
    history_prefix,
    task_key,
    task_prefix,
    task_target,
    timer_bound,
    timer_key,
    timer_owner,
)
from tests.support.stores import BACKENDS, close_store, make_store

# any text: separators, '%', '/', control characters, non-ASCII
ANY = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
# few characters, mostly separators: forged keys are likely if they can exist at all
TIGHT = st.text(st.sampled_from("X0|:;%/7C5A\x00\n界"), max_size=8)
IDS = ANY | TIGHT
ORDINARY = st.text(st.sampled_from(
    "abcXYZ0123456789-_./ 渝中区〔〕"), min_size=1, max_size=20)
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
INSTANTS = st.integers(-10**9, 10**12).map(lambda ms: T0 + timedelta(milliseconds=ms))


@st.composite
def two_cuts(draw: st.DrawFn, n: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Two ways to cut one text into ``n`` parts, dropping the character at each cut (mostly
    a separator): the parts a key joining them with that separator could not tell apart,
    were they not escaped (``X|`` + ``0`` and ``X`` + ``|0``)."""
    w = draw(st.text(st.sampled_from("X0|:;%7C"), min_size=n - 1, max_size=10))
    seps = [i for i, c in enumerate(w) if c in "|:"]

    def cut() -> tuple[str, ...]:
        pool = seps if len(seps) >= n - 1 and draw(st.booleans()) else range(len(w))
        at = sorted(draw(st.lists(st.sampled_from(pool), min_size=n - 1, max_size=n - 1,
                                  unique=True)))
        ends = [-1, *at, len(w)]
        return tuple(w[a + 1:b] for a, b in itertools.pairwise(ends))

    return cut(), cut()


# ---------------------------------------------------------------- the escaping


@given(IDS)
def test_escape_round_trips_and_leaves_no_separator(text: str) -> None:
    for reserved in (KEY_RESERVED, HISTORY_RESERVED, ids.OUTPUT_RESERVED):
        e = escape(text, reserved)
        assert unescape(e) == text
        assert not set(e) & (set(reserved) - {"%"})
        assert all(e[i + 1:i + 3] in {f"{ord(c):02X}" for c in reserved}
                   for i, c in enumerate(e) if c == "%")


@given(ORDINARY)
def test_ordinary_ids_are_unchanged(text: str) -> None:
    assert escape(text) == text
    assert escape(text, ids.OUTPUT_RESERVED) == text.replace("/", "%2F")
    assert task_key(text, "500103001") == f"k:{text}|500103001".encode()
    assert event_key(text, 7) == f"h:{text}:000007".encode()
    assert timer_key(text, T0, "500103") == \
        f"t:{int(T0.timestamp() * 1000):015d}:{text}|500103".encode()
    assert merge.group_key("complaint", text, "500103") == f"g|complaint|{text}|500103"


@given(ORDINARY, ORDINARY)
def test_colons_and_semicolons_end_no_directive_id(a: str, b: str) -> None:
    """Only ``|`` follows a directive id in its keys: ``urn:cq:2026;7`` keeps its bytes."""
    did = f"{a}:{b};"
    assert task_key(did, "500103001") == f"k:{did}|500103001".encode()
    assert timer_owner(timer_key(did, T0, "500103001")) == (did, "500103001")
    assert event_key(did, 1) == f"h:{a}%3A{b};:000001".encode()


def test_the_layout_of_ordinary_ids_is_the_one_stores_hold() -> None:
    """Byte for byte what the store wrote before ids were escaped."""
    assert task_key("D-2026-001", "500103001") == b"k:D-2026-001|500103001"
    assert task_key("CQ/2026/7", "500103") == b"k:CQ/2026/7|500103"
    assert event_key("ZD0123456789ABCDEF0123", 12) == b"h:ZD0123456789ABCDEF0123:000012"
    assert timer_key("ZD0123456789ABCDEF0123", T0) == b"t:001772352000000:ZD0123456789ABCDEF0123"
    assert timer_bound(T0) == b"t:001772352000000;"
    assert merge.group_key("complaint", "road_damage", "500103001") == \
        "g|complaint|road_damage|500103001"


# ---------------------------------------------------------------- task keys


@given(IDS, IDS)
def test_a_task_key_parses_back(did: str, target: str) -> None:
    prefix = task_prefix(did)
    key = task_key(did, target)
    assert key.startswith(prefix) and task_target(prefix, key) == target
    assert unescape(key[2:key.index(b"|")].decode()) == did


@given(two_cuts(2))
def test_task_keys_are_injective(tasks: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    a, b = tasks
    assert (task_key(*a) == task_key(*b)) == (a == b)


def longer(a: str) -> st.SearchStrategy[str]:
    """Another id, or ``a`` followed by a separator and more: the forger's choice."""
    return IDS | st.tuples(st.sampled_from("|:;%"), IDS).map(lambda t: a + t[0] + t[1])


@given(IDS, IDS, st.data())
def test_a_task_prefix_names_one_directive(a: str, target: str, data: st.DataObject) -> None:
    b = data.draw(longer(a))
    assert task_key(b, target).startswith(task_prefix(a)) == (a == b)


def test_the_reported_forgery() -> None:
    """``X|500103-0``'s task keys once began with ``k:X|``: ``X``'s prefix."""
    assert not task_key("X|500103-0", "500103001").startswith(task_prefix("X"))
    assert task_key("X", "500103-0|500103001") != task_key("X|500103-0", "500103001")


# ---------------------------------------------------------------- history keys


@given(IDS, st.integers(0, 10**7))
def test_a_history_key_parses_back(case_id: str, seq: int) -> None:
    head, _, tail = event_key(case_id, seq).decode().rpartition(":")
    assert head.startswith("h:") and unescape(head[2:]) == case_id and int(tail) == seq


@given(st.lists(st.tuples(TIGHT, st.integers(0, 10**7)), min_size=2, max_size=12,
                unique=True))
def test_history_keys_are_injective(events: list[tuple[str, int]]) -> None:
    assert len({event_key(c, s) for c, s in events}) == len(events)


@given(IDS, st.integers(0, 10**7), st.data())
def test_a_history_prefix_names_one_case(a: str, seq: int, data: st.DataObject) -> None:
    b = data.draw(longer(a))
    assert event_key(b, seq).startswith(history_prefix(a)) == (a == b)


@given(IDS, st.integers(0, 10**SEQ_DIGITS - 1), st.integers(0, 10**SEQ_DIGITS - 1))
def test_a_cases_history_keys_sort_by_seq(case_id: str, s1: int, s2: int) -> None:
    assert (event_key(case_id, s1) < event_key(case_id, s2)) == (s1 < s2)


# ---------------------------------------------------------------- timer keys


@given(IDS, st.none() | IDS, INSTANTS)
def test_a_timer_key_parses_back_to_its_owner(owner: str, target: str | None,
                                              at: datetime) -> None:
    assert timer_owner(timer_key(owner, at, target)) == (owner, target)


@given(two_cuts(2), st.booleans(), st.booleans())
def test_timer_keys_are_injective(owners: tuple[tuple[str, ...], tuple[str, ...]],
                                  case_a: bool, case_b: bool) -> None:
    """At one instant: two tasks' timers, or a case's and a task's, never share a key (a
    case's owner is the whole text the cut came from)."""
    (da, ta), (db, tb) = owners
    a = ("|".join(owners[0]), None) if case_a else (da, ta)
    b = ("|".join(owners[1]), None) if case_b else (db, tb)
    assert (timer_key(a[0], T0, a[1]) == timer_key(b[0], T0, b[1])) == (a == b)


@given(IDS, st.none() | IDS, INSTANTS, IDS, st.none() | IDS, INSTANTS)
def test_timer_keys_sort_by_due_time_whatever_the_owner(
        o1: str, t1: str | None, at1: datetime, o2: str, t2: str | None,
        at2: datetime) -> None:
    ms1, ms2 = (int(at.timestamp() * 1000) for at in (at1, at2))
    if ms1 != ms2:
        assert (timer_key(o1, at1, t1) < timer_key(o2, at2, t2)) == (ms1 < ms2)
    assert (timer_key(o1, at1, t1) < timer_bound(at2)) == (ms1 <= ms2)


def test_a_timer_key_written_before_the_escaping_still_names_its_directive() -> None:
    legacy = f"t:{int(T0.timestamp() * 1000):015d}:X|Y|500103001".encode()
    assert timer_owner(legacy) == ("X|Y", "500103001")


# ---------------------------------------------------------------- merge group keys


@given(IDS, IDS, IDS)
def test_a_group_key_names_its_place(source: str, category: str, place: str) -> None:
    key = merge.group_key(source, category, place)
    parts = key.split("|")
    assert len(parts) == 4 and parts[0] == "g"
    assert [unescape(p) for p in parts[1:]] == [source, category, place]
    assert merge.place_of(key) == place


@given(two_cuts(3))
def test_group_keys_are_injective(groups: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    a, b = groups
    assert (merge.group_key(*a) == merge.group_key(*b)) == (a == b)


# ---------------------------------------------------------------- output ids

CASES = st.sampled_from(["ZD0123456789ABCDEF0123", "ZDFFFFFFFFFFFFFFFFFFFF",
                         ids.case_id_for("complaint", "c-1")])
SEQS = st.integers(1, 12)
CASE_KINDS = st.sampled_from(["case", "reminder", "supervision", "assist"])
DIRECTIVE_KINDS = st.sampled_from(["directive", "reminder", "supervision"])
# directive ids: tight text, case ids themselves, and ids that pose as other outputs
DIRECTIVES = TIGHT | CASES | CASES.flatmap(
    lambda c: st.sampled_from([f"{c}/3/notice", f"{c}/3", f"{c}/3/reminder", "%5A" + c[1:]]))
OUTPUTS = st.one_of(
    st.tuples(st.just("case_event"), CASES, SEQS),
    st.tuples(st.just("case_order"), CASES, SEQS, CASE_KINDS, TIGHT),
    st.tuples(st.just("notice"), CASES, SEQS, TIGHT),
    st.tuples(st.just("directive_event"), DIRECTIVES, SEQS),
    st.tuples(st.just("directive_order"), DIRECTIVES, SEQS, DIRECTIVE_KINDS, TIGHT),
)
BUILD = {"case_event": ids.case_event_id, "case_order": ids.case_order_id,
         "notice": ids.notice_id, "directive_event": ids.directive_event_id,
         "directive_order": ids.directive_order_id}


@given(st.lists(OUTPUTS, min_size=2, max_size=16, unique=True))
def test_no_two_outputs_share_an_id(outputs: list[tuple]) -> None:  # type: ignore[type-arg]
    made = {BUILD[o[0]](*o[1:]) for o in outputs}
    assert len(made) == len(outputs)


def test_output_ids_of_ordinary_ids_are_the_ones_consumers_have_seen() -> None:
    case = "ZD0123456789ABCDEF0123"
    assert ids.case_event_id(case, 3) == f"{case}/3"
    assert ids.case_order_id(case, 3, "case", "500103001") == f"{case}/3/case/500103001"
    assert ids.notice_id(case, 3, "C-2026-7") == f"{case}/3/notice/C-2026-7"
    assert ids.directive_event_id("D-1", 2) == "D-1/2"
    assert ids.directive_order_id("D-1", 2, "directive", "500103") == "D-1/2/directive/500103"


def test_a_directive_cannot_take_a_cases_order_ids() -> None:
    case = ids.case_id_for("complaint", "c-1")
    assert ids.directive_order_id(case, 4, "reminder", "500103001") != \
        ids.case_order_id(case, 4, "reminder", "500103001")
    assert ids.directive_event_id(f"{case}/3/notice", 1) != ids.notice_id(case, 3, "1")


# ---------------------------------------------------------------- the store


@pytest.fixture(params=BACKENDS)
def one_partition(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CaseStore]:
    s = make_store(request.param, tmp_path, partitions=1)
    yield s
    close_store(s)


def _tasks(store: CaseStore, did: str, targets: list[str]) -> None:
    store.write(0, [(task_key(did, t), dump(Task(directive_id=did, target=t, escalation_level=i),
                                           TASK_IDS))
                    for i, t in enumerate(targets)], None)


def test_a_directive_named_like_anothers_task_prefix_keeps_its_tasks(
        one_partition: CaseStore) -> None:
    store = one_partition
    _tasks(store, "X", ["500103001", "500103002"])
    _tasks(store, "X|500103-0", ["500104001"])
    _tasks(store, "X|", ["500105001|0"])
    assert sorted(t["target"] for t in store.tasks("X")) == ["500103001", "500103002"]
    assert [t["target"] for t in store.tasks("X|500103-0")] == ["500104001"]
    assert [t["target"] for t in store.tasks("X|")] == ["500105001|0"]
    forged = store.task("X", "500103-0|500104001")
    assert forged is None
    t = store.task("X|500103-0", "500104001")
    assert t is not None and (t.directive_id, t.target) == ("X|500103-0", "500104001")


def test_a_case_ids_separators_keep_its_history_and_timer(one_partition: CaseStore) -> None:
    store = one_partition
    for case_id in ("A", "A:000001", "A|500103001"):
        e = CaseEvent(case_id=case_id, seq=1, type="created", at=T0, state="received",
                      unit=case_id)
        store.write(0, [(event_key(case_id, 1), dump_events([e])),
                        (timer_key(case_id, T0), dump_timer(Timer("due", "ack", T0)))], None)
    for case_id in ("A", "A:000001", "A|500103001"):
        assert [e.unit for e in store.history(case_id, 1)] == [case_id]
    store.write(0, [(timer_key("A", T0, "500103001"),
                     dump_timer(Timer("due", "ack", T0, "500103001")))], None)
    due, _ = store.due_timers(0, T0, limit=10)
    assert sorted((owner, t.target or "") for _, owner, t in due) == [
        ("A", ""), ("A", "500103001"), ("A:000001", ""), ("A|500103001", "")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_timers_of_escaped_ids_are_scanned_on_their_own_partition(backend: str,
                                                                   tmp_path: Path) -> None:
    """The memory store is one dict for all partitions: it routes a timer by its owner."""
    store = make_store(backend, tmp_path, partitions=3)
    try:
        owners = [("X|Y", "500103001"), ("X", "Y|500103001"), ("C|500103001", None)]
        for owner, target in owners:
            store.write(store.partition(owner),
                        [(timer_key(owner, T0, target), dump_timer(Timer("due", "ack", T0,
                                                                          target)))], None)
        found = []
        for p in range(3):
            due, _ = store.due_timers(p, T0, limit=10)
            found += [(owner, t.target, p) for _, owner, t in due]
        assert sorted(found, key=repr) == sorted(((o, t, store.partition(o)) for o, t in owners),
                                                 key=repr)
    finally:
        close_store(store)
