"""``GET /hotspots``, ``GET /precedents`` and the board's hotspots and open disputes
(engine/runtime/http/insights.py): the writer's ``i:``/``r:`` records read per partition on
both stores, filtered and ranked, and gathered for the whole city from two workers over real
HTTP (engine/runtime/http/citywide.py), each partition once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest
from aiohttp import web as aioweb
from aiohttp.test_utils import TestServer

from engine.data.topology import Topology
from engine.runtime.app import Engine
from engine.runtime.http import board, citywide, insights, routes
from engine.runtime.http.citywide import Share, combine, parse_share, share_json, share_query
from engine.runtime.settings import Settings
from engine.runtime.store import CaseStore
from engine.runtime.storekeys import insight_key, precedent_key
from schemas.codec import encode
from schemas.outbound import DisputeInsight, HotspotInsight, PrecedentRecord, RulingInsight
from tests.support.helpers import world_with
from tests.support.stores import BACKENDS, close_store, make_store

TOPO = Topology.load()
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)  # 12:00 in Chongqing
TODAY = date(2026, 12, 7)
CITY, D, S1, S2 = "500000", "500103", "500103001", "500103003"  # 渝中区: 七星岗, 解放碑
D2, S3 = "500104", "500104001"  # 大渡口区


def hotspot(n: str, reports: int, *, unit: str = S1, at: datetime = NOW,
            place: str | dict[str, float] | None = None) -> HotspotInsight:
    return HotspotInsight(insight_id=f"hotspot/g%7C{n}/r{n}", at=at, category="road_damage",
                          place=place or unit, unit=unit, window_start=at - timedelta(days=1),
                          reports=reports, cases=max(reports - 1, 1), repeat_callers=0,
                          reopened=0)


def dispute(case: str, at: datetime = NOW, arbiter: str = D) -> DisputeInsight:
    return DisputeInsight(insight_id=f"dispute/{case}/3", at=at, case_id=case,
                          category="road_damage", place=S1, units=[S1, S2], arbiter=arbiter)


def ruling(case: str, at: datetime = NOW) -> RulingInsight:
    return RulingInsight(insight_id=f"ruling/{case}/5", at=at, case_id=case,
                         category="road_damage", place=S1, unit=S2,
                         dispute_id=f"dispute/{case}/3")


def precedent(case: str, at: datetime, revoked_at: datetime | None = None) -> PrecedentRecord:
    return PrecedentRecord(insight_id=f"ruling/{case}/5", category="road_damage", place=S1,
                           unit=S2, case_id=case, at=at, revoked_at=revoked_at)


def keep(store: CaseStore, p: int, *records: Any) -> None:
    """As the writer's ``_keep_insights`` does."""
    store.write(p, [(precedent_key(r.insight_id) if isinstance(r, PrecedentRecord)
                     else insight_key(r.insight_id), encode(r)) for r in records], None)


def as_json(*records: Any) -> list[dict[str, Any]]:
    return [orjson.loads(encode(r)) for r in records]


# ---- the store: each partition's own records, on both stores ----


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CaseStore]:
    s = make_store(request.param, tmp_path, partitions=3)
    yield s
    close_store(s)


def test_each_partition_lists_its_own_insights_and_precedents(store: CaseStore) -> None:
    keep(store, 0, hotspot("a", 5), dispute("c1"), precedent("c1", NOW))
    keep(store, 1, hotspot("b", 7), ruling("c1"))
    keep(store, 0, hotspot("a", 6))  # a hotspot's record kept current
    assert [h["reports"] for h in store.insights(0, "hotspot")] == [6]
    assert [i["kind"] for i in store.insights(0)] == ["dispute", "hotspot"]
    assert [i["kind"] for i in store.insights(1)] == ["hotspot", "ruling"]
    assert list(store.insights(1, "dispute")) == [] and list(store.insights(2)) == []
    assert list(store.precedents(0)) == as_json(precedent("c1", NOW))
    assert list(store.precedents(1)) == []
    keep(store, 0, precedent("c1", NOW, revoked_at=NOW + timedelta(hours=1)))
    [p] = store.precedents(0)
    assert p["revoked_at"] == (NOW + timedelta(hours=1)).isoformat()


def test_a_memory_store_knows_the_partition_of_a_recovered_record() -> None:
    s = make_store("memory", Path("."), partitions=3)
    data = s.table.data
    data.data[insight_key("hotspot/x/1")] = encode(hotspot("x", 5))
    data._key_partition = {insight_key("hotspot/x/1"): 2}  # as faust's recovery notes it
    data.data[insight_key("hotspot/y/1")] = encode(hotspot("y", 5))  # nobody's
    assert [h["insight_id"] for h in s.insights(2)] == ["hotspot/g%7Cx/rx"]
    assert list(s.insights(0)) == list(s.insights(1)) == []


