"""GET /units/{code}/stats on the real broker: the writer's counters, rolled up street →
district → city, moved exactly by a small hand-computed scenario (deltas: the session's worker
is shared with other tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from engine.core.ids import case_id_for
from tests.support.broker import NAMES, TOPO, Collector, Worker

pytestmark = pytest.mark.integration

CITY = "500000"
FIELDS = ("received", "responded", "resolved", "rated", "satisfied", "reopened", "backlog")


def stats(worker: Worker, unit: str) -> dict[str, Any]:
    status, body = worker.get(f"/units/{unit}/stats")
    assert status == 200, body
    return orjson.loads(body)


async def until(kafka: Collector, case_id: str, type_: str) -> None:
    await kafka.wait_for(lambda: kafka.where(NAMES.case_events, case_id=case_id, type=type_),
                         timeout=20)


async def test_figures_of_a_street_its_district_and_the_city(worker: Worker,
                                                             kafka: Collector) -> None:
    district = "500104"  # 大渡口区: quiet in the other tests
    street = TOPO.streets_of(district)[-1]
    before = {u: stats(worker, u) for u in (street, district, CITY)}
    now = datetime.now(UTC).isoformat()
    ids = []
    for _ in range(3):
        cid = f"fig-{uuid.uuid4().hex[:8]}"
        await kafka.send(NAMES.complaints, {
            "complaint_id": cid, "channel": "app", "category": "road_damage",
            "description": "路面坑洼", "location": {"unit": street}, "reported_at": now}, key=cid)
        ids.append(case_id_for("complaint", cid))
    for c in ids:
        await until(kafka, c, "dispatched")

    async def update(case_id: str, action: str, then: str) -> None:
        await kafka.send(NAMES.unit_updates, {
            "update_id": uuid.uuid4().hex, "actor": street, "action": action,
            "case_id": case_id, "at": datetime.now(UTC).isoformat()}, key=case_id)
        await until(kafka, case_id, then)

    # case 0: acked, resolved, rated satisfied (closed); case 1: acked, resolved, rated
    # unsatisfied (reopened: a new order to the street); case 2: left dispatched
    for c in ids[:2]:
        await update(c, "ack", "acknowledged")
        await update(c, "resolve", "resolved")
    for c, rating, then in ((ids[0], "satisfied", "closed"), (ids[1], "unsatisfied",
                                                              "reopened")):
        await kafka.send(NAMES.citizen_feedback, {
            "feedback_id": uuid.uuid4().hex, "case_id": c, "rating": rating,
            "at": datetime.now(UTC).isoformat()}, key=c)
        await until(kafka, c, then)
    expected = {"received": 4, "responded": 2, "resolved": 2, "rated": 2, "satisfied": 1,
                "reopened": 1, "backlog": 2}  # orders: 3 dispatches + 1 reopening

    def moved(unit: str) -> dict[str, int]:
        after = stats(worker, unit)
        return {k: after[k] - before[unit][k] for k in FIELDS}

    await kafka.wait_for(lambda: moved(street) == expected, timeout=10)
    for unit in (district, CITY):
        assert moved(unit) == expected, unit
    s = stats(worker, street)
    assert s["unit"] == street and s["response_rate"] is not None
    # one worker holds every partition: the whole city is counted, as of this answer
    assert s["coverage"]["counted"] == s["coverage"]["partitions"] == len(s["partitions"]) == 4
    assert datetime.fromisoformat(s["coverage"]["as_of"]).tzinfo is not None
    d = stats(worker, district)
    assert street in {c["unit"] for c in d["children"]}
    assert worker.get("/units/999999/stats")[0] == 404
    assert worker.get(f"/units/{street}/stats?from=nonsense")[0] == 400
