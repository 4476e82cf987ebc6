"""Hostile inputs near the brokers' 1 MB limit end as dead letters that fit, on the real
broker: a 900 KB complaint of quotes and backslashes (JSON escaping doubles it), ~1 MB of
control characters (escaped six-fold) and a signed update whose ``kid`` is 520,000
characters; the intake agent neither crashes nor stops, and the next complaint on the same
partition is dispatched (issue 22 part 2, engine/runtime/deadletter.py)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiokafka.partitioner import DefaultPartitioner

from engine.core.ids import case_id_for
from engine.runtime.signing import Signer
from engine.tools import keys
from engine.tools.broker import EmbeddedBroker, free_port
from schemas.outbound import LETTER_MAX_BYTES
from tests.support.broker import NAMES, Collector, Worker, collecting, own_broker
from tests.support.helpers import DISTRICT, STREET
from tests.support.messages import complaint

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bounds_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with own_broker(tmp_path_factory, "deadletter-bounds") as b:
        yield b


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("bounds-keys")
    jwks, private = d / "jwks.json", d / "private"
    keys.issue(jwks, [STREET], private)
    return jwks, private


@pytest.fixture(scope="module")
def worker(bounds_broker: EmbeddedBroker, keyring: tuple[Path, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A signed worker (``--keys``): complaints are not signed, updates must be."""
    d = tmp_path_factory.mktemp("bounds-worker")
    w = Worker(bounds_broker.bootstrap, free_port(), d / "data", d / "worker.log",
               env={"ZHIDA_KEYS": str(keyring[0])}).start()
    yield w
    w.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def out(bounds_broker: EmbeddedBroker, worker: Worker) -> AsyncIterator[Collector]:
    async with collecting(bounds_broker.bootstrap) as c:
        yield c


def letter_of(out: Collector, raw: bytes) -> dict[str, Any] | None:
    digest = hashlib.sha256(raw).hexdigest()
    for r in out.where(NAMES.deadletter, original_sha256=digest):
        return {**r.value, "_key": r.key}
    return None


def assert_cut(letter: dict[str, Any], raw: bytes, reason: str, key: str) -> None:
    assert letter["reason"] == reason and letter["_key"] == key and letter["key"] == key
    assert letter["truncated"] is True and letter["original_bytes"] == len(raw)
    kept = letter["original"].encode()
    assert raw.startswith(kept) and 0 < len(kept) < len(raw)
    assert len(orjson.dumps({k: v for k, v in letter.items() if k != "_key"})) \
        <= LETTER_MAX_BYTES


async def test_hostile_inputs_are_dead_lettered_cut_and_the_next_complaint_dispatched(
        worker: Worker, out: Collector, keyring: tuple[Path, Path]) -> None:
    key = f"bounds-{uuid.uuid4().hex[:8]}"  # one key: every input on one partition
    # (a) a valid 900 KB complaint of quotes and backslashes: oversize, escapes to ~1.8 MB
    quotes = orjson.dumps(complaint(complaint_id=key + "-q", description='"\\' * 225_000))
    assert 900_000 < len(quotes) < 1_000_000
    await out.send(NAMES.complaints, quotes, key=key)
    # (b) ~1 MB of control characters: not JSON, oversize, escapes to ~6 MB
    controls = b"\x01" * 1_000_000
    await out.send(NAMES.complaints, controls, key=key)
    # (c) a signed update whose kid is 520,000 characters (a ~700 KB header)
    case_id = f"bounds-case-{uuid.uuid4().hex[:8]}"
    update = orjson.dumps({"update_id": uuid.uuid4().hex, "actor": STREET, "action": "ack",
                           "case_id": case_id, "at": datetime.now(UTC).isoformat()})
    street = Signer.from_file(keyring[1] / f"{STREET}.1.jwk")
    forged = Signer("5" * 520_000, street._key)
    await out.producer.send_and_wait(NAMES.unit_updates, update, key=case_id.encode(),
                                     headers=[("zhida-signature", forged.sign(update).encode())])
    # then an ordinary complaint on the same partition as (a) and (b)
    normal = complaint()
    await out.send(NAMES.complaints, normal, key=key)

    a = await out.wait_for(lambda: letter_of(out, quotes), timeout=30)
    assert_cut(a, quotes, "oversize", key)
    b = await out.wait_for(lambda: letter_of(out, controls), timeout=30)
    assert_cut(b, controls, "oversize", key)
    c = await out.wait_for(lambda: letter_of(out, update), timeout=30)
    assert c["reason"] == "unauthorized" and c["_key"] == case_id
    assert c["truncated"] is False and c["original"] == update.decode()  # small: whole
    assert "(520000 chars)" in c["detail"] and len(c["detail"]) < 400

    normal_case = case_id_for("complaint", normal["complaint_id"])
    await out.wait_for(lambda: out.where(NAMES.dispatch(DISTRICT), case_id=normal_case),
                       timeout=30)
    # no crash, no stop: the same process, ready, nothing failed
    assert worker.proc is not None and worker.proc.poll() is None
    log = worker.log_path.read_text(errors="replace")
    assert "Crashed reason" not in log and "deadletter_failed" not in log
    assert worker.metric("zhida_deadletter_failures_total") == 0
    assert worker.metric("zhida_deadletters_total", reason="oversize") == 2
    assert worker.get("/readyz")[0] == 200


