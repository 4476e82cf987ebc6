"""The closed loop on the real broker: intake → dispatch → ack → resolve → rating → closed."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from cloudevents.v1.kafka import KafkaMessage, from_binary

from engine.core.ids import case_id_for
from tests.support.broker import NAMES, Collector, Worker
from tests.support.helpers import DISTRICT, STREET
from tests.support.messages import complaint, open_case, update

pytestmark = pytest.mark.integration


async def test_complaint_reaches_the_district_topic_within_a_second(
        kafka: Collector, worker: Worker) -> None:
    c = complaint()
    started = time.monotonic()
    await kafka.send(NAMES.complaints, c, key=c["complaint_id"])
    case_id = case_id_for("complaint", c["complaint_id"])
    [order] = await kafka.wait_for(lambda: kafka.where(NAMES.dispatch(DISTRICT), case_id=case_id))
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"dispatch took {elapsed:.3f}s"
    assert order.key == STREET
    o = order.value
    assert o["kind"] == "case" and o["target"] == STREET and o["stage"] == "ack"
    assert o["escalation_level"] == 0 and o["due"] and o["category"] == "road_damage"
    assert o["citizen"] == {"name": "李四", "phone": "13900139000"}
    # CloudEvents binary mode, readable by the reference SDK
    assert order.headers["ce_specversion"] == b"1.0"
    ev = from_binary(KafkaMessage(headers=order.headers, key=order.key.encode(),
                                  value=orjson.dumps(o)))
    assert ev["id"] == o["order_id"] and ev["type"] and ev["source"]
    assert order.headers["content-type"] == b"application/json"


async def test_the_whole_loop_closes_with_gap_free_events(kafka: Collector) -> None:
    case_id, c = await open_case(kafka)
    for action in ("ack", "progress", "resolve"):
        await kafka.send(NAMES.unit_updates, update(case_id, STREET, action, note="处理中"),
                         key=case_id)
    note = await kafka.wait_for(lambda: kafka.where(NAMES.notifications, case_id=case_id,
                                                    kind="resolved"))
    assert note[0].value["ask_rating"] is True
    assert note[0].value["complaint_id"] == c["complaint_id"]
    await kafka.send(NAMES.citizen_feedback, {"feedback_id": uuid.uuid4().hex,
                                              "case_id": case_id, "rating": "satisfied",
                                              "at": "2026-11-23T12:00:00+08:00"}, key=case_id)
    events = await kafka.events(case_id, 7)
    assert [e["type"] for e in events] == ["created", "dispatched", "acknowledged", "progress",
                                           "resolved", "rated", "closed"]
    assert [e["seq"] for e in events] == list(range(1, 8))
    assert events[-1]["state"] == "closed" and events[-1]["outcome"] == "satisfied"
    for e in events:  # no personal data on the audit trail
        text = orjson.dumps(e).decode()
        assert "13900139000" not in text and "李四" not in text and "13800138000" not in text
        assert e["event_id"] == f"{case_id}/{e['seq']}"
    # the notification topic is read apart from case.events: wait for its last one too
    await kafka.wait_for(lambda: kafka.where(NAMES.notifications, case_id=case_id,
                                             kind="closed"))
    kinds = [r.value["kind"] for r in kafka.where(NAMES.notifications, case_id=case_id)]
    assert kinds == ["received", "resolved", "closed"]


async def test_sensed_alarm_is_dispatched_and_closed_by_verification(kafka: Collector) -> None:
    alarm = {"event_id": f"ev-{uuid.uuid4().hex[:10]}", "sensor_id": "wl-500103-7",
             "kind": "waterlogging", "severity": "critical", "location": {"unit": STREET},
             "observed_at": "2026-11-23T09:00:00+08:00", "value": 32.5, "unit": "cm"}
    await kafka.send(NAMES.sensed, alarm, key=alarm["sensor_id"])
    case_id = case_id_for("sensed", alarm["event_id"])
    events = await kafka.events(case_id, 2)
    assert events[1]["type"] == "dispatched" and events[1]["priority"] == "urgent"
    for actor, action in ((STREET, "ack"), (STREET, "resolve"), (DISTRICT, "verify")):
        await kafka.send(NAMES.unit_updates, update(case_id, actor, action), key=case_id)
    events = await kafka.events(case_id, 6)
    assert events[-1]["type"] == "closed" and events[-1]["outcome"] == "verified"
    assert not kafka.where(NAMES.notifications, case_id=case_id)


async def test_unplaceable_location_goes_to_city_triage(kafka: Collector) -> None:
    case_id, _ = await open_case(kafka, location={"lat": 39.9042, "lon": 116.4074})  # 北京
    [order] = await kafka.wait_for(lambda: kafka.where(NAMES.dispatch("city"), case_id=case_id))
    assert order.key == "500000"
    events = await kafka.events(case_id, 2)
    assert events[1]["type"] == "triaged" and events[1]["state"] == "triage"
    assert "outside Chongqing" in events[1]["reason"]


async def test_points_and_addresses_are_placed(kafka: Collector) -> None:
    # 解放碑, well inside 渝中区: no street polygons, so its district centre assigns it
    case_id, _ = await open_case(kafka, location={"lat": 29.5578, "lon": 106.5770})
    events = await kafka.events(case_id, 2)
    assert events[1]["type"] == "dispatched" and events[1]["unit"] == "500103"
    assert not events[1].get("boundary")
    # an address naming a street
    case_id, _ = await open_case(kafka, location={"address": "重庆市渝中区解放碑街道邹容路"})
    events = await kafka.events(case_id, 2)
    assert events[1]["type"] == "dispatched" and events[1]["unit"] == "500103003"


async def test_a_border_point_goes_to_the_city_with_boundary(kafka: Collector) -> None:
    # 朝天门: within 200 m of both 渝中区 and 江北区
    case_id, _ = await open_case(kafka, location={"lat": 29.5660, "lon": 106.5860})
    [order] = await kafka.wait_for(lambda: kafka.where(NAMES.dispatch("city"), case_id=case_id))
    assert order.key == "500000"
    events = await kafka.events(case_id, 2)
    assert events[1]["type"] == "dispatched" and events[1]["unit"] == "500000"
    assert all(e.get("boundary") is True for e in events)


async def test_duplicate_complaint_is_dropped_and_counted(kafka: Collector, worker: Worker
                                                          ) -> None:
    before = worker.metric("zhida_duplicates_total", kind="open")
    case_id, c = await open_case(kafka)
    await kafka.send(NAMES.complaints, c, key=c["complaint_id"])
    await kafka.wait_for(lambda: worker.metric("zhida_duplicates_total", kind="open") > before)
    assert len(kafka.where(NAMES.case_events, case_id=case_id)) == 2


async def test_bad_input_goes_to_the_dead_letter_topic(kafka: Collector, worker: Worker) -> None:
    key = f"bad-{uuid.uuid4().hex[:8]}"
    await kafka.send(NAMES.complaints, b"\xff\xfe{not json", key=key + "-decode")
    await kafka.send(NAMES.complaints, {"complaint_id": key}, key=key + "-schema")
    await kafka.send(NAMES.complaints, complaint(location={"unit": "500199999"}),
                     key=key + "-unit")
    await kafka.send(NAMES.complaints, b'{"x": "' + b"a" * 300_000 + b'"}', key=key + "-big")
    await kafka.send(NAMES.unit_updates, update("ZDNOSUCHCASE", STREET, "ack"),
                     key=key + "-case")
    letters = await kafka.wait_for(
        lambda: (r := [x for x in kafka.where(NAMES.deadletter)
                       if (x.key or "").startswith(key)]) and len(r) >= 5 and r)
    by_key = {r.key.rsplit("-", 1)[1]: r.value for r in letters}
    assert by_key["decode"]["reason"] == "decode"
    assert by_key["decode"]["original_base64"] and by_key["decode"]["original"] is None
    assert by_key["schema"]["reason"] == "schema" and "channel" in by_key["schema"]["detail"]
    assert by_key["schema"]["original"] == orjson.dumps({"complaint_id": key}).decode()
    assert by_key["unit"]["reason"] == "unknown_unit"
    assert by_key["big"]["reason"] == "oversize"
    assert by_key["case"]["reason"] == "unknown_case"
    for v in by_key.values():
        assert v["source_topic"] in (NAMES.complaints, NAMES.unit_updates)
        assert v["partition"] is not None and v["offset"] is not None
    assert worker.get("/healthz")[0] == 200


async def test_unauthorized_update_is_refused_and_changes_nothing(kafka: Collector) -> None:
    case_id, _ = await open_case(kafka)
    forged = update(case_id, "500104001", "ack")  # a street of another district
    await kafka.send(NAMES.unit_updates, forged, key=case_id)
    [letter] = await kafka.wait_for(
        lambda: [r for r in kafka.where(NAMES.deadletter, reason="unauthorized")
                 if orjson.loads(r.value["original"])["update_id"] == forged["update_id"]])
    assert case_id in letter.value["detail"]
    await kafka.send(NAMES.unit_updates, update(case_id, STREET, "ack"), key=case_id)
    events = await kafka.events(case_id, 3)
    assert [e["type"] for e in events] == ["created", "dispatched", "acknowledged"]


async def test_http_endpoints(kafka: Collector, worker: Worker) -> None:
    case_id, _ = await open_case(kafka)
    status, body = worker.get(f"/cases/{case_id}")
    assert status == 200
    case = orjson.loads(body)
    assert case["state"] == "dispatched" and case["unit"] == STREET
    assert [e["type"] for e in case["history"]] == ["created", "dispatched"]
    assert case["deadlines"][0]["stage"] == "ack" and case["deadlines"][0]["due"] == case["due"]
    assert case["co_handlers"] == []
    text = body.decode()
    assert "13900139000" not in text and "李四" not in text and "139****9000" in text
    assert worker.get("/cases/ZDUNKNOWN")[0] == 404
    status, body = worker.get("/catalogue")
    codes = {c["code"]: c for c in orjson.loads(body)}
    assert codes["waterlogging"]["source"] == "sensed"
    assert {"code", "name", "source", "owner", "priority"} <= set(codes["noise"])
    status, body = worker.get("/metrics")
    assert status == 200 and b"zhida_case_events_total" in body
    assert worker.get("/readyz")[0] == 200 and worker.get("/healthz")[0] == 200
