"""The simulator's recurring places and disputed streets, the insights watch and the demo's
insight lines, without Kafka: deterministic by seed, and played through the pure core."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.core.decide import Accepted, apply, decide, file_after
from engine.core.merge import distance_m
from engine.core.model import Origin
from engine.core.react import react
from engine.data.catalogue import Catalogue
from engine.data.policy import Policy
from engine.data.topology import Topology
from engine.runtime.world import load_world, placer
from engine.tools import demo
from engine.tools.sim import Scheduler, SimStats
from engine.tools.sim.centres import Centres
from engine.tools.sim.generator import Generator, Input
from engine.tools.sim.recurring import (
    POINT_JITTER_M,
    RECURRING_MAX,
    Dispute,
    Recurring,
    plan_for,
)
from engine.tools.sim.watch import Tally
from handlers import complaints, unit_updates
from schemas.codec import decode
from schemas.inbound import Complaint
from tests.support.helpers import POLL, until
from topics import TopicNames

TOPO = Topology.load()
CAT = Catalogue.load()
NAMES = TopicNames("zhida.")
ORIGIN = Origin(topic="t")
DEMO_TICKS = 600  # the demo's default run: 20/s for 30 s


def recurring_of(items: list[Input]) -> list[Input]:
    return [x for x in items if x.source == "complaint" and "-R" in x.key]


def run(seed: int, ticks: int, **kw: Any) -> list[Input]:
    g = Generator(seed, TOPO, CAT, **kw)
    return [x for _ in range(ticks) for x in g.tick()]


# ---- the plan and the generator ----


def test_the_plan_is_the_seeds() -> None:
    a, b, c = plan_for(5, TOPO, CAT), plan_for(5, TOPO, CAT), plan_for(6, TOPO, CAT)
    assert a == b and a != c
    assert [p.disputed for p in a.places] == [True, True, False, False, False, False, False]
    for d in a.disputes:
        assert TOPO.level(d.street) == TOPO.level(d.neighbour) == "street"
        assert d.street != d.neighbour
        assert TOPO.parent(d.street) == TOPO.parent(d.neighbour) == d.district
        assert d.ruled in (d.street, d.neighbour)
        known = CAT.get(d.category, "complaint")
        assert known is not None and known.owner == "street"
    streets = [(p.category, p.unit) for p in a.places if p.unit]
    assert len(set(streets)) == len(streets)
    assert all(len(p.callers) == 3 for p in a.places)


def test_recurring_places_are_reported_enough_for_hotspots() -> None:
    """In the demo's default run every place reaches the default hotspot count, mostly from
    its regular callers; the disputed places are reported most, to show cases after a ruling."""
    items = run(12345, DEMO_TICKS)
    plan = Generator(12345, TOPO, CAT).plan
    again = recurring_of(items)
    minimum = Policy.load().hotspot_min_reports
    by_place: dict[int, list[dict[str, Any]]] = {}
    for x in again:
        decode(Complaint, orjson.dumps(x.value))  # contract-valid
        v = x.value
        loc = v["location"]
        i = next(i for i, p in enumerate(plan.places) if p.category == v["category"] and (
            p.unit == loc.get("unit") if p.unit else
            "lat" in loc and distance_m((loc["lat"], loc["lon"]), p.point) <= POINT_JITTER_M + 1))
        by_place.setdefault(i, []).append(v)
    assert set(by_place) == set(range(len(plan.places)))
    for i, reports in by_place.items():
        assert len(reports) >= minimum + (5 if plan.places[i].disputed else 0), i
        phones = Counter(r["citizen"]["phone"] for r in reports[:minimum] if "citizen" in r)
        assert phones.most_common(1)[0][1] >= 2  # a repeat caller by the hotspot's count
    # the points are placed inside a district, clear of the border rule
    p = placer()
    for x in again:
        if "lat" in x.value["location"]:
            placed = p.place(x.value["location"], Policy.load().border_distance_m)
            assert placed.unit is not None and not placed.boundary


def test_recurring_is_deterministic_bounded_and_on_top_of_the_regular_inputs() -> None:
    a, b = run(21, 400), run(21, 400)
    assert [(x.key, x.value) for x in a] == [(x.key, x.value) for x in b]
    plain = run(21, 400, recurring=False)
    assert not recurring_of(plain)
    assert [x.value for x in a if x not in recurring_of(a)] == [x.value for x in plain]
    # bounded: a long run stops at RECURRING_MAX per place
    r = Recurring(plan_for(21, TOPO, CAT))
    due = Counter(d[0] for t in range(1, 20_000) if (d := r.due(t)) is not None)
    assert set(due.values()) == {RECURRING_MAX}


# ---- the disputed streets against the pure core ----


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def send(self, topic: str, key: str, value: dict[str, Any]) -> None:
        self.sent.append((topic, key, value))


class Core:
    """The engine's rules for cases, fed by the simulated centres' updates."""

    def __init__(self, centres: Centres) -> None:
        self.world = load_world()
        self.centres = centres
        self.states: dict[str, Any] = {}
        self.files: dict[str, Any] = {}
        self.events: dict[str, list[Any]] = {}
        self.orders: list[dict[str, Any]] = []
        self.rejected: list[Any] = []

    def feed(self, cmd: Any) -> None:
        state = self.states.get(cmd.aggregate)
        decision = decide(state, cmd, self.world)
        if not isinstance(decision, Accepted):
            self.rejected.append((cmd, decision))
            return
        new = apply(state, cmd, decision.events)
        self.states[cmd.aggregate] = new
        self.files[cmd.aggregate] = file_after(self.files.get(cmd.aggregate), decision.events)
        self.events.setdefault(cmd.aggregate, []).extend(decision.events)
        for out in react(new, self.files[cmd.aggregate], decision.events, TOPO):
            if out.channel == "dispatch":
                order = out.value.model_dump(mode="json")
                self.orders.append(order)
                self.centres.on_order(order, out.district or "city")

    async def settle(self, sender: FakeSender, scheduler: Scheduler) -> None:
        task = asyncio.create_task(scheduler.run())
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while len(scheduler) or sender.sent:
                assert loop.time() < deadline, "the simulation did not settle"
                while sender.sent:
                    topic, _, value = sender.sent.pop(0)
                    assert topic == NAMES.unit_updates
                    self.feed(unit_updates.to_command(orjson.dumps(value), ORIGIN,
                                                      datetime.now(UTC)))
                await asyncio.sleep(POLL)
        finally:
            task.cancel()


def complaint_at(street: str, category: str, n: int) -> Any:
    value = {"complaint_id": f"T-{n}", "channel": "hotline", "category": category,
             "description": "占道", "location": {"unit": street},
             "reported_at": datetime.now(UTC).isoformat()}
    return complaints.to_command(CAT, orjson.dumps(value), ORIGIN, datetime.now(UTC))


@pytest.mark.parametrize("ruled", ["street", "neighbour"])
async def test_a_disputed_street_returns_the_neighbour_too_and_the_district_rules(
        monkeypatch: pytest.MonkeyPatch, ruled: str) -> None:
    monkeypatch.setattr("engine.tools.sim.centres.FORGE_SHARE", 0.0)
    monkeypatch.setattr("engine.tools.sim.centres.SILENT_SHARE", 0.0)
    monkeypatch.setattr("engine.tools.sim.centres.RETURN_SHARE", 0.0)
    a, b, district = "500103001", "500103003", "500103"
    d = Dispute("street_vending", a, b, district, ruled=a if ruled == "street" else b)
    stats, sender = SimStats(), FakeSender()
    scheduler = Scheduler(stats)
    centres = Centres("unused", NAMES, TOPO, sender, scheduler, stats, speed=1e9, seed=3,
                      disputes=[d])
    core = Core(centres)
    cmd = complaint_at(a, d.category, 1)
    core.feed(cmd)
    await core.settle(sender, scheduler)
    assert core.rejected == []
    steps = [(e.type, e.unit, e.actor) for e in core.events[cmd.aggregate]
             if e.type in ("dispatched", "returned", "assigned", "acknowledged")]
    assert steps == [
        ("dispatched", a, None),
        ("returned", district, a),  # "not ours"
        ("assigned", b, district),  # the street next door
        ("returned", district, b),  # "not ours either": a dispute, to the district
        ("assigned", d.ruled, district),  # the ruling
        ("acknowledged", d.ruled, d.ruled),
    ]
    disputed = [o for o in core.orders if o.get("dispute")]
    assert [o["target"] for o in disputed] == [district]
    events = core.events[cmd.aggregate]
    assert [e.unit for e in events if e.type == "assigned" and e.ruling] == [d.ruled]
    assert events[-1].type == "resolved"
    assert stats.disputed_returns == 2 and stats.rulings == 1 and stats.district_assigns == 1
    # the street contests its first case only: a later one (which the engine sends to the
    # ruled street by precedent, through the place's merge group) is worked
    later = complaint_at(a, d.category, 2)
    core.feed(later)
    await core.settle(sender, scheduler)
    types = [e.type for e in core.events[later.aggregate]]
    assert "returned" not in types and types[-1] == "resolved"
    assert stats.disputed_returns == 2 and stats.rulings == 1


async def test_every_dispute_order_gets_the_arbiters_assign() -> None:
    stats, sender = SimStats(), FakeSender()
    scheduler = Scheduler(stats)
    centres = Centres("unused", NAMES, TOPO, sender, scheduler, stats, speed=1e9, seed=1)
    centres.disputes.returned("c1", "500106001")
    centres.disputes.returned("c1", "500106002")
    centres.on_order({"kind": "case", "order_id": "o1", "case_id": "c1", "target": "500106",
                      "stage": "ack", "dispute": True, "category": "noise"}, "500106")
    centres.on_order({"kind": "case", "order_id": "o2", "case_id": "c2", "target": "500000",
                      "stage": "ack", "dispute": True, "location": {"lat": 29.5, "lon": 106.5},
                      "category": "noise"}, "city")  # at the city: ruled, not triaged
    task = asyncio.create_task(scheduler.run())
    try:
        await until(lambda: not len(scheduler), what="the arbiters' answers")
    finally:
        task.cancel()
    sent = {v["case_id"]: v for _, _, v in sender.sent}
    assert sent["c1"]["action"] == "assign" and sent["c1"]["actor"] == "500106"
    assert sent["c1"]["assign_to"] in ("500106001", "500106002")
    assert sent["c2"]["action"] == "assign" and sent["c2"]["actor"] == "500000"
    assert TOPO.level(sent["c2"]["assign_to"]) == "street"
    assert stats.rulings == 2


# ---- what the demo prints ----


EVIL = "\x1b]2;pwned\x07\u202e" * 50


def test_the_watch_counts_each_insight_and_precedent_case_once() -> None:
    stats = SimStats()
    tally = Tally(stats)
    hot = {"insight_id": "hotspot/1", "kind": "hotspot", "category": "noise",
           "place": "500103001", "reports": 5, "cases": 2, "repeat_callers": 1}
    for v in (hot, hot, {**hot, "insight_id": "hotspot/2", "reports": 7},
              {"insight_id": "dispute/1", "kind": "dispute"},
              {"insight_id": "ruling/1", "kind": "ruling"}, {"insight_id": "x", "kind": EVIL},
              "not an object", {"kind": "hotspot", "insight_id": EVIL, "reports": True}):
        tally.insight(v)
    assert stats.insights == Counter({"hotspot": 3, "dispute": 1, "ruling": 1, "other": 1})
    assert stats.top_hotspot is not None and stats.top_hotspot["reports"] == 7
    for v in ({"case_id": "c1", "type": "dispatched", "precedent": "ruling/1"},
              {"case_id": "c1", "type": "dispatched", "precedent": "ruling/1"},
              {"case_id": "c2", "type": "dispatched"},
              {"case_id": "c3", "type": "assigned", "precedent": "ruling/1"},
              {"case_id": "c4", "type": "dispatched", "precedent": "ruling/1"}):
        tally.case_event(v)
    assert stats.precedent_cases == 2


def test_the_demo_prints_insights_bounded_and_inert() -> None:
    stats = SimStats()
    stats.insights.update({"hotspot": 4, "dispute": 2, "ruling": 2})
    stats.precedent_cases, stats.disputed_returns = 3, 4
    good = {"category": "noise", "place": "500103001", "reports": 9, "cases": 3,
            "repeat_callers": 2}
    lines = demo.insight_lines(stats, TOPO, good)
    assert lines[0].split()[:2] == ["hotspots", "4"] and lines[1].split()[:2] == ["disputes", "2"]
    assert f"noise at {TOPO.name('500103001')} (500103001), 9 reports (3 cases, 2 repeat" \
        in lines[0]
    assert "2 rulings; 3 later cases routed by precedent" in lines[1]
    point = demo.describe_hotspot({**good, "place": {"lat": 29.5576, "lon": 106.577,
                                                     "radius_m": 100}}, TOPO)
    assert "the point 29.55760, 106.57700 (within 100 m)" in point
    for evil in ({"category": EVIL, "place": EVIL, "reports": EVIL, "cases": None},
                 {"category": ["x"], "place": {"lat": EVIL, "lon": 1}, "reports": 10**400}):
        text = demo.describe_hotspot(evil, TOPO)
        assert not any(ord(ch) < 0x20 or ch == "\u202e" for ch in text), text
        assert len(text) < 600
    assert demo.insight_lines(SimStats(), TOPO, None)[0].endswith("policy's count")


def test_the_demo_policy_puts_the_windows_on_the_simulation_clock(tmp_path: Path) -> None:
    p = Policy.load(demo.scaled_policy(600.0, tmp_path / "fast.toml"))
    assert p.merge_window.total_seconds() == 12.0
    assert p.hotspot_window.total_seconds() == 7 * 86400 / 600
    assert p.hotspot_min_reports == Policy.load().hotspot_min_reports
    source = tmp_path / "off.toml"
    source.write_text('[policy]\nmerge_window = "PT0S"\n', encoding="utf-8")
    off = Policy.load(demo.scaled_policy(600.0, tmp_path / "out.toml", source))
    assert off.merge_window.total_seconds() == 0 and off.max_returns == 2
