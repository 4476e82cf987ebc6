"""Directives on the real broker: the fan-out to every street, acks and reports, refusals."""

from __future__ import annotations

import urllib.parse
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from engine.runtime.store import partition_of
from tests.support.broker import NAMES, TOPO, Collector, Worker

pytestmark = pytest.mark.integration

CITY, DISTRICT, STREET = "500000", "500103", "500103001"


def directive(targets: dict[str, Any], issuer: str = CITY, **extra: Any) -> dict[str, Any]:
    return {"directive_id": f"D-{uuid.uuid4().hex[:10]}", "issuer": issuer,
            "title": "汛期安全隐患排查", "body": "请于今日内完成辖区排查并反馈。",
            "targets": targets, "ack_within": "PT2H",
            "issued_at": datetime.now(UTC).isoformat(), **extra}


def update(did: str, actor: str, action: str, **extra: Any) -> dict[str, Any]:
    return {"update_id": uuid.uuid4().hex, "actor": actor, "action": action,
            "directive_id": did, "at": datetime.now(UTC).isoformat(), **extra}


def tasks_out(kafka: Collector, did: str) -> list[Any]:
    return [r for r in kafka.records if r.topic.startswith(NAMES.prefix + "dispatch.")
            and r.value.get("directive_id") == did and r.value["kind"] == "directive"]


def directive_events(kafka: Collector, did: str) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for r in kafka.where(NAMES.directive_events, directive_id=did):
        seen.setdefault(r.value["event_id"], r.value)
    return sorted(seen.values(), key=lambda e: e["seq"])


def dead(kafka: Collector, key: str) -> list[dict[str, Any]]:
    return [r.value for r in kafka.where(NAMES.deadletter) if r.key == key]


async def test_all_streets_get_one_task_each_and_acks_show(worker: Worker,
                                                            kafka: Collector) -> None:
    d = directive({"level": "street"}, report_by="2099-01-01T00:00:00+08:00")
    did = d["directive_id"]
    await kafka.send(NAMES.directives, d, key=did)
    await kafka.wait_for(lambda: len({r.value["order_id"] for r in tasks_out(kafka, did)})
                         >= 1031, timeout=60)
    orders = {r.value["order_id"]: r for r in tasks_out(kafka, did)}
    assert len(orders) == 1031
    by_target = Counter(r.key for r in orders.values())
    assert set(by_target) == set(TOPO.streets) and max(by_target.values()) == 1
    for r in orders.values():
        assert r.topic == NAMES.dispatch(TOPO.district_of(r.key))
        assert r.value["stage"] == "ack" and r.value["issuer"] == CITY
        assert r.value["summary"] == d["title"] and r.value["due"]
    # two streets sign, one reports; a district acts for one of its streets
    s1, s2, s3 = TOPO.streets_of(DISTRICT)[:3]
    for body in (update(did, s1, "ack"), update(did, s2, "ack"),
                 update(did, s2, "report", note="已排查 12 处"),
                 update(did, DISTRICT, "ack", target=s3)):
        await kafka.send(NAMES.unit_updates, body, key=did)
    await kafka.wait_for(lambda: sum(e["type"] == "acknowledged"
                                     for e in directive_events(kafka, did)) >= 3, timeout=20)
    await kafka.wait_for(lambda: any(e["type"] == "reported"
                                     for e in directive_events(kafka, did)), timeout=20)
    events = directive_events(kafka, did)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert Counter(e["type"] for e in events) == Counter(
        {"issued": 1, "delivered": 1031, "acknowledged": 3, "reported": 1})
    status, body = worker.get(f"/directives/{did}")
    assert status == 200
    s = orjson.loads(body)
    assert (s["targets"], s["delivered"], s["acknowledged"], s["reported"]) == (1031, 1031, 3, 1)
    assert s["ack_ratio"] == round(3 / 1031, 4) and s["fully_acknowledged_at"] is None
    assert s["issuer"] == CITY and len(s["tasks"]) == 1031
    t = {x["target"]: x for x in s["tasks"]}
    assert t[s1]["state"] == "acknowledged" and t[s1]["acknowledged_at"]
    assert t[s2]["state"] == "reported" and t[s2]["reported_at"]
    assert t[s3]["state"] == "acknowledged"
    assert t[TOPO.streets[-1]]["state"] == "delivered" and not t[TOPO.streets[-1]]["late"]
    assert worker.get("/directives/nope")[0] == 404
    # the issuer's directive figures (GET /units/{code}/stats)
    status, body = worker.get(f"/units/{CITY}/stats")
    fig = orjson.loads(body)["directives"]
    assert status == 200 and fig["issued"] >= 1 and fig["tasks"] >= 1031
    assert fig["acknowledged"] >= 3 and 0 < fig["ack_ratio"] <= 1