def partition_of(key: str, partitions: int) -> int:
    return DefaultPartitioner()(key.encode(), list(range(partitions)), list(range(partitions)))


async def test_a_letter_the_brokers_refuse_stops_its_partition_and_keeps_the_input(
        worker: Worker, out: Collector) -> None:
    """The safety net: with a producer limit below the letter (faust reads
    ``PRODUCER_MAX_REQUEST_SIZE``), the send fails; the intake pauses that partition, keeps
    the input uncommitted and says so on /readyz, while its other partitions go on. Restarted
    without the limit, the worker reads the input again and the letter goes out."""
    worker.stop()
    worker.env["PRODUCER_MAX_REQUEST_SIZE"] = "20000"
    worker.start()
    n = len(await out.producer.partitions_for(NAMES.complaints))
    key = f"stop-{uuid.uuid4().hex[:8]}"
    other = next(k for i in range(100) if partition_of(k := f"{key}-{i}", n)
                 != partition_of(key, n))
    junk = b"x" * 300_000  # oversize, and its letter (~300 KB, whole) is over the limit
    await out.send(NAMES.complaints, junk, key=key)
    behind = complaint()  # after the junk on its partition
    await out.send(NAMES.complaints, behind, key=key)
    beside = complaint()  # on another partition
    await out.send(NAMES.complaints, beside, key=other)

    await out.wait_for(lambda: out.where(NAMES.dispatch(DISTRICT), case_id=case_id_for(
        "complaint", beside["complaint_id"])), timeout=30)

    def stalled() -> str | None:
        code, body = worker.get("/readyz")
        reason = orjson.loads(body).get("reason", "")
        return reason if code == 503 and "consumer stalled" in reason else None

    reason = await out.wait_for(stalled, timeout=30)
    assert "intake_complaints" in reason and "MessageSizeTooLargeError" in reason
    assert worker.metric("zhida_deadletter_failures_total", consumer="intake_complaints") == 1
    assert "deadletter_failed" in worker.log_path.read_text(errors="replace")
    assert letter_of(out, junk) is None
    assert not out.where(NAMES.case_events,
                         case_id=case_id_for("complaint", behind["complaint_id"]))

    worker.stop()
    del worker.env["PRODUCER_MAX_REQUEST_SIZE"]
    worker.start()
    letter = await out.wait_for(lambda: letter_of(out, junk), timeout=30)
    assert letter["reason"] == "oversize" and letter["truncated"] is False
    assert letter["original"] == junk.decode() and letter["_key"] == key
    await out.wait_for(lambda: out.where(NAMES.dispatch(DISTRICT), case_id=case_id_for(
        "complaint", behind["complaint_id"])), timeout=30)
    assert worker.get("/readyz")[0] == 200