# ---- pure: which records, in which order ----


def test_hotspots_of_the_period_at_or_below_the_unit_ranked_by_reports() -> None:
    midnight = datetime(2026, 12, 6, 16, 0, tzinfo=UTC)  # 00:00 on TODAY in Chongqing
    found = as_json(hotspot("a", 5, unit=S1), hotspot("b", 9, unit=S3),
                    hotspot("c", 7, unit=D, at=midnight),
                    hotspot("d", 8, at=midnight - timedelta(seconds=1)),  # yesterday
                    hotspot("e", 7, unit="nope"), hotspot("f", 7, unit=S2, at=NOW))
    found.append(as_json(dispute("c9"))[0])  # not a hotspot
    got = insights.ranked(insights.hotspots_in(found, TODAY, TODAY, TZ))
    assert [h["insight_id"][-2:] for h in got] == ["rb", "rc", "re", "rf", "ra"]
    assert [h["reports"] for h in got] == [9, 7, 7, 7, 5]  # ties: raised first, then id
    below_d = insights.hotspots_in(found, TODAY, TODAY, TZ, D, TOPO)
    assert sorted(h["unit"] for h in below_d) == [D, S1, S2]
    assert [h["unit"] for h in insights.hotspots_in(found, TODAY, TODAY, TZ, S1, TOPO)] == [S1]
    assert len(insights.hotspots_in(found, TODAY, TODAY, TZ, CITY, TOPO)) == 4  # not "nope"
    both = insights.hotspots_in(found, TODAY - timedelta(days=1), TODAY, TZ)
    assert len(both) == 6


def test_open_disputes_are_those_no_ruling_names() -> None:
    ds = as_json(dispute("c1"), dispute("c2", NOW + timedelta(minutes=5)))
    assert [d["case_id"] for d in insights.open_disputes(ds, as_json(ruling("c1")))] == ["c2"]
    assert insights.open_disputes(ds, as_json(ruling("c1"), ruling("c2"))) == []


def test_the_board_shows_the_top_five_and_the_open_disputes_newest_first() -> None:
    point = {"lat": 29.5562, "lon": 106.5772, "radius_m": 100.0}
    hs = as_json(*(hotspot(str(i), 5 + i) for i in range(7)), hotspot("p", 50, place=point))
    top = insights.board_hotspots(hs, TOPO)
    assert [h["reports"] for h in top] == [50, 11, 10, 9, 8]
    assert top[0] == {"insight_id": "hotspot/g%7Cp/rp", "at": NOW.isoformat(),
                      "category": "road_damage", "place": "29.5562,106.5772", "unit": S1,
                      "unit_name": TOPO.name(S1), "reports": 50, "cases": 49}
    assert top[1]["place"] == S1
    ds = as_json(dispute("c1"), dispute("c2", NOW + timedelta(minutes=5)))
    assert [d["case_id"] for d in insights.board_disputes(ds, TOPO)] == ["c2", "c1"]
    assert insights.board_disputes(ds, TOPO)[0] == {
        "insight_id": "dispute/c2/3", "at": (NOW + timedelta(minutes=5)).isoformat(),
        "case_id": "c2", "category": "road_damage", "units": [S1, S2], "arbiter": D,
        "arbiter_name": TOPO.name(D)}


def test_precedents_oldest_first_and_untagged() -> None:
    ps = [{**p, "partition": i} for i, p in enumerate(as_json(
        precedent("c2", NOW), precedent("c1", NOW - timedelta(days=3))))]
    got = insights.untagged(insights.by_time(ps))
    assert [p["case_id"] for p in got] == ["c1", "c2"] and "partition" not in got[0]


# ---- a share's records: per partition, over the wire ----


def test_insight_records_count_once_per_partition_and_survive_the_wire() -> None:
    old = Share("w1", NOW, {0: {}, 1: {}},
                {"hotspots": [{"insight_id": "h0", "partition": 0},
                              {"insight_id": "h1-old", "partition": 1}],
                 "precedents": [{"insight_id": "r1-old", "partition": 1}]})
    new = Share("w2", NOW + timedelta(seconds=1), {1: {}, 2: {}},
                {"hotspots": [{"insight_id": "h1", "partition": 1}],
                 "open_disputes": [{"insight_id": "d2", "partition": 2}]})
    city = combine([parse_share(orjson.loads(orjson.dumps(share_json(s)))) for s in (old, new)],
                   4)
    assert sorted(h["insight_id"] for h in city.records["hotspots"]) == ["h0", "h1"]
    assert city.records["precedents"] == []  # partition 1 is w2's now
    assert [d["insight_id"] for d in city.records["open_disputes"]] == ["d2"]
    assert city.coverage()["counted"] == 3 and not city.whole
    assert share_query(TODAY, TODAY, unit=D, issuer=None, latest=0,
                       records=("precedents", "hotspots"), counters=False) == {
        "from": "2026-12-07", "to": "2026-12-07", "unit": D,
        "records": "hotspots,precedents", "counters": "0"}