async def test_refusals_are_dead_lettered_with_the_contract_reasons(worker: Worker,
                                                                    kafka: Collector) -> None:
    out_of_scope = directive({"units": ["500104001"]}, issuer=DISTRICT)
    unknown = directive({"units": [STREET, "500199999"]})
    street_issuer = directive({"units": [STREET]}, issuer=STREET)
    for d in (out_of_scope, unknown, street_issuer):
        await kafka.send(NAMES.directives, d, key=d["directive_id"])
    await kafka.send(NAMES.directives, b"\xff\xfe{not json", key="hostile-1")
    await kafka.send(NAMES.directives, {"directive_id": "x", "issuer": CITY}, key="hostile-2")
    unknown_ack = update("D-never-issued", STREET, "ack")
    await kafka.send(NAMES.unit_updates, unknown_ack, key="D-never-issued")
    await kafka.wait_for(lambda: all(dead(kafka, k) for k in (
        out_of_scope["directive_id"], unknown["directive_id"], street_issuer["directive_id"],
        "hostile-1", "hostile-2", "D-never-issued")), timeout=20)
    assert dead(kafka, out_of_scope["directive_id"])[0]["reason"] == "unauthorized"
    u = dead(kafka, unknown["directive_id"])[0]
    assert u["reason"] == "unknown_unit" and "500199999" in u["detail"]
    assert dead(kafka, street_issuer["directive_id"])[0]["reason"] == "unauthorized"
    h = dead(kafka, "hostile-1")[0]
    assert h["reason"] == "decode" and h["original_base64"]
    assert dead(kafka, "hostile-2")[0]["reason"] == "schema"
    assert dead(kafka, "D-never-issued")[0]["reason"] == "unknown_case"
    # nothing was fanned out for any of them
    for d in (out_of_scope, unknown, street_issuer):
        assert not tasks_out(kafka, d["directive_id"])


def status(worker: Worker, did: str) -> tuple[int, bytes]:
    return worker.get(f"/directives/{urllib.parse.quote(did, safe='')}")


def ids_on_one_partition(suffix: str) -> tuple[str, str]:
    """A directive id ``X`` and ``X<suffix>`` that murmur2 puts on one partition of the
    command log for every count of partitions up to 8 (the worker's is 4)."""
    while True:
        x = f"D-{uuid.uuid4().hex[:10]}"
        if all(partition_of(x, n) == partition_of(x + suffix, n) for n in range(1, 9)):
            return x, x + suffix


async def test_a_directive_id_holding_the_key_separator_keeps_its_tasks_apart(
        worker: Worker, kafka: Collector) -> None:
    """``X|<street>`` on ``X``'s partition: its tasks were stored under ``k:X|<street>|..``,
    which the prefix read of ``X``'s tasks (``k:X|``) took for its own (issue 22)."""
    s1, s2, s3 = TOPO.streets_of(DISTRICT)[:3]
    x, y = ids_on_one_partition(f"|{s1}")
    await kafka.send(NAMES.directives, {**directive({"units": [s3]}), "directive_id": y}, key=y)
    await kafka.wait_for(lambda: status(worker, y)[0] == 200, timeout=20)
    await kafka.send(NAMES.directives, {**directive({"units": [s1, s2]}), "directive_id": x},
                     key=x)
    await kafka.wait_for(lambda: status(worker, x)[0] == 200, timeout=20)
    sx, sy = (orjson.loads(status(worker, did)[1]) for did in (x, y))
    assert sorted(t["target"] for t in sx["tasks"]) == [s1, s2]
    assert (sx["targets"], sx["delivered"]) == (2, 2)
    assert [t["target"] for t in sy["tasks"]] == [s3]
    assert (sy["targets"], sy["delivered"]) == (1, 1)
    # an ack for X's task is X's alone
    await kafka.send(NAMES.unit_updates, update(x, s1, "ack"), key=x)
    await kafka.wait_for(lambda: any(e["type"] == "acknowledged"
                                     for e in directive_events(kafka, x)), timeout=20)
    await kafka.wait_for(lambda: orjson.loads(status(worker, x)[1])["acknowledged"] == 1,
                         timeout=20)
    assert orjson.loads(status(worker, y)[1])["acknowledged"] == 0
