"""SLA timers on the real broker with a second-scale policy: each reminder and escalation once.

Own broker and workers (the workers are killed and rebalanced). The policy: ack in 6 s,
reminder at half of it, supervision 4 s per level: warned at +3 s, escalated to the district
at +6 s, to the city at +10 s, the city's own breach recorded at +14 s.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from engine.core.ids import case_id_for
from engine.tools.broker import EmbeddedBroker, free_port
from tests.support.broker import NAMES, Collector, Worker, collecting, own_broker

pytestmark = pytest.mark.integration

STREET, DISTRICT, CITY = "500103001", "500103", "500000"
POLICY = """
[policy]
warn_fraction = 0.5
clock = "24x7"
merge_window = "PT0S"
[stages.normal]
triage = "PT6S"
ack = "PT6S"
resolve = "PT6S"
feedback = "PT6S"
supervise = "PT4S"
[stages.urgent]
triage = "PT6S"
ack = "PT6S"
resolve = "PT6S"
feedback = "PT6S"
supervise = "PT4S"
"""
LADDER = timedelta(seconds=14)  # from dispatch to the top breach


@pytest.fixture(scope="module")
def sla_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with own_broker(tmp_path_factory, "sla") as b:
        yield b


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    f = tmp_path_factory.mktemp("sla-policy") / "policy.toml"
    f.write_text(POLICY, encoding="utf-8")
    return f


def new_worker(broker: EmbeddedBroker, policy: Path, tmp: Path, name: str) -> Worker:
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    return Worker(broker.bootstrap, free_port(), d / "data", d / "worker.log",
                  env={"ZHIDA_POLICY": str(policy)})


@pytest_asyncio.fixture(loop_scope="session")
async def out(sla_broker: EmbeddedBroker) -> AsyncIterator[Collector]:
    async with collecting(sla_broker.bootstrap) as c:
        yield c


async def open_cases(out: Collector, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        cid = f"sla-{uuid.uuid4().hex[:10]}"
        await out.send(NAMES.complaints, {
            "complaint_id": cid, "channel": "hotline", "category": "road_damage",
            "description": "路面塌陷", "location": {"unit": STREET},
            "reported_at": datetime.now(UTC).isoformat()}, key=cid)
        ids.append(case_id_for("complaint", cid))
    await out.wait_for(lambda: all(out.where(NAMES.case_events, case_id=c, type="dispatched")
                                   for c in ids), timeout=30)
    return ids


def ladder_of(out: Collector, case_id: str) -> list[dict[str, Any]]:
    """The case's distinct events (copies with one event_id counted once)."""
    seen: dict[str, dict[str, Any]] = {}
    for r in out.where(NAMES.case_events, case_id=case_id):
        seen.setdefault(r.value["event_id"], r.value)
    return sorted(seen.values(), key=lambda e: e["seq"])


def reached_top(out: Collector, ids: list[str]) -> bool:
    return all(any(e.get("top") for e in ladder_of(out, c)) for c in ids)


