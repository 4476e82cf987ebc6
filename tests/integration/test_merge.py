"""一事多诉 and alarm storms on the real broker, with the default policy (merging on).

Own broker and worker: the session's worker runs with merging off (tests/data/no-merge.toml).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from engine.core.ids import case_id_for
from engine.tools.broker import EmbeddedBroker, free_port
from tests.support.broker import NAMES, TOPO, Collector, Worker, collecting, own_broker

pytestmark = pytest.mark.integration

DISTRICT = "500103"  # 渝中区
STREET = "500103001"
POLICY = """
[policy]
merge_window = "PT2H"
storm_alarms_per_minute = 200
"""


@pytest.fixture(scope="module")
def merge_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with own_broker(tmp_path_factory, "merge") as b:
        yield b


@pytest.fixture(scope="module")
def worker(merge_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Worker]:
    d = tmp_path_factory.mktemp("merge-worker")
    policy = d / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    w = Worker(merge_broker.bootstrap, free_port(), d / "data", d / "worker.log",
               env={"ZHIDA_POLICY": str(policy)}).start()
    yield w
    w.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def out(merge_broker: EmbeddedBroker, worker: Worker) -> AsyncIterator[Collector]:
    async with collecting(merge_broker.bootstrap) as c:
        yield c


def now() -> str:
    return datetime.now(UTC).isoformat()


def duplicates(worker: Worker) -> float:
    return sum(worker.metric("zhida_duplicates_total", kind=k) for k in ("open", "join"))


def events_of(out: Collector, case_id: str) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for r in out.where(NAMES.case_events, case_id=case_id):
        seen.setdefault(r.value["event_id"], r.value)
    return sorted(seen.values(), key=lambda e: e["seq"])


async def test_three_complaints_one_case_three_complainants_notified(
        worker: Worker, out: Collector) -> None:
    street = TOPO.streets_of(DISTRICT)[4]
    ids = [f"m-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for cid in ids:  # sent together: the group serialises them
        await out.send(NAMES.complaints, {
            "complaint_id": cid, "channel": "hotline", "category": "street_lighting",
            "description": "路灯不亮", "location": {"unit": street}, "reported_at": now(),
            "citizen": {"name": "李四", "phone": "13900001111"}}, key=cid)
    own = [case_id_for("complaint", c) for c in ids]

    def the_case() -> str | None:  # whichever reached the group first opened it
        opened = [c for c in own if out.where(NAMES.case_events, case_id=c, type="created")]
        return opened[0] if len(opened) == 1 and sum(
            e["type"] == "merged" for e in events_of(out, opened[0])) >= 2 else None

    case_id = await out.wait_for(the_case, timeout=20)
    ev = events_of(out, case_id)
    assert [e["complainants"] for e in ev if e["type"] == "merged"] == [2, 3]
    for other in set(own) - {case_id}:  # no case of their own
        assert not out.where(NAMES.case_events, case_id=other)

    def orders_of() -> set[str]:
        return {r.value["order_id"] for r in out.records
                if r.topic.startswith(NAMES.prefix + "dispatch.")
                and r.value.get("case_id") == case_id}

    # the order may be read after the events: the collector fetches every topic on its own
    orders = await out.wait_for(orders_of, timeout=10)
    assert len(orders) == 1
    for action in ("ack", "resolve"):
        await out.send(NAMES.unit_updates, {
            "update_id": uuid.uuid4().hex, "actor": street, "action": action,
            "case_id": case_id, "at": now()}, key=case_id)
    await out.wait_for(lambda: {r.value["complaint_id"] for r in out.where(
        NAMES.notifications, case_id=case_id, kind="resolved")} == set(ids), timeout=20)
    status, _ = worker.get(f"/cases/{case_id}")
    assert status == 200


async def test_an_alarm_storm_is_one_order_per_case_and_every_alarm_accounted(
        worker: Worker, out: Collector) -> None:
    """500 alarms from 300 sensors in one district (some event ids sent twice)."""
    streets = TOPO.streets_of(DISTRICT)
    sensors = [(f"ws-{uuid.uuid4().hex[:6]}-{i}", streets[i % len(streets)])
               for i in range(300)]
    before = {k: worker.metric("zhida_merges_total", outcome=k) for k in ("joined", "opened")}
    dup0 = duplicates(worker)
    storms0 = worker.metric("zhida_alarm_storms_total")
    sent: list[dict[str, Any]] = []
    for i in range(480):
        sensor, street = sensors[i % 300]
        sent.append({"event_id": f"ev-{uuid.uuid4().hex}", "sensor_id": sensor,
                     "kind": "waterlogging", "severity": "critical" if i % 50 == 0
                     else "warning", "location": {"unit": street}, "observed_at": now(),
                     "value": 30 + i % 20, "unit": "cm"})
    sent += sent[:20]  # 20 repeats of an event id: duplicates, counted
    for body in sent:
        await out.send(NAMES.sensed, body, key=body["sensor_id"])

    def accounted() -> float:
        return (sum(worker.metric("zhida_merges_total", outcome=k) - before[k]
                    for k in before) + duplicates(worker) - dup0)

    await out.wait_for(lambda: accounted() >= 500, timeout=60)
    joined = worker.metric("zhida_merges_total", outcome="joined") - before["joined"]
    opened = worker.metric("zhida_merges_total", outcome="opened") - before["opened"]
    dups = duplicates(worker) - dup0
    assert joined + opened + dups == 500, (joined, opened, dups)
    assert opened == len(streets)  # one case per street and kind
    cases = {case_id_for("sensed", b["event_id"]) for b in sent}
    opened_ids = {r.value["case_id"] for r in out.where(NAMES.case_events, type="created")
                  if r.value["case_id"] in cases}
    await out.wait_for(lambda: len({r.value["order_id"] for r in out.records
                                    if r.topic == NAMES.dispatch(DISTRICT)
                                    and r.value.get("case_id") in opened_ids
                                    and r.value["kind"] == "case"}) >= len(opened_ids),
                       timeout=20)
    orders = Counter(r.value["case_id"] for r in out.records
                     if r.topic == NAMES.dispatch(DISTRICT) and r.value["kind"] == "case"
                     and r.value.get("case_id") in opened_ids)
    assert len(opened_ids) == opened and set(orders) == opened_ids
    urgent = [r.value for r in out.where(NAMES.case_events, type="merged")
              if r.value["case_id"] in opened_ids and r.value.get("priority") == "urgent"]
    assert urgent or all(r.value["priority"] == "urgent" for r in out.where(
        NAMES.case_events, type="created") if r.value["case_id"] in opened_ids)
    assert worker.metric("zhida_alarm_storms_total") == storms0 + 1  # reported once
    assert "alarm_storm" in worker.log_tail(10**6)
