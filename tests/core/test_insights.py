"""每月一题 hotspots, 扯皮 disputes, rulings and precedents: the pure rules (core/insights.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core import World, insights
from engine.core.ids import case_id_for
from engine.core.merge import group_of
from engine.core.model import (
    Command,
    GroupOpen,
    GroupRevoke,
    OpenCase,
)
from tests.support.helpers import DISTRICT, OTHER_STREET, STREET, T0, update_cmd, world_with
from tests.support.insights import POINT, Town, complaint, disputed, near

POLICY = """
[policy]
merge_window = "PT2H"
merge_radius_m = 100
hotspot_min_reports = 5
hotspot_window = "P7D"
"""
# ---- hotspots ----


def test_five_reports_at_a_street_raise_one_hotspot_with_its_counts(world: World) -> None:
    t = Town(world)
    phones = ["13800000001", "13800000001", "13800000002", None, "13800000003", None]
    cases = {t.report(complaint(i, phone=p), at=T0 + timedelta(hours=3 * i))
             for i, p in enumerate(phones)}
    (h,) = t.insights("hotspot")
    assert (h.category, h.place, h.unit) == ("road_damage", STREET, STREET)
    assert h.reports == 5 and h.window_start == T0 and h.at == T0 + timedelta(hours=12)
    assert h.cases == 5 and len(cases) == 6  # 3 h apart: no merge within the 2 h window
    assert h.repeat_callers == 1 and h.reopened == 0
    # the sixth report keeps the hotspot current (what GET /hotspots shows), no new insight
    assert t.records[h.insight_id].reports == 6
    assert "13800000001" not in repr(t.groups)  # no phone in the clear on the group state


def test_merged_reports_count_and_their_cases_once(world: World) -> None:
    t = Town(world)
    cases = {t.report(complaint(i), at=T0 + timedelta(minutes=i)) for i in range(5)}
    (h,) = t.insights("hotspot")
    assert len(cases) == 1 and h.reports == 5 and h.cases == 1


def test_points_form_clusters_by_the_first_point(world: World) -> None:
    t = Town(world)
    first = [t.report(complaint(i, location=near(20 * i)), at=T0 + timedelta(hours=3 * i))
             for i in range(5)]  # within 100 m of the first point
    for i in range(5, 9):  # 1 km away: a cluster of its own, below the threshold
        t.report(complaint(i, location=near(1000)), at=T0 + timedelta(hours=3 * i))
    (h,) = t.insights("hotspot")
    assert h.place == {"lat": POINT["lat"], "lon": POINT["lon"], "radius_m": 100.0}
    assert h.reports == 5
    # the unit the first counted report's case was dispatched to, routed again on the raise
    (dispatched,) = [e for e in t.events("dispatched") if e.case_id == first[0]]
    assert h.unit == dispatched.unit


def test_reports_outside_the_window_do_not_add_up(world: World) -> None:
    t = Town(world)
    for i in range(8):  # two days apart: never five within seven days
        t.report(complaint(i), at=T0 + timedelta(days=2 * i))
    assert t.insights("hotspot") == []


def test_the_next_hotspot_of_a_place_waits_a_window_after_the_raise(world: World) -> None:
    t = Town(world)
    for i in range(20):  # a report a day: raised on day 4, then again on day 11 and 18
        t.report(complaint(i), at=T0 + timedelta(days=i, hours=1))
    raised = [h.at for h in t.insights("hotspot")]
    assert raised == [T0 + timedelta(days=d, hours=1) for d in (4, 11, 18)]


def test_alarms_raise_no_hotspot(world: World) -> None:
    t = Town(world)
    for i in range(6):
        t.report(OpenCase(source="sensed", key=f"e{i}", category="waterlogging",
                          priority="normal", location={"unit": STREET}, summary="积水",
                          reported_at=T0, sensor_id=f"s{i}", severity="warning"),
                 at=T0 + timedelta(hours=3 * i))
    assert t.insights("hotspot") == []


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(7)), again=st.lists(st.integers(0, 6), max_size=6))
def test_a_hotspot_is_raised_once_per_window_whatever_the_order(
        world: World, order: list[int], again: list[int]) -> None:
    """Seven reports within a day, in any log order, some delivered again: one hotspot."""
    t = Town(world)
    sent = [*order, *again]
    for n in sent:
        t.report(complaint(n), at=T0 + timedelta(hours=3 * n))
    hotspots = t.insights("hotspot")
    assert len(hotspots) == 1
    assert t.records[hotspots[0].insight_id].reports == 7  # a repeat counts once


# ---- disputes, rulings, precedents ----


def test_a_second_returning_unit_makes_a_dispute_for_their_common_ancestor(world: World
                                                                           ) -> None:
    t = Town(world)
    cid = disputed(t)
    (d,) = t.insights("dispute")
    assert (d.case_id, d.category, d.place) == (cid, "road_damage", STREET)
    assert d.units == [STREET, OTHER_STREET] and d.arbiter == DISTRICT
    s = t.cases[cid]
    assert s.unit == DISTRICT and s.dispute == d.insight_id and not s.first_responsible
    order = [o.value for o in t.outputs if o.channel == "dispatch"][-1]
    assert order.target == DISTRICT and order.dispute is True


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.integers(1, 4))
def test_the_same_unit_returning_again_is_no_dispute(world: World, rounds: int) -> None:
    t = Town(world)
    cid = t.report(complaint(1))
    for i in range(rounds):
        if t.cases[cid].unit != STREET:
            t.case(update_cmd("assign", DISTRICT, cid, assign_to=STREET))
        t.case(update_cmd("return", STREET, cid, reason=f"no {i}"))
    assert t.insights("dispute") == []


def test_the_arbiters_assign_is_the_ruling_and_sets_a_precedent(world: World) -> None:
    t = Town(world)
    cid = disputed(t)
    t.case(update_cmd("assign", DISTRICT, cid, assign_to=OTHER_STREET, note="归解放碑"))
    (r,) = t.insights("ruling")
    (d,) = t.insights("dispute")
    assert (r.case_id, r.unit, r.dispute_id, r.place) == (cid, OTHER_STREET, d.insight_id,
                                                          STREET)
    assert t.cases[cid].dispute is None
    assert t.records[r.insight_id].unit == OTHER_STREET  # the precedent, on the group
    # the next complaint of that category at that place: straight to the ruled unit
    later = t.report(complaint(2), at=T0 + timedelta(hours=5))
    (dispatched,) = [e for e in t.events("dispatched") if e.case_id == later]
    assert dispatched.unit == OTHER_STREET and dispatched.precedent == r.insight_id
    # another category at the place follows the catalogue
    other = t.report(complaint(3, category="garbage_overflow"), at=T0 + timedelta(hours=5))
    (e,) = [e for e in t.events("dispatched") if e.case_id == other]
    assert e.precedent is None


def test_a_second_assign_is_no_second_ruling(world: World) -> None:
    t = Town(world)
    cid = disputed(t)
    t.case(update_cmd("assign", DISTRICT, cid, assign_to=OTHER_STREET))
    t.case(update_cmd("return", OTHER_STREET, cid, reason="还是不归我们"))
    t.case(update_cmd("assign", DISTRICT, cid, assign_to=STREET))
    assert len(t.insights("ruling")) == 1


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(later=st.lists(st.integers(1, 60), min_size=1, max_size=5))
def test_a_revoked_precedent_routes_nothing(world: World, later: list[int]) -> None:
    t = Town(world)
    cid = disputed(t)
    t.case(update_cmd("assign", DISTRICT, cid, assign_to=OTHER_STREET))
    (r,) = t.insights("ruling")
    group = t.cases[cid].group
    assert group is not None
    revoke = Command(aggregate=group, at=T0 + timedelta(hours=3),
                     body=GroupRevoke(ruling_id=r.insight_id))
    t.group(revoke)
    t.group(revoke)  # sent twice: one revoked insight
    (v,) = t.insights("revoked")
    assert v.ruling_id == r.insight_id and t.records[r.insight_id].revoked_at is not None
    for i, hours in enumerate(later):
        c = t.report(complaint(100 + i), at=T0 + timedelta(hours=3 + hours))
        assert all(e.precedent is None for e in t.events("dispatched") if e.case_id == c)


def test_with_merging_off_reports_in_any_time_order_keep_their_own_cases(
        tmp_path: Path) -> None:
    """The group only counts: a report stamped before an earlier one's case opened must not
    join it (seen on the broker, where input times come from the records)."""
    off = world_with('[policy]\nmerge_window = "PT0S"\n', tmp_path)
    t = Town(off)
    cases = {t.report(complaint(i), at=T0 - timedelta(seconds=i)) for i in range(5)}
    assert len(cases) == 5
    (h,) = t.insights("hotspot")
    assert h.cases == 5 and h.reports == 5


def test_a_hotspot_can_issue_a_directive_from_the_district_to_the_street(
        tmp_path: Path) -> None:
    """未诉先办 (``[insights] directive_on_hotspot``, off by default): one directive per
    hotspot, with an id derived from it, issued by the street's district."""
    on = world_with('[policy]\nmerge_window = "PT0S"\n[insights]\ndirective_on_hotspot = true\n'
                    'directive_ack_within = "PT4H"\n', tmp_path)
    issued = []
    g = None
    for i in range(7):
        report = complaint(i)
        key = group_of(on, report)
        assert key is not None
        cmd = Command(aggregate=key, at=T0 + timedelta(hours=i),
                      body=GroupOpen(open=report, case_id=case_id_for("complaint", f"k{i}")))
        d = insights.decide_group(g, cmd, on)
        assert d is not None
        g = d.group
        issued += d.commands
    (c,) = issued
    directive = c.body.directive
    assert c.aggregate == directive.directive_id and directive.issuer == DISTRICT
    assert directive.targets.units == [STREET] and directive.ack_within == timedelta(hours=4)
    again = insights.directive_for(g.spots[0].hotspot, on, timedelta(hours=4))
    assert again is not None and again.aggregate == c.aggregate  # the id is the hotspot's


def test_a_groups_record_stays_small_with_every_bound_reached(world: World) -> None:
    """The group's state is one changelog record rewritten by every report: with its place's
    sightings, cases and callers full it stays near 12 KB; a point group with every cluster
    full, near 100 KB (a broker's default limit is 1 MB)."""
    t = Town(world)
    for i in range(200):  # one place, 200 callers, 200 cases: a hotspot kept current
        t.report(complaint(i, phone=f"139{i:08d}"), at=T0 + timedelta(hours=3 * i % 150))
    (key,) = t.groups
    assert len(t.groups[key].model_dump_json()) < 14_000
    points = Town(world)
    for i in range(400):  # 20 clusters on a grid 110 m apart, 20 reports each
        row, col = divmod(i % 20, 5)
        grid = {"lat": POINT["lat"] + row * 110 / 111_000,
                "lon": POINT["lon"] + col * 110 / 96_000}  # ~96 km a degree of longitude here
        points.report(complaint(1000 + i, location=grid, phone=f"137{i:08d}"),
                      at=T0 + timedelta(minutes=i))
    g = max(points.groups.values(), key=lambda x: len(x.spots))
    assert len(g.spots) == insights.SPOTS_KEPT
    assert len(g.model_dump_json()) < 110_000
