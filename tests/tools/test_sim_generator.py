"""The simulator without Kafka: generated inputs are valid, deterministic and realistic, and
the simulated centres and citizens drive every case through the pure core to its end."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from engine.core.decide import Accepted, apply, decide, file_after
from engine.core.ids import case_id_for
from engine.core.model import Origin
from engine.core.react import react
from engine.data.catalogue import Catalogue
from engine.data.topology import Topology
from engine.runtime.world import load_world
from engine.tools.sim import Scheduler, SimStats
from engine.tools.sim.centres import Centres
from engine.tools.sim.citizens import Citizens
from engine.tools.sim.generator import CENTRAL_DISTRICTS, T0, Generator, Input, sensor_id_for
from handlers import citizen_feedback, complaints, sensed, unit_updates
from schemas.codec import decode
from schemas.inbound import CitizenFeedback, Complaint, SensedAlarm, UnitUpdate
from tests.support.helpers import until
from topics import TopicNames

TOPO = Topology.load()
CAT = Catalogue.load()
NAMES = TopicNames("zhida.")
ORIGIN = Origin(topic="t")


def generate(seed: int, n: int, **kw: Any) -> list[Input]:
    g = Generator(seed, TOPO, CAT, **kw)
    return [item for _ in range(n) for item in g.tick()]


@pytest.fixture(scope="module")
def sample() -> list[Input]:
    return generate(7, 4000, storm_chance=0.005)


def test_same_seed_same_inputs_other_seed_other_inputs() -> None:
    a, b = generate(42, 500), generate(42, 500)
    assert [(x.key, x.value) for x in a] == [(x.key, x.value) for x in b]
    c = generate(43, 500)
    assert [x.value for x in a] != [x.value for x in c]
    assert not {x.idempotency_key for x in a} & {x.idempotency_key for x in c}


def test_every_input_validates_and_ids_are_unique(sample: list[Input]) -> None:
    ids = Counter(x.idempotency_key for x in sample)
    assert ids.most_common(1)[0][1] == 1
    complaint_codes, kinds = set(CAT.codes("complaint")), set(CAT.codes("sensed"))
    for x in sample:
        raw = orjson.dumps(x.value)
        if x.source == "complaint":
            c = decode(Complaint, raw)
            assert x.key == c.complaint_id
            assert c.category in complaint_codes
            assert c.reported_at.utcoffset() is not None
        else:
            a = decode(SensedAlarm, raw)
            assert x.key == a.sensor_id
            assert a.kind in kinds
            assert a.observed_at.utcoffset() is not None


def test_case_ids_are_the_engines(sample: list[Input]) -> None:
    """The simulator matches orders to inputs by case id: the engine's intake must agree."""
    now = datetime.now(UTC)
    for x in sample[:300]:
        module = complaints if x.source == "complaint" else sensed
        cmd = module.to_command(CAT, orjson.dumps(x.value), ORIGIN, now)
        assert cmd.aggregate == x.case_id == case_id_for(x.source, x.idempotency_key)


def test_locations_are_real_units_or_coordinates_or_addresses(sample: list[Input]) -> None:
    located = [x for x in sample if x.unit is not None]
    for x in located:
        assert TOPO.level(x.unit) == "street"
    alarms = [x for x in sample if x.source == "sensed"]
    assert all(x.unit is not None for x in alarms)
    complaints_ = [x for x in sample if x.source == "complaint"]
    unplaced = [x for x in complaints_ if x.unit is None]
    assert 0.02 < len(unplaced) / len(complaints_) < 0.09
    for x in unplaced:
        loc = x.value["location"]
        assert set(loc) in ({"lat", "lon"}, {"address"})
        if "lat" in loc:
            assert 29 < loc["lat"] < 30.5 and 105.5 < loc["lon"] < 107.5


def test_central_districts_are_busier(sample: list[Input]) -> None:
    streets = [x.unit for x in sample if x.source == "complaint" and x.unit]
    central = sum(TOPO.district_of(s) in CENTRAL_DISTRICTS for s in streets)
    central_streets = sum(len(TOPO.streets_of(d)) for d in CENTRAL_DISTRICTS)
    street_share = central_streets / len(TOPO.streets)
    share = central / len(streets)
    assert share > 2.5 * street_share  # per street, a central one is several times busier
    per_district = Counter(TOPO.district_of(s) for s in streets)
    top7 = {d for d, _ in per_district.most_common(7)}
    assert len(top7 & set(CENTRAL_DISTRICTS)) >= 5


