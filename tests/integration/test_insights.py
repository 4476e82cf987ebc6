"""每月一题 hotspots, 扯皮 disputes, rulings and precedents on the real broker (issue 26).

The session's worker (merging off, hotspots at the default: 5 reports within 7 days): a
hotspot at a street and at a point, a dispute, its ruling, a case routed by the precedent,
its revocation with ``zhida precedents revoke``, and a SIGKILL in the middle of a ruling.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from engine.core.ids import case_id_for
from tests.support.broker import NAMES, TOPO, Collector, Worker

pytestmark = pytest.mark.integration

DISTRICT = "500103"  # 渝中区
STREETS = TOPO.streets_of(DISTRICT)
POINT = (29.5570, 106.5770)  # in 渝中区


def now() -> str:
    return datetime.now(UTC).isoformat()


async def complain(kafka: Collector, category: str, location: dict[str, Any],
                   phone: str | None = None) -> str:
    cid = f"i-{uuid.uuid4().hex[:10]}"
    body: dict[str, Any] = {"complaint_id": cid, "channel": "hotline", "category": category,
                            "description": "反复出现的问题", "location": location,
                            "reported_at": now()}
    if phone:
        body["citizen"] = {"name": "王五", "phone": phone}
    await kafka.send(NAMES.complaints, body, key=cid)
    return case_id_for("complaint", cid)


async def update(kafka: Collector, case_id: str, actor: str, action: str, **fields: Any
                 ) -> None:
    await kafka.send(NAMES.unit_updates, {"update_id": uuid.uuid4().hex, "actor": actor,
                                          "action": action, "case_id": case_id, "at": now(),
                                          **fields}, key=case_id)


def insights(kafka: Collector, **fields: Any) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for r in kafka.where(NAMES.insights, **fields):
        seen.setdefault(r.value["insight_id"], r.value)  # a resend carries the same id
    return list(seen.values())


def events(kafka: Collector, case_id: str) -> list[dict[str, Any]]:
    by_seq: dict[int, dict[str, Any]] = {}
    for r in kafka.where(NAMES.case_events, case_id=case_id):
        e = r.value
        assert by_seq.setdefault(e["seq"], e) == e, f"two bodies for seq {e['seq']}"
    assert sorted(by_seq) == list(range(1, len(by_seq) + 1)), "a gap in the seqs"
    return [by_seq[s] for s in sorted(by_seq)]


async def has_event(kafka: Collector, case_id: str, type_: str, timeout: float = 20,
                    **fields: Any) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((e for e in events(kafka, case_id) if e["type"] == type_
                     and all(e.get(k) == v for k, v in fields.items())), None)
    return await kafka.wait_for(found, timeout=timeout)


async def test_five_reports_at_a_street_raise_a_hotspot(worker: Worker, kafka: Collector
                                                        ) -> None:
    street = STREETS[6]
    phones = ["13700000001", "13700000001", "13700000002", None, "13700000003"]
    cases = [await complain(kafka, "street_vending", {"unit": street}, p) for p in phones]

    def raised() -> dict[str, Any] | None:
        return next(iter(insights(kafka, kind="hotspot", category="street_vending",
                                  place=street)), None)

    h = await kafka.wait_for(raised, timeout=20)
    assert h["unit"] == street and h["reports"] == 5 and h["cases"] == 5
    assert h["repeat_callers"] == 1 and h["reopened"] == 0
    assert "13700000001" not in str(kafka.where(NAMES.insights))  # no personal data
    await kafka.wait_for(lambda: all(kafka.where(NAMES.case_events, case_id=c, type="created")
                                     for c in cases), timeout=20)  # each its own case


async def test_reports_close_to_one_point_raise_a_hotspot_at_the_cluster(
        worker: Worker, kafka: Collector) -> None:
    lat, lon = POINT
    sent = [lat + i * 15 / 111_000 for i in range(5)]  # 15 m apart: 60 m at the most
    for x in sent:
        await complain(kafka, "illegal_parking", {"lat": x, "lon": lon})

    def raised() -> dict[str, Any] | None:
        return next((h for h in insights(kafka, kind="hotspot", category="illegal_parking")
                     if isinstance(h["place"], dict)), None)

    h = await kafka.wait_for(raised, timeout=20)
    # the cluster's point: the first the group read (the intake's partitions interleave)
    assert h["place"]["lat"] in sent and h["place"]["lon"] == lon
    assert h["place"]["radius_m"] == 100.0 and h["reports"] == 5


async def dispute(kafka: Collector, category: str, first: str, second: str
                  ) -> tuple[str, dict[str, Any]]:
    """A case at ``first``, returned by it, assigned to ``second``, returned by it too."""
    case_id = await complain(kafka, category, {"unit": first})
    await has_event(kafka, case_id, "dispatched", unit=first)
    await update(kafka, case_id, first, "return", reason="不归我们管")
    await has_event(kafka, case_id, "returned", unit=DISTRICT)
    await update(kafka, case_id, DISTRICT, "assign", assign_to=second)
    await has_event(kafka, case_id, "assigned", unit=second)
    await update(kafka, case_id, second, "return", reason="也不归我们")
    d = await kafka.wait_for(lambda: next(iter(insights(kafka, kind="dispute",
                                                        case_id=case_id)), None), timeout=20)
    return case_id, d


def precedents(worker: Worker) -> dict[str, dict[str, Any]]:
    status, body = worker.get("/precedents")
    assert status == 200, body
    return {p["insight_id"]: p for p in orjson.loads(body)["precedents"]}


async def precedent(kafka: Collector, worker: Worker, ruling_id: str) -> dict[str, Any]:
    """The precedent once its group holds it (``GET /precedents``): a report sent after it
    is routed by it."""
    return await kafka.wait_for(lambda: precedents(worker).get(ruling_id), timeout=20)


def orders_to(kafka: Collector, case_id: str, target: str) -> list[dict[str, Any]]:
    return [r.value for r in kafka.records if r.topic == NAMES.dispatch(DISTRICT)
            and r.value.get("case_id") == case_id and r.value.get("target") == target]


async def zhida(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.tools.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_dispute_its_ruling_a_precedent_and_its_revocation(
        worker: Worker, kafka: Collector) -> None:
    first, second = STREETS[7], STREETS[8]
    case_id, d = await dispute(kafka, "noise", first, second)
    assert d["units"] == [first, second] and d["arbiter"] == DISTRICT
    assert d["category"] == "noise" and d["place"] == first
    await kafka.wait_for(lambda: [o for o in orders_to(kafka, case_id, DISTRICT)
                                  if o.get("dispute") is True], timeout=10)
    await update(kafka, case_id, DISTRICT, "assign", assign_to=second, note="归第二个街道")
    r = await kafka.wait_for(lambda: next(iter(insights(kafka, kind="ruling",
                                                        case_id=case_id)), None), timeout=20)
    assert (r["unit"], r["dispute_id"], r["place"]) == (second, d["insight_id"], first)

    p = await precedent(kafka, worker, r["insight_id"])
    assert (p["unit"], p["case_id"], p["place"], p["revoked_at"]) == (second, case_id, first,
                                                                      None)
    later = await complain(kafka, "noise", {"unit": first})  # the ruled place: to `second`
    e = await has_event(kafka, later, "dispatched")
    assert e["unit"] == second and e["precedent"] == r["insight_id"]

    bootstrap = worker.bootstrap
    rc, out, err = await zhida("precedents", "revoke", r["insight_id"], "--bootstrap",
                               bootstrap)
    assert rc == 0 and len(out.strip().splitlines()) == 1, err
    await kafka.wait_for(lambda: insights(kafka, kind="revoked", ruling_id=r["insight_id"]),
                         timeout=20)
    await kafka.wait_for(lambda: (precedents(worker).get(r["insight_id"]) or {}).get(
        "revoked_at"), timeout=20)
    after = await complain(kafka, "noise", {"unit": first})  # the rules again
    e = await has_event(kafka, after, "dispatched")
    assert e["unit"] == first and e.get("precedent") is None
    rc, _, err = await zhida("precedents", "revoke", "ruling/no-such", "--bootstrap",
                             bootstrap)
    assert rc == 2 and len(err.strip().splitlines()) == 1


async def test_a_sigkill_in_the_middle_of_a_ruling_loses_nothing_and_rules_once(
        worker: Worker, kafka: Collector) -> None:
    first, second = STREETS[9], STREETS[10]
    case_id, d = await dispute(kafka, "sanitation", first, second)
    await update(kafka, case_id, DISTRICT, "assign", assign_to=second)
    await update(kafka, case_id, DISTRICT, "assign", assign_to=second)  # sent twice
    worker.kill()  # at once: the ruling may be half written
    meanwhile = await complain(kafka, "sanitation", {"unit": first})  # while it is down
    await asyncio.to_thread(worker.restart)
    r = await kafka.wait_for(lambda: insights(kafka, kind="ruling", case_id=case_id),
                             timeout=30)
    assert len(r) == 1 and r[0]["unit"] == second and r[0]["dispute_id"] == d["insight_id"]
    await has_event(kafka, meanwhile, "dispatched", timeout=30)  # nothing lost
    await precedent(kafka, worker, r[0]["insight_id"])  # durable across the crash
    later = await complain(kafka, "sanitation", {"unit": first})
    e = await has_event(kafka, later, "dispatched")
    assert e["unit"] == second and e["precedent"] == r[0]["insight_id"]
    history = events(kafka, case_id)  # no gap, no fork
    # the district's assign in the dispute and the ruling; the repeat is refused (held)
    assert [x["type"] for x in history].count("assigned") == 2
    assert len(insights(kafka, kind="dispute", case_id=case_id)) == 1