# ---- over HTTP: two workers, each with its partitions ----


class FakeApp:
    def __init__(self, url: str) -> None:
        self.conf = SimpleNamespace(canonical_url=url)
        self.peers: dict[str, dict[str, list[int]]] = {}
        self.router = SimpleNamespace(table_metadata=lambda _name: self.peers)
        self.http_client: aiohttp.ClientSession | None = None


class FakeEngine:
    """What the routes' bodies, the share and the board use of an ``Engine``."""

    def __init__(self, store: CaseStore, partitions: list[int], url: str) -> None:
        self.store = store
        self.partitions = partitions
        self.world = SimpleNamespace(topology=TOPO, policy=SimpleNamespace(
            calendar=SimpleNamespace(timezone="Asia/Shanghai")))
        self.clock = lambda: NOW
        self.cases = SimpleNamespace(name="cases")
        self.app = FakeApp(url)


@pytest.fixture
async def two_workers(tmp_path: Path) -> AsyncIterator[tuple[FakeEngine, FakeEngine]]:
    """w1 holds partitions 0 and 1, w2 (served at ``/internal/share``) 2 and 3; on one
    memory store each, as two processes would have."""
    peer = FakeEngine(make_store("memory", tmp_path, 4), [2, 3], "")

    async def share(request: aioweb.Request) -> aioweb.Response:
        try:
            return aioweb.json_response(routes.share_request(peer, request.query))
        except ValueError as e:
            return aioweb.json_response({"error": str(e)}, status=400)

    app = aioweb.Application()
    app.router.add_get(citywide.SHARE_PATH, share)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    me = FakeEngine(make_store("memory", tmp_path, 4), [0, 1], "http://127.0.0.1:1")
    peer.app.conf.canonical_url = str(server.make_url("/"))
    me.app.peers = {me.app.conf.canonical_url: {"cases": [0, 1]},
                    peer.app.conf.canonical_url: {"cases": [2, 3]}}
    async with aiohttp.ClientSession() as client:
        me.app.http_client = client
        yield me, peer
    await server.close()


def fill(me: FakeEngine, peer: FakeEngine) -> None:
    keep(me.store, 0, hotspot("a", 5, unit=S1), dispute("c1"), ruling("c1"),
         precedent("c1", NOW - timedelta(days=2)))
    keep(me.store, 1, hotspot("b", 9, unit=S3), dispute("c2"))
    keep(peer.store, 2, hotspot("c", 7, unit=S2), hotspot("old", 99, at=NOW - timedelta(days=3)),
         dispute("c3", NOW + timedelta(minutes=1)),
         precedent("c0", NOW - timedelta(days=9), revoked_at=NOW - timedelta(days=1)))
    # a partition the peer no longer holds: its stale records are nobody's answer
    keep(peer.store, 1, hotspot("stale", 1000))


async def test_hotspots_for_the_whole_city_from_either_worker(
        two_workers: tuple[FakeEngine, FakeEngine]) -> None:
    me, peer = two_workers
    fill(me, peer)
    body = await routes.hotspots_body(me, {})
    assert [h["reports"] for h in body["hotspots"]] == [9, 7, 5]
    assert all("partition" not in h for h in body["hotspots"])
    assert body["coverage"]["counted"] == body["coverage"]["partitions"] == 4
    assert (body["from"], body["to"], body["unit"]) == ("2026-12-07", "2026-12-07", None)
    below = await routes.hotspots_body(me, {"unit": D})
    assert [h["unit"] for h in below["hotspots"]] == [S2, S1]
    week = await routes.hotspots_body(me, {"from": "2026-12-01", "to": "2026-12-07"})
    assert [h["reports"] for h in week["hotspots"]] == [99, 9, 7, 5]
    for bad, reason in (({"from": "yesterday"}, "from: not an RFC 3339"),
                        ({"unit": "<b>x</b>"}, "unit: unknown unit '<b>x</b>'"),
                        ({"from": "2026-12-07", "to": "2026-12-01"}, "is after")):
        with pytest.raises(ValueError, match=reason):
            await routes.hotspots_body(me, bad)