def test_mix_of_sources_channels_categories(sample: list[Input]) -> None:
    regular = [x for x in sample if not x.storm]
    share = sum(x.source == "complaint" for x in regular) / len(regular)
    assert 0.75 < share < 0.85
    complaints_ = [x.value for x in sample if x.source == "complaint"]
    channels = Counter(c["channel"] for c in complaints_)
    assert set(channels) == {"hotline", "app", "web", "grid", "media"}
    assert channels.most_common(1)[0][0] == "hotline"
    categories = Counter(c["category"] for c in complaints_)
    assert {c for c, _ in categories.most_common(3)} == {"noise", "sanitation", "road_damage"}
    assert set(categories) == set(CAT.codes("complaint"))
    assert all(c["description"] for c in complaints_)
    with_citizen = [c for c in complaints_ if "citizen" in c]
    assert len(with_citizen) > 0.8 * len(complaints_)
    for c in with_citizen:
        assert len(c["citizen"]["phone"]) == 11 and c["citizen"]["phone"].startswith("1")
    severities = Counter(x.value["severity"] for x in regular if x.source == "sensed")
    assert set(severities) == {"info", "warning", "critical"}


def test_sensor_ids_are_stable_per_place(sample: list[Input]) -> None:
    place: dict[str, tuple[str, str]] = {}
    for x in sample:
        if x.source == "sensed":
            v = x.value
            assert place.setdefault(v["sensor_id"], (v["kind"], v["location"]["unit"])) == \
                (v["kind"], v["location"]["unit"])
    assert sensor_id_for("waterlogging", "500103001", 2) == "WL-500103001-02"


def test_storm_is_many_waterlogging_sensors_in_one_district() -> None:
    g = Generator(3, TOPO, CAT)
    burst = g.storm(T0, district="500112", size=40)
    assert len(burst) == 40 and all(x.storm for x in burst)
    assert {x.value["kind"] for x in burst} == {"waterlogging"}
    assert {TOPO.district_of(x.unit) for x in burst} == {"500112"}
    assert len({x.value["sensor_id"] for x in burst}) == 40
    assert {x.value["severity"] for x in burst} <= {"warning", "critical"}
    assert len(generate(5, 2000, storm_chance=0.01)) > 2000 + 20


# ---- the simulated centres and citizens against the pure core ----


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def send(self, topic: str, key: str, value: dict[str, Any]) -> None:
        self.sent.append((topic, key, value))


