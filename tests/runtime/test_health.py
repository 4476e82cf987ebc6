"""Readiness from broker probes and consumer offsets; the log rate limit; faust's pages off."""

from __future__ import annotations

import logging
import types
from typing import Any

import faust
import pytest

from engine.runtime.health import Health, Partition
from engine.runtime.http.routes import drop_faust_pages
from engine.runtime.logfilter import ATTR, RateLimit, add_suppressed
from engine.runtime.metrics import CONSUMED_TOPICS, Metrics


class FakeTopic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


def engine(ready: bool = True) -> Any:
    topics = {k: FakeTopic(f"zhida.{k}") for k in CONSUMED_TOPICS}
    return types.SimpleNamespace(ready=ready, metrics=Metrics(), topics=topics)


def health(e: Any | None = None) -> Health:
    return Health(e or engine(), interval=2, broker_down_after=6, stall_after=20)


def gauge(e: Any, name: str, **labels: str) -> float:
    value = e.metrics.registry.get_sample_value(name, labels or None)
    assert value is not None, name
    return value


def part(committed: int | None, highwater: int | None = 10, read: int | None = None,
         topic: str = "complaints", partition: int = 0) -> Partition:
    return Partition(topic, partition, highwater, committed, read)


def test_lag_from_committed_then_read_offset_then_zero() -> None:
    assert part(committed=7).lag == 3
    assert part(committed=None, read=7).lag == 2  # read: last offset handed to a stream
    assert part(committed=None).lag == 10
    assert part(committed=4, highwater=None).lag == 0  # nothing fetched yet: unknown
    assert part(committed=12).lag == 0


def test_starting_until_the_table_is_recovered() -> None:
    h = health(engine(ready=False))
    assert h.status() == (503, {"status": "starting", "reason": "recovering the case table"})
    h.engine.ready = True
    assert h.status() == (200, {"status": "ready"})


def test_brokers_lost_for_longer_than_the_grace_make_it_unready_then_ready_again() -> None:
    e = engine()
    h = health(e)
    h.observe(0, True, [])
    assert h.ready and gauge(e, "zhida_ready") == 1 and gauge(e, "zhida_brokers_reachable") == 1
    h.observe(2, False, [])
    assert h.ready, "one failed probe is not an outage yet"
    assert gauge(e, "zhida_brokers_reachable") == 0
    h.observe(8, False, [])
    status, body = h.status()
    assert status == 503 and body == {"status": "unavailable",
                                       "reason": "brokers unreachable for 6 s"}
    assert gauge(e, "zhida_ready") == 0
    h.observe(10, None, [])  # could not tell: the outage goes on
    assert h.status()[1]["reason"] == "brokers unreachable for 8 s"
    h.observe(12, True, [])
    assert h.status() == (200, {"status": "ready"}) and gauge(e, "zhida_ready") == 1


def test_a_rebalance_is_not_ready() -> None:
    h = health()
    h.observe(0, True, [], rebalancing=True)
    assert h.status()[0] == 503 and h.kind == "rebalancing"
    h.observe(2, True, [])
    assert h.ready


def test_stalled_with_input_waiting_until_it_consumes_again() -> None:
    e = engine()
    h = health(e)
    h.observe(0, True, [part(5), part(3, partition=1, topic="case_commands")])
    assert gauge(e, "zhida_consumer_lag_messages", topic="complaints") == 5
    assert gauge(e, "zhida_consumer_lag_messages", topic="case_commands") == 7
    assert gauge(e, "zhida_consumer_lag_messages", topic="sensed") == 0
    h.observe(19, True, [part(5), part(3, partition=1, topic="case_commands")])
    assert h.ready
    h.observe(21, True, [part(5), part(3, partition=1, topic="case_commands")])
    status, body = h.status()
    assert status == 503 and body["reason"] == \
        "consumer stalled: 12 records waiting, none consumed for 21 s"
    h.observe(23, True, [part(6), part(3, partition=1, topic="case_commands")])
    assert h.ready, "an offset moved"


def test_no_stall_without_input_or_while_it_cannot_consume() -> None:
    h = health()
    for t in range(0, 60, 2):  # caught up: nothing waits
        h.observe(t, True, [part(10)])
        assert h.ready
    h2 = health()
    h2.observe(0, True, [part(5)])
    h2.observe(18, True, [], rebalancing=True)
    h2.observe(30, True, [part(5)])
    assert h2.ready, "the stall clock restarts once the rebalance is over"
    h2.observe(50, True, [part(5)])
    assert h2.kind == "stalled"


async def test_a_failing_source_does_not_stop_the_checks() -> None:
    async def probe() -> bool:
        raise RuntimeError("boom")

    e = engine()
    e.app = types.SimpleNamespace(rebalancing=False)
    h = Health(e, interval=2, broker_down_after=6, stall_after=20, probe=probe,
               snapshot=list)
    await h.check()  # logged, not raised
    assert h.ready


def record(msg: Any, *args: Any, name: str = "aiokafka", level: int = logging.ERROR
           ) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_rate_limit_lets_one_through_per_interval_and_counts_the_rest() -> None:
    now = [0.0]
    f = RateLimit(interval=10, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    assert f.filter(record(template, 111, "refused"))
    passed = 0
    for i in range(650):  # ~65 a second for 10 s
        now[0] = i / 65
        passed += f.filter(record(template, 111, f"refused {i}"))
    assert passed == 0
    now[0] = 10.0
    r = record(template, 111, "refused")
    assert f.filter(r)
    assert getattr(r, ATTR) == (650, 10.0)
    event = add_suppressed(None, "error", {"event": "x", "_record": r})
    assert event["suppressed"] == 650 and event["suppressed_over_s"] == 10.0
    # other templates, other loggers and info lines are not held back
    assert f.filter(record("Failed fetch messages from %s: %s", 111, "x"))
    assert f.filter(record(template, 111, "x", name="aiokafka.consumer"))
    assert all(f.filter(record(template, 1, "x", level=logging.INFO)) for _ in range(5))


def test_rate_limit_keys_structlog_records_by_event() -> None:
    f = RateLimit(interval=10, clock=lambda: 0.0)
    assert f.filter(record({"event": "dead_letter", "reason": "schema"}, level=logging.WARNING))
    assert not f.filter(record({"event": "dead_letter", "reason": "decode"},
                               level=logging.WARNING))
    assert f.filter(record({"event": "decide_failed"}, level=logging.WARNING))


def test_rate_limit_memory_is_bounded() -> None:
    now = [0.0]
    f = RateLimit(interval=10, max_keys=100, clock=lambda: now[0])
    for i in range(1000):
        now[0] = i / 10
        assert f.filter(record(f"unbounded template {i}"))
    assert len(f._seen) <= 100


def test_faust_pages_are_dropped_before_the_server_starts() -> None:
    app = faust.App("zhida-test-pages", web_enabled=True)
    before = [bp for _, bp in app.web.blueprints._enabled]
    assert "faust.web.apps.router:blueprint" in before
    dropped = drop_faust_pages(app)
    assert set(dropped) == set(before)
    assert app.web.blueprints._enabled == []
    app.web.blueprints.applied = True
    with pytest.raises(RuntimeError):
        drop_faust_pages(app)