async def test_precedents_for_the_whole_city_revoked_ones_included(
        two_workers: tuple[FakeEngine, FakeEngine]) -> None:
    me, peer = two_workers
    fill(me, peer)
    body = await routes.precedents_body(me)
    assert [p["case_id"] for p in body["precedents"]] == ["c0", "c1"]
    assert body["precedents"][0]["revoked_at"] == (NOW - timedelta(days=1)).isoformat()
    assert body["precedents"][1]["revoked_at"] is None
    assert set(body["precedents"][0]) == {"insight_id", "category", "place", "unit",
                                          "case_id", "at", "revoked_at"}


async def test_a_peer_that_does_not_answer_is_left_out_and_said_so(
        two_workers: tuple[FakeEngine, FakeEngine]) -> None:
    me, peer = two_workers
    fill(me, peer)
    me.app.peers["http://127.0.0.1:9"] = me.app.peers.pop(peer.app.conf.canonical_url)
    body = await routes.hotspots_body(me, {})
    assert [h["reports"] for h in body["hotspots"]] == [9, 5]
    assert body["coverage"]["counted"] == 2 and body["coverage"]["partitions"] == 4


async def test_a_peer_that_answers_without_the_records_asked_is_left_out(
        two_workers: tuple[FakeEngine, FakeEngine]) -> None:
    """A worker of an older version takes no ``records``: its share claims its partitions
    with none of them, which must not pass for "no hotspots there"."""
    me, peer = two_workers
    fill(me, peer)

    async def old(request: aioweb.Request) -> aioweb.Response:
        return aioweb.json_response(share_json(Share("old", NOW, {2: {}, 3: {}})))

    app = aioweb.Application()
    app.router.add_get(citywide.SHARE_PATH, old)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        me.app.peers = {str(server.make_url("/")): {"cases": [2, 3]}}
        body = await routes.hotspots_body(me, {})
        assert [h["reports"] for h in body["hotspots"]] == [9, 5]
        assert body["coverage"]["counted"] == 2
    finally:
        await server.close()


async def test_the_board_lists_the_citys_hotspots_and_open_disputes(
        two_workers: tuple[FakeEngine, FakeEngine]) -> None:
    me, peer = two_workers
    fill(me, peer)
    data = await board.board_data(me)
    assert [h["reports"] for h in data["hotspots"]] == [9, 7, 5]
    assert [d["case_id"] for d in data["disputes"]] == ["c3", "c2"]  # c1 is ruled
    assert data["open_disputes"] == 2 and data["coverage"]["counted"] == 4


def test_a_share_request_refuses_unknown_record_kinds_and_bad_counters(tmp_path: Path) -> None:
    e = FakeEngine(make_store("memory", tmp_path, 4), [0], "http://127.0.0.1:1")
    with pytest.raises(ValueError, match="records: unknown kind 'nope'"):
        routes.share_request(e, {"records": "hotspots,nope"})
    with pytest.raises(ValueError, match="counters: 0 or 1"):
        routes.share_request(e, {"counters": "yes"})
    keep(e.store, 0, hotspot("a", 5))
    body = routes.share_request(e, {"records": "hotspots", "counters": "0"})
    assert body["units"] == {"0": {}} and [h["partition"] for h in body["hotspots"]] == [0]


# ---- the routes themselves, on the worker's own web app ----


async def test_the_routes_answer_json_on_the_workers_web_app(tmp_path: Path) -> None:
    """``register`` wires ``/hotspots`` and ``/precedents`` (and their 400s) into the
    worker's aiohttp app, served here without faust running or a broker."""
    engine = Engine(Settings(store="memory://", data_dir=tmp_path / "data"),
                    world_with("[policy]\n", tmp_path))
    routes.register(engine)
    engine.partitions = list(range(engine.store.partitions))
    now = datetime.now(UTC)
    keep(engine.store, 1, hotspot("a", 6, at=now), hotspot("b", 8, unit=S3, at=now),
         precedent("c1", now))
    server = TestServer(engine.app.web.web_app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as client:
            async def get(path: str) -> tuple[int, Any]:
                async with client.get(server.make_url(path)) as r:
                    return r.status, orjson.loads(await r.read())

            status, body = await get("/hotspots")
            assert status == 200 and [h["reports"] for h in body["hotspots"]] == [8, 6]
            assert body["coverage"]["counted"] == engine.store.partitions
            status, body = await get(f"/hotspots?unit={D}")
            assert status == 200 and [h["unit"] for h in body["hotspots"]] == [S1]
            status, body = await get("/precedents")
            assert status == 200 and [p["case_id"] for p in body["precedents"]] == ["c1"]
            for bad in ("/hotspots?from=garbage", "/hotspots?unit=%3Cscript%3E",
                        "/internal/share?records=nope", "/internal/share?counters=2"):
                status, body = await get(bad)
                assert status == 400 and set(body) == {"error"}, (bad, body)
    finally:
        await server.close()