def assert_ladder_once(out: Collector, case_id: str) -> None:
    events = ladder_of(out, case_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "seq gap"
    kinds = [(e["type"], e.get("escalation_level")) for e in events
             if e["type"] in ("warned", "escalated")]
    assert kinds == [("warned", 0), ("escalated", 1), ("escalated", 2), ("escalated", 3)], kinds
    esc = [e for e in events if e["type"] == "escalated"]
    assert [(e["late_unit"], e.get("supervisor")) for e in esc] == [
        (STREET, DISTRICT), (DISTRICT, CITY), (CITY, None)]
    orders = Counter((r.value["kind"], r.value["target"], r.value["order_id"])
                     for r in out.records if r.topic.startswith(NAMES.prefix + "dispatch.")
                     and r.value.get("case_id") == case_id)
    distinct = Counter((k, t) for k, t, _ in orders)
    assert distinct == Counter({("case", STREET): 1, ("reminder", STREET): 1,
                                ("supervision", DISTRICT): 1, ("supervision", CITY): 1})


async def wait_past(out: Collector, instant: datetime, timeout: float) -> None:
    """Wait until wall time is past ``instant`` (the condition is the clock itself)."""
    await out.wait_for(lambda: datetime.now(UTC) > instant, timeout=timeout)


async def test_reminder_then_district_then_city_each_once(
        sla_broker: EmbeddedBroker, policy_file: Path, tmp_path: Path, out: Collector) -> None:
    w = new_worker(sla_broker, policy_file, tmp_path, "w").start()
    try:
        ids = await open_cases(out, 5)
        held = ids.pop()  # suspended at once: its clock stops, nothing escalates
        await out.send(NAMES.unit_updates, {
            "update_id": uuid.uuid4().hex, "actor": STREET, "action": "suspend",
            "case_id": held, "reason": "等待审批", "at": datetime.now(UTC).isoformat(),
            "until": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, key=held)
        await out.wait_for(lambda: reached_top(out, ids), timeout=40)
        for c in ids:
            assert_ladder_once(out, c)
        assert [e["type"] for e in ladder_of(out, held)] == ["created", "dispatched",
                                                              "suspended"]
        assert w.metric("zhida_timer_firings_total", kind="supervise") >= 2 * len(ids)
    finally:
        w.stop()


async def test_deadlines_passed_while_killed_fire_once_on_recovery(
        sla_broker: EmbeddedBroker, policy_file: Path, tmp_path: Path, out: Collector) -> None:
    w = new_worker(sla_broker, policy_file, tmp_path, "w").start()
    try:
        ids = await open_cases(out, 5)
        os.killpg(w.proc.pid, signal.SIGKILL)
        w.proc.wait()
        # every level falls due while no worker runs
        await wait_past(out, datetime.now(UTC) + LADDER, timeout=30)
        w.start()
        await out.wait_for(lambda: reached_top(out, ids), timeout=30)
        for c in ids:
            assert_ladder_once(out, c)
    finally:
        w.stop()


async def test_two_workers_and_a_rebalance_fire_each_once(
        sla_broker: EmbeddedBroker, policy_file: Path, tmp_path: Path, out: Collector) -> None:
    a = new_worker(sla_broker, policy_file, tmp_path, "a").start()
    b = new_worker(sla_broker, policy_file, tmp_path, "b")
    try:
        ids = await open_cases(out, 8)
        b.start()  # the group splits the partitions between a and b
        await wait_past(out, datetime.now(UTC) + timedelta(seconds=4), timeout=10)
        a.stop()  # and b takes them all
        await out.wait_for(lambda: reached_top(out, ids), timeout=45)
        for c in ids:
            assert_ladder_once(out, c)
    finally:
        a.stop()
        b.stop()


async def test_a_directive_target_that_never_signs_climbs_once_per_level(
        sla_broker: EmbeddedBroker, policy_file: Path, tmp_path: Path, out: Collector) -> None:
    """ack_within 6 s: reminder at 3 s, the district supervises at 6 s, the city at 10 s,
    the city's own breach at 14 s; the other target signs and is never escalated."""
    w = new_worker(sla_broker, policy_file, tmp_path, "w").start()
    try:
        did = f"D-{uuid.uuid4().hex[:8]}"
        signer = "500103003"
        await out.send(NAMES.directives, {
            "directive_id": did, "issuer": CITY, "title": "排查", "body": "排查",
            "targets": {"units": [STREET, signer]}, "ack_within": "PT6S",
            "issued_at": datetime.now(UTC).isoformat()}, key=did)
        await out.wait_for(lambda: out.where(NAMES.directive_events, directive_id=did,
                                             type="delivered", target=signer), timeout=20)
        await out.send(NAMES.unit_updates, {
            "update_id": uuid.uuid4().hex, "actor": signer, "action": "ack",
            "directive_id": did, "at": datetime.now(UTC).isoformat()}, key=did)

        def events() -> list[dict[str, Any]]:
            seen: dict[str, dict[str, Any]] = {}
            for r in out.where(NAMES.directive_events, directive_id=did):
                seen.setdefault(r.value["event_id"], r.value)
            return sorted(seen.values(), key=lambda e: e["seq"])

        await out.wait_for(lambda: any(e.get("top") for e in events()), timeout=40)
        ev = events()
        assert [e["seq"] for e in ev] == list(range(1, len(ev) + 1))
        ladder = [(e["type"], e.get("late_unit"), e.get("supervisor"), e["escalation_level"])
                  for e in ev if e["type"] in ("warned", "escalated")]
        assert ladder == [("warned", STREET, None, 0), ("escalated", STREET, DISTRICT, 1),
                          ("escalated", DISTRICT, CITY, 2), ("escalated", CITY, None, 3)]
        distinct = {r.value["order_id"]: r.value for r in out.records
                    if r.topic.startswith(NAMES.prefix + "dispatch.")
                    and r.value.get("directive_id") == did}  # copies share an order_id
        assert Counter((o["kind"], o["target"]) for o in distinct.values()) == Counter({
            ("directive", STREET): 1, ("directive", signer): 1, ("reminder", STREET): 1,
            ("supervision", DISTRICT): 1, ("supervision", CITY): 1})
    finally:
        w.stop()
