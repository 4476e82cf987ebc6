"""Topology lookups and routing on real Chongqing codes."""

import pytest

from engine.core.routing import UnknownUnit, route
from engine.data.catalogue import Catalogue
from engine.data.topology import Topology

topo = Topology.load()
cat = Catalogue.load()


def test_counts_match_the_official_division_list() -> None:
    levels: dict[str, int] = {}
    for u in topo.units.values():
        levels[u.level] = levels.get(u.level, 0) + 1
    assert levels["city"] == 1
    assert levels["district"] == 38
    assert levels["street"] == 1031
    assert topo.name("500103") == "渝中区"
    assert topo.name("500103001") == "七星岗街道"


def test_lookups() -> None:
    assert topo.parent("500103001") == "500103"
    assert topo.level("500103001") == "street"
    assert topo.district_of("500103001") == "500103"
    assert topo.district_of("500000") is None
    assert topo.ancestors("500103001") == ("500103", "500000")
    assert topo.is_ancestor("500000", "500103001")
    assert not topo.is_ancestor("500104", "500103001")
    assert topo.lowest_common_ancestor("500103001", "500103003") == "500103"
    assert topo.lowest_common_ancestor("500103001", "500104001") == "500000"
    assert topo.dispatch_key("500103-CG") == "500103"
    assert topo.dispatch_key("500000-JT") == "city"
    assert "500103001" in topo.streets_of("500103")


def test_every_street_has_a_district_parent() -> None:
    for code in topo.streets:
        assert topo.level(topo.parent(code)) == "district"
        assert code.startswith(topo.parent(code))


def test_street_work_goes_flat_to_the_street() -> None:
    assert route(topo, cat.get("road_damage", "complaint"), {"unit": "500103001"}).unit == \
        "500103001"


def test_district_work_goes_to_the_district() -> None:
    p = route(topo, cat.get("water_supply", "complaint"), {"unit": "500103001"})
    assert p.unit == "500103" and not p.triage


def test_city_and_department_work() -> None:
    assert route(topo, cat.get("city_policy", "complaint"), {"unit": "500103001"}).unit == \
        "500000"
    assert route(topo, cat.get("traffic_congestion", "sensed"), {"unit": "500112002"}).unit == \
        "500000-JT"


def test_street_work_located_at_a_district_stays_with_the_district() -> None:
    assert route(topo, cat.get("noise", "complaint"), {"unit": "500103"}).unit == "500103"


def test_unplaceable_locations_go_to_city_triage() -> None:
    for loc in ({"lat": 29.56, "lon": 106.55}, {"address": "解放碑"}):
        p = route(topo, cat.get("noise", "complaint"), loc)
        assert p.unit == "500000" and p.triage


def test_unknown_unit() -> None:
    with pytest.raises(UnknownUnit):
        route(topo, cat.get("noise", "complaint"), {"unit": "999999"})


def test_catalogue_owners_exist() -> None:
    cat.check_owners(topo)
    assert cat.codes("sensed") and cat.codes("complaint")
