"""Summing the workers' shares (engine/runtime/http/citywide.py): each partition once, rates from
sums,
coverage honest about what is missing."""

from __future__ import annotations

import socket
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest

from engine.core import figures
from engine.data.topology import Topology
from engine.runtime import latest
from engine.runtime.faust_app import advertised_host
from engine.runtime.http import board
from engine.runtime.http.citywide import (
    Share,
    collapse,
    combine,
    parse_share,
    pick,
    share_json,
    share_query,
)
from engine.runtime.settings import Settings

TOPO = Topology.load()
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAY = date(2026, 12, 1)
CITY = "500000"
A, B = "500103001", "500104001"  # streets of two districts


def share(worker: str, at: datetime, units: dict[int, dict[str, dict[str, int]]],
          **records: list[dict[str, Any]]) -> Share:
    return Share(worker, at, units, records)


def test_each_partition_is_counted_once_and_rates_are_sums_over_sums() -> None:
    w1 = share("w1", T0, {0: {A: {"received": 10, "responded": 10}},
                          1: {A: {"received": 2, "responded": 0}}})
    w2 = share("w2", T0, {2: {B: {"received": 8, "responded": 2, "backlog": 3}}})
    city = combine([w1, w2], 3)
    assert city.units == {A: {"received": 12, "responded": 10},
                          B: {"received": 8, "responded": 2, "backlog": 3}}
    s = figures.stats_of(CITY, DAY, DAY, city.units, TOPO)
    assert (s["received"], s["responded"], s["backlog"]) == (20, 12, 3)
    # 12/20, not the mean of the workers' rates (10/12 and 2/8)
    assert s["response_rate"] == 0.6
    assert city.counted == [0, 1, 2] and city.whole
    assert city.coverage() == {"partitions": 3, "counted": 3, "as_of": T0.isoformat()}


def test_a_partition_claimed_twice_counts_once_from_the_newer_share() -> None:
    """A rebalance between two asks: the old owner's answer still claims partition 1."""
    old = share("w1", T0, {0: {A: {"received": 1}}, 1: {A: {"received": 5}}},
                directives=[{"directive_id": "d-old", "partition": 1},
                            {"directive_id": "d0", "partition": 0}])
    new = share("w2", T0 + timedelta(seconds=1), {1: {A: {"received": 7}}, 2: {}},
                directives=[{"directive_id": "d-new", "partition": 1}])
    city = combine([old, new], 3)
    assert city.units == {A: {"received": 8}}  # 1 (p0) + 7 (p1 from the newer), never 13
    assert sorted(d["directive_id"] for d in city.records["directives"]) == ["d-new", "d0"]
    assert city.counted == [0, 1, 2]
    assert city.as_of == T0  # the oldest share that counts (w1 still counts for p0)
    assert {p: s.worker for p, s in pick([old, new], 3).items()} == {0: "w1", 1: "w2",
                                                                     2: "w2"}


def test_equal_claims_keep_the_first_and_never_double_count() -> None:
    a = share("w1", T0, {0: {A: {"received": 3}}})
    b = share("w2", T0, {0: {A: {"received": 3}}})
    assert combine([a, b], 1).units == {A: {"received": 3}}
    assert pick([a, b], 1)[0] is a


def test_a_missing_peer_leaves_its_partitions_uncounted() -> None:
    mine = share("w1", T0, {0: {A: {"received": 2}}, 3: {}})
    city = combine([mine], 4)  # w2 (partitions 1, 2) did not answer
    assert city.counted == [0, 3] and not city.whole
    assert city.coverage() == {"partitions": 4, "counted": 2, "as_of": T0.isoformat()}
    assert board.describe_coverage(city.counted, 4) == (
        "2 of 4 partitions counted (0, 3): the others have no worker answering for them now")


def test_as_of_is_the_oldest_counted_share_and_none_when_nothing_counts() -> None:
    shares = [share("w1", T0 + timedelta(seconds=2), {0: {}}),
              share("w2", T0, {1: {}}),
              share("w3", T0 + timedelta(seconds=5), {2: {}})]
    assert combine(shares, 3).as_of == T0
    # a share whose only partition is taken by a newer one does not count, nor its time
    stale = share("w0", T0 - timedelta(minutes=5), {2: {}})
    assert combine([*shares, stale], 3).as_of == T0
    empty = combine([share("w1", T0, {})], 4)
    assert empty.counted == [] and empty.coverage()["as_of"] is None
    assert board.describe_coverage([], 4).startswith("no partition of 4 counted")