async def test_centres_and_citizens_close_the_loop_through_the_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every update and rating the simulator produces is accepted by the engine's rules, and
    every case reaches its end: sensed verified, complaints rated (or left unanswered).
    (No ticker runs here, so no street stays silent: only the engine's ladder reaches them.)"""
    monkeypatch.setattr("engine.tools.sim.centres.SILENT_SHARE", 0.0)
    world = load_world()
    stats = SimStats()
    scheduler = Scheduler(stats)
    sender = FakeSender()
    speed = 1e9  # simulated hours pass in microseconds
    centres = Centres("unused", NAMES, TOPO, sender, scheduler, stats, speed=speed, seed=1)
    citizens = Citizens("unused", NAMES, sender, scheduler, stats, speed=speed, seed=1)
    states: dict[str, Any] = {}
    files: dict[str, Any] = {}
    histories: dict[str, list[Any]] = {}
    rejected: list[Any] = []

    def feed(cmd: Any) -> None:
        decision = decide(states.get(cmd.aggregate), cmd, world)
        if not isinstance(decision, Accepted):
            rejected.append((cmd, decision))
            return
        new = apply(states.get(cmd.aggregate), cmd, decision.events)
        states[cmd.aggregate] = new
        files[cmd.aggregate] = file_after(files.get(cmd.aggregate), decision.events)
        histories.setdefault(cmd.aggregate, []).extend(decision.events)
        for out in react(new, files[cmd.aggregate], decision.events, world.topology):
            value = out.value.model_dump(mode="json")
            if out.channel == "dispatch":
                centres.on_order(value, out.district or "city")
            elif out.channel == "notifications":
                citizens.on_notification(value)

    inputs = generate(11, 300, storm_chance=0.01, unplaced_share=0.2)
    now = datetime.now(UTC)
    for x in inputs:
        stats.record_sent(x.case_id)
        module = complaints if x.source == "complaint" else sensed
        feed(module.to_command(CAT, orjson.dumps(x.value), ORIGIN, now))
    assert stats.dispatched == len(inputs) and stats.undispatched == 0

    task = asyncio.create_task(scheduler.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(scheduler) or sender.sent:
            assert loop.time() < deadline, "the simulation did not settle"
            while sender.sent:
                topic, key, value = sender.sent.pop(0)
                raw = orjson.dumps(value)
                if topic == NAMES.unit_updates:
                    UnitUpdate.model_validate(value)
                    assert key == value["case_id"]
                    feed(unit_updates.to_command(raw, ORIGIN, datetime.now(UTC)))
                else:
                    assert topic == NAMES.citizen_feedback
                    CitizenFeedback.model_validate(value)
                    feed(citizen_feedback.to_command(raw, ORIGIN, datetime.now(UTC)))
            await asyncio.sleep(0)
    finally:
        task.cancel()
    # the only refusals are the forged updates, and each of them is refused as unauthorized
    forged = [(c, d) for c, d in rejected if c.body.update.update_id.endswith(":forged")]
    assert forged == rejected, [r for r in rejected if r not in forged][:3]
    assert len(forged) == stats.forged and all(d.reason == "unauthorized" for _, d in forged)
    assert stats.returns > 0 and stats.district_assigns > 0 and stats.assists > 0
    assert stats.suspensions > 0
    assert stats.errors == 0
    by_source = {"complaint": Counter(), "sensed": Counter()}
    for s in states.values():
        by_source[s.source][s.state] += 1
    assert by_source["sensed"] == Counter({"closed": sum(x.source == "sensed" for x in inputs)})
    assert set(by_source["complaint"]) <= {"closed", "resolved"}
    assert by_source["complaint"]["resolved"] == stats.unanswered
    assert stats.assigns > 0 and stats.verifies > 0 and stats.ratings["unsatisfied"] > 0
    assert 0.05 < stats.late_acks / stats.acks < 0.16
    # the city centre placed every triaged case on a street (which may have returned it
    # since); points and addresses are placed at intake (engine/core/place.py), so few are
    triaged = [h for h in histories.values() if any(e.type == "triaged" for e in h)]
    assert all(any(e.type == "assigned" and TOPO.level(e.unit) == "street" for e in h)
               for h in triaged)


def test_assist_orders_are_not_worked_and_supervision_is_acted_on() -> None:
    stats = SimStats()
    scheduler = Scheduler(stats)
    centres = Centres("unused", NAMES, TOPO, FakeSender(), scheduler, stats, speed=60)
    centres.on_order({"kind": "case", "role": "assist", "order_id": "o1", "case_id": "c",
                      "target": "500103-CG"}, "500103")
    centres.on_order({"kind": "supervision", "order_id": "o2", "case_id": "c",
                      "target": "500103"}, "500103")
    assert len(scheduler) == 0 and stats.orders == 0  # no handler order known for "c"
    assert stats.other_orders == Counter({"assist": 1})
    assert stats.supervision == Counter({"district": 1})
    # the city centre always acts on 督办 for a case it knows: it signs on the street's behalf
    centres._handler["c2"] = {"kind": "case", "order_id": "o3", "case_id": "c2",
                              "target": "500103001", "stage": "ack"}
    centres.on_order({"kind": "supervision", "order_id": "o4", "case_id": "c2",
                      "target": "500000", "stage": "ack", "late_unit": "500103"}, "city")
    assert len(scheduler) == 1 and stats.supervision["city"] == 1


async def test_scheduler_fires_in_due_order_and_replaces_per_key() -> None:
    scheduler = Scheduler()
    fired: list[str] = []

    def note(name: str) -> Any:
        async def action() -> None:
            fired.append(name)
        return action

    scheduler.schedule("a", 0.03, note("a-old"))
    scheduler.schedule("b", 0.02, note("b"))
    scheduler.schedule("a", 0.01, note("a-new"))  # replaces a-old
    scheduler.schedule("c", 0.0, note("c"))
    task = asyncio.create_task(scheduler.run())
    try:
        await until(lambda: not len(scheduler), timeout=5, what="the scheduled actions")
    finally:
        task.cancel()
    assert fired == ["c", "a-new", "b"]


def test_latency_percentiles() -> None:
    stats = SimStats()
    for i in range(100):
        stats.record_sent(f"c{i}", at=0.0)
        stats.record_order(f"c{i}", "500103", at=(i + 1) / 1000)
    stats.record_order("other", "city", at=1.0)  # not ours: no latency
    assert stats.dispatched == 100 and stats.orders == 101
    assert stats.percentile(50) == pytest.approx(50.0)
    assert stats.percentile(99) == pytest.approx(99.0)
    assert stats.busiest() == [("500103", 100)]
