"""The contract seen by an independent client (librdkafka via confluent-kafka), not aiokafka."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from engine.core.ids import case_id_for
from tests.support.broker import NAMES, Worker

pytestmark = pytest.mark.integration


def test_a_librdkafka_client_sees_the_dispatch_order_with_cloudevents_headers(
        worker: Worker) -> None:
    street, district = "500106001", "500106"  # 沙坪坝区
    complaint_id = f"rd-{uuid.uuid4().hex[:10]}"
    consumer = Consumer({"bootstrap.servers": worker.bootstrap, "group.id": f"cc-{complaint_id}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 20})
    topic = NAMES.dispatch(district)
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.incremental_assign([TopicPartition(topic, p, -1) for p in parts])  # from the end
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not consumer.assignment():
            consumer.poll(0.05)
        producer = Producer({"bootstrap.servers": worker.bootstrap})
        body = {"complaint_id": complaint_id, "channel": "web", "category": "noise",
                "description": "夜间施工噪声", "location": {"unit": street},
                "reported_at": "2026-11-23T23:10:00+08:00"}
        consumer.poll(0.5)  # let the consumer resolve its end offsets before producing
        producer.produce(NAMES.complaints, key=complaint_id, value=orjson.dumps(body))
        producer.flush(10)
        case_id = case_id_for("complaint", complaint_id)
        found = None
        deadline = time.monotonic() + 15
        while found is None and time.monotonic() < deadline:
            m = consumer.poll(0.2)
            if m is not None and not m.error():
                value = orjson.loads(m.value())
                if value.get("case_id") == case_id:
                    found = m
        assert found is not None, "no dispatch order seen by the librdkafka client"
        assert found.key() == street.encode()
        headers = dict(found.headers())
        assert headers["ce_specversion"] == b"1.0"
        assert headers["ce_type"] and headers["ce_source"] and headers["ce_time"]
        assert headers["content-type"] == b"application/json"
        order = orjson.loads(found.value())
        assert headers["ce_id"].decode() == order["order_id"]
        assert order["kind"] == "case" and order["target"] == street and order["citizen"] is None
    finally:
        consumer.close()