def test_partitions_outside_the_table_are_ignored() -> None:
    city = combine([share("w1", T0, {0: {A: {"received": 1}}, 7: {A: {"received": 9}}})], 4)
    assert city.units == {A: {"received": 1}} and city.counted == [0]


def test_a_share_survives_the_wire_and_garbage_is_no_share() -> None:
    s = share("http://127.0.0.1:6067", T0, {0: {A: {"received": 1}}, 2: {}},
              escalations=[{"id": "c1", "partition": 2}])
    body = orjson.loads(orjson.dumps(share_json(s)))
    assert body["partitions"] == [0, 2]
    back = parse_share(body)
    assert back == Share(s.worker, T0, {0: {A: {"received": 1}}, 2: {}},
                         {"escalations": [{"id": "c1", "partition": 2}]})
    for bad in ({}, {"taken_at": "yesterday", "units": {}}, {"taken_at": T0.isoformat()},
                {"taken_at": T0.isoformat(), "units": {"x": {}}},
                {"taken_at": "2026-12-01T09:00:00", "units": {}}, [], "share"):
        with pytest.raises(ValueError):
            parse_share(bad)


def test_the_whole_city_is_said_so() -> None:
    assert board.describe_coverage([0, 1, 2, 3], 4) == "the whole city (partitions 0–3 of 4)"
    assert board.describe_coverage([0], 1) == "the whole city (partition 0 of 1)"
    assert board.partition_runs([0, 1, 2, 5, 7, 8]) == "0–2, 5, 7–8"


def test_board_lists_merge_newest_first_in_one_order_on_every_worker() -> None:
    def esc(ident: str, minute: int, p: int) -> dict[str, Any]:
        return {"kind": "case", "id": ident, "seq": 3, "at": (T0 + timedelta(minutes=minute))
                .isoformat(), "late_unit": A, "supervisor": "500103", "level": 1,
                "stage": "ack", "top": False, "partition": p}
    found = [esc("c1", 1, 0), esc("c2", 5, 1), esc("c3", 3, 2), esc("c0", 5, 3)]
    got = latest.newest_escalations(found, TOPO, n=3)
    assert [e["id"] for e in got] == ["c2", "c0", "c3"]
    assert "partition" not in got[0] and got[0]["district"] == "500103"
    assert [e["id"] for e in latest.newest_escalations(list(reversed(found)), TOPO, n=3)] == [
        "c2", "c0", "c3"]
    ds = [{"directive_id": f"d{i}", "issued_at": (T0 + timedelta(hours=i)).isoformat(),
           "partition": i % 2} for i in range(4)]
    assert [d["directive_id"] for d in latest.newest_directives(ds, n=2)] == ["d3", "d2"]


def test_a_share_is_collapsed_to_the_unit_s_children_and_rolls_up_the_same() -> None:
    a2 = TOPO.streets_of("500103")[1]
    own = {A: {"received": 2}, a2: {"received": 1, "backlog": 1}, B: {"received": 5},
           "500103": {"received": 1}, CITY: {"received": 4}, "nope": {"received": 9}}
    for unit in (CITY, "500103", A):
        small = collapse(own, unit, TOPO)
        assert len(small) <= len(TOPO.children(unit)) + 1
        assert figures.rollup(unit, small, TOPO) == figures.rollup(unit, own, TOPO), unit
    assert collapse(own, CITY, TOPO) == {
        CITY: {"received": 4}, "500103": {"received": 4, "backlog": 1},
        "500104": {"received": 5}}
    assert collapse(own, "500103", TOPO) == {
        "500103": {"received": 1}, A: {"received": 2}, a2: {"received": 1, "backlog": 1}}
    assert share_query(DAY, DAY, unit=None, issuer=None, latest=0) == {
        "from": "2026-12-01", "to": "2026-12-01"}
    assert share_query(DAY, DAY, unit="500103", issuer="500103", latest=20) == {
        "from": "2026-12-01", "to": "2026-12-01", "unit": "500103", "issuer": "500103",
        "latest": "20"}


def test_the_address_other_workers_call_is_never_a_wildcard() -> None:
    assert advertised_host(Settings()) == "127.0.0.1"
    assert advertised_host(Settings(http_host="0.0.0.0")) == socket.gethostname()
    assert advertised_host(Settings(http_host="0.0.0.0", advertised_host="w1.zhida")) == "w1.zhida"
