"""Dead letters always fit (engine/runtime/deadletter.py): any input up to the brokers' limit, any
detail and key; and a letter the brokers refuse stops the consumer at its input."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.exceptions import ProducerSendError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.runtime import deadletter
from engine.runtime.app import Engine, Record
from engine.runtime.deadletter import Stops, build_letter, send_letter
from engine.runtime.health import Health
from engine.runtime.metrics import CONSUMED_TOPICS, Metrics
from engine.runtime.settings import Settings
from engine.runtime.world import load_world
from schemas.codec import Refused, clip, decode
from schemas.inbound import Complaint
from schemas.outbound import DETAIL_MAX, KEY_MAX_BYTES, LETTER_MAX_BYTES, DeadLetter

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BROKER_MAX = 1024 * 1024  # a message the brokers take (Kafka's default is ~1 MiB)
MARKER = 40  # room for "… (+N chars)" / "… (+N bytes)"

# pieces of hostile inputs: what JSON escapes (to 2 or 6 bytes), multibyte text, invalid UTF-8
PIECES = st.one_of(
    st.sampled_from([b'"', b"\\", b"\x00", b"\x1f", b"\n", "😀".encode(), "é".encode(),
                     b"\xff", b"\xc3", b"a"]),
    st.binary(min_size=1, max_size=16),
    st.text(min_size=1, max_size=8).map(lambda t: t.encode("utf-8", "replace")),
)


@st.composite
def blobs(draw: Any, limit: int) -> bytes:
    """Up to ``limit`` bytes, cheaply: a few pieces, each repeated up to the limit."""
    parts = draw(st.lists(st.tuples(PIECES, st.integers(0, limit)), max_size=3))
    return b"".join(piece * (n // len(piece) + 1) for piece, n in parts)[:limit]


def letter_of(value: bytes | str | None, detail: str = "d", key: bytes | str | None = b"k",
              max_bytes: int = LETTER_MAX_BYTES) -> deadletter.Letter:
    return build_letter("oversize", detail, source_topic="zhida.intake.complaints",
                        partition=3, offset=17, key=key, value=value, at=AT,
                        max_bytes=max_bytes)


def carried(body: dict[str, Any]) -> bytes | None:
    if body["original"] is not None:
        return str(body["original"]).encode("utf-8")
    if body["original_base64"] is not None:
        return base64.b64decode(body["original_base64"])
    return None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(st.none(), blobs(BROKER_MAX),
                       blobs(BROKER_MAX).map(lambda b: b.decode("utf-8", "replace"))),
       detail=blobs(20_000).map(lambda b: b.decode("utf-8", "replace")),
       key=st.one_of(st.none(), blobs(BROKER_MAX // 2)))
@example(value=b'"' * BROKER_MAX, detail="", key=b"k")
@example(value=b"\\" * BROKER_MAX, detail="", key=None)
@example(value=b"\x00" * BROKER_MAX, detail="x" * 5000, key=b"\x00" * 5000)
@example(value=b"\xff" * BROKER_MAX, detail="", key=b"k")
@example(value=b"\x01" * (LETTER_MAX_BYTES // 6), detail="", key=b"")
def test_any_letter_fits_and_tells_the_truth(value: bytes | str | None, detail: str,
                                             key: bytes | None) -> None:
    letter = letter_of(value, detail, key)
    raw = value.encode("utf-8") if isinstance(value, str) else value
    assert len(letter.value) <= LETTER_MAX_BYTES
    body = orjson.loads(letter.value)  # valid JSON, and a valid letter
    DeadLetter.model_validate(body)
    assert body["truncated"] is letter.truncated
    # cut exactly when the whole letter would not fit
    whole = letter_of(value, detail, key, max_bytes=10**9)
    assert letter.truncated is (len(whole.value) > LETTER_MAX_BYTES)
    if raw is None:
        assert body["original_bytes"] is None and body["original_sha256"] is None
        assert carried(body) is None and not letter.truncated
    else:
        assert body["original_bytes"] == len(raw)
        assert body["original_sha256"] == hashlib.sha256(raw).hexdigest()
        kept = carried(body)
        assert kept is not None
        if letter.truncated:
            assert raw.startswith(kept) and len(kept) < len(raw)
            # the longest prefix that fits: one more character (at most 6 bytes escaped)
            # or base64 group (4) would not
            assert len(letter.value) > LETTER_MAX_BYTES - 7
        else:
            assert kept == raw
            assert letter.value == whole.value
        # text stays text, bytes that are not UTF-8 base64, cut or not
        assert (body["original"] is not None) is _utf8(raw)
    # the detail and the key are bounded, whole when short
    if len(detail) <= DETAIL_MAX:
        assert body["detail"] == detail.encode("utf-8", "replace").decode()
    else:
        assert body["detail"].endswith(f"(+{len(detail) - DETAIL_MAX} chars)")
        assert len(body["detail"]) <= DETAIL_MAX + MARKER
    if key is None:
        assert body["key"] is None and letter.key is None and not body["key_truncated"]
    else:
        text = key.decode("utf-8", "replace")
        assert body["key_truncated"] is (len(text.encode()) > KEY_MAX_BYTES)
        if not body["key_truncated"]:
            assert body["key"] == text
        assert len(body["key"].encode()) <= KEY_MAX_BYTES + MARKER
        assert letter.key == (body["key"].encode() or None)


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_the_found_complaint_of_quotes_is_cut_with_its_size_and_digest() -> None:
    """The issue's case: a valid 900 KB complaint, refused as oversize, escapes past 1 MB."""
    description = '"\\' * 225_000
    raw = orjson.dumps({"complaint_id": "c-big", "channel": "app",
                        "category": "water_supply", "description": description,
                        "location": {"unit": "500103001"},
                        "reported_at": "2026-11-23T09:00:00+08:00"})
    with pytest.raises(Refused) as refused:
        decode(Complaint, raw)
    assert refused.value.reason == "oversize"
    letter = letter_of(raw, refused.value.detail, b"c-big")
    body = orjson.loads(letter.value)
    assert 900_000 < len(raw) < 1_000_000 < len(orjson.dumps(raw.decode()))
    assert len(letter.value) <= LETTER_MAX_BYTES
    assert body["truncated"] and body["original_bytes"] == len(raw)
    assert body["original_sha256"] == hashlib.sha256(raw).hexdigest()
    assert raw.startswith(body["original"].encode()) and body["key"] == "c-big"


def test_every_cut_is_on_a_character_boundary() -> None:
    raw = "界".encode() * 400_000  # 3 bytes a character, none escaped
    body = orjson.loads(letter_of(raw).value)
    assert body["truncated"] and len(body["original"].encode()) % 3 == 0
    assert set(body["original"]) == {"界"}


def test_the_engine_builds_its_letters_so_and_the_record_fits_the_producer(
        engine: Engine) -> None:
    """The worst case through the engine itself: a ~1 MiB key and value, a long detail and the
    CloudEvents headers still fit the producer's request size (faust's 1,000,000 bytes)."""
    key, value = b"\x00" * BROKER_MAX, b"\x01" * BROKER_MAX
    r = engine.outputs.dead_letter_record("oversize", "\x02" * 100_000, topic="zhida.intake.sensed",
                                  partition=2, offset=9, key=key, value=value, at=AT)
    assert r.topic == engine.names.deadletter
    same = build_letter("oversize", "\x02" * 100_000, source_topic="zhida.intake.sensed",
                        partition=2, offset=9, key=key, value=value, at=AT)
    assert (r.key, r.value) == (same.key, same.value) and same.truncated
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(r.key, r.value, r.headers)
    assert size < engine.app.conf.producer_max_request_size == 1_000_000
    assert size < 800_000  # well under: the budget leaves room for a larger ce_source


def test_details_repeat_no_hostile_input() -> None:
    assert clip("x" * 10, 10) == "x" * 10
    assert clip("x" * 15, 10) == "x" * 10 + "… (+5 chars)"
    big = "k" * 600
    with pytest.raises(Refused) as e:
        decode(Complaint, orjson.dumps({"complaint_id": "c", "channel": big,
                                        "category": big, "description": "d",
                                        "location": {big: big}, "reported_at": big}))
    assert len(e.value.detail) < 2000


def test_a_huge_kid_is_named_by_its_start_and_length(tmp_path: Path) -> None:
    from engine.runtime.signing import KeySet, Signer
    from engine.tools import keys

    jwks = tmp_path / "jwks.json"
    keys.issue(jwks, ["500103001"], tmp_path / "private")
    signer = Signer.from_file(tmp_path / "private" / "500103001.1.jwk")
    kid = "5" * 520_000
    forged = Signer(kid, signer._key)
    body = b'{"x": 1}'
    for unit in ("500103001", kid):  # another unit's key / an unknown kid
        with pytest.raises(Refused) as e:
            KeySet(jwks).verify(body, forged.sign(body), unit)
        assert "(520000 chars)" in e.value.detail and len(e.value.detail) < 400


# ---- sending ----


class FakeProducer:
    def __init__(self, *errors: BaseException | None) -> None:
        self.errors = list(errors)
        self.sent = 0

    async def send(self, *_: Any) -> asyncio.Future[Any]:
        self.sent += 1
        error = self.errors.pop(0) if self.errors else None
        if isinstance(error, MessageSizeTooLargeError):  # raised at once, wrapped by faust
            raise ProducerSendError(f"Error while sending: {error!r}") from error
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if error is None:
            future.set_result("metadata")
        else:
            future.set_exception(error)
        return future


RECORD = Record("zhida.deadletter", b"k", b"{}")


async def test_a_letter_is_retried_for_retriable_errors_only() -> None:
    p = FakeProducer(NotLeaderForPartitionError(), KafkaTimeoutError())
    assert await send_letter(p, RECORD, first_delay=0.001) is None and p.sent == 3
    p = FakeProducer(*[NotLeaderForPartitionError()] * 9)
    error = await send_letter(p, RECORD, attempts=3, first_delay=0.001)
    assert isinstance(error, NotLeaderForPartitionError) and p.sent == 3
    p = FakeProducer(MessageSizeTooLargeError())
    error = await send_letter(p, RECORD, first_delay=0.001)
    assert p.sent == 1 and error is not None
    assert deadletter.error_name(error) == "MessageSizeTooLargeError"
    assert not deadletter.retriable(error)


class FakeConsumer:
    def __init__(self) -> None:
        self.paused: set[Any] = set()

    def pause_partitions(self, tps: Any) -> None:
        self.paused |= set(tps)


def fake_event(partition: int, offset: int) -> Any:
    m = types.SimpleNamespace(topic="zhida.intake.complaints", partition=partition,
                              offset=offset, tp=("zhida.intake.complaints", partition),
                              acked=False)
    return types.SimpleNamespace(message=m)


def test_a_stop_pauses_the_partition_and_withholds_its_records_for_the_generation() -> None:
    app = types.SimpleNamespace(consumer=FakeConsumer(), consumer_generation_id=4)
    stops = Stops()
    first = fake_event(1, 7)
    stop = stops.hold(app, first, "intake_complaints", "MessageSizeTooLargeError")
    assert first.message.acked  # never reaches the consumer: offset 7 is not committed
    assert app.consumer.paused == {("zhida.intake.complaints", 1)}
    assert stop.where == "zhida.intake.complaints[1]@7"
    later, other = fake_event(1, 8), fake_event(0, 8)
    assert stops.holds(app, later) and later.message.acked  # fetched before the pause
    assert not stops.holds(app, other) and not other.message.acked
    assert [s.where for s in stops.active(app)] == [stop.where]
    app.consumer_generation_id = 5  # a rebalance resumed it from the committed offset
    assert stops.active(app) == []
    again = fake_event(1, 7)
    assert not stops.holds(app, again) and not again.message.acked


def test_readyz_says_which_input_stopped_a_consumer() -> None:
    topics = {k: types.SimpleNamespace(get_topic_name=lambda k=k: f"zhida.{k}")
              for k in CONSUMED_TOPICS}
    e = types.SimpleNamespace(ready=True, metrics=Metrics(), topics=topics)
    h = Health(e, interval=2, broker_down_after=6, stall_after=20)
    h.observe(0, True, [])
    assert h.status()[0] == 200
    stop = deadletter.Stop("intake_complaints", "zhida.intake.complaints[1]@7",
                           "MessageSizeTooLargeError", 4)
    h.observe(2, True, [], stopped=[stop.describe()])
    code, body = h.status()
    assert code == 503 and body["reason"].startswith("consumer stalled: intake_complaints")
    assert "[1]@7" in body["reason"] and "MessageSizeTooLargeError" in body["reason"]
    h.observe(4, True, [])
    assert h.status()[0] == 200


async def test_the_writer_reports_a_refused_letter_and_goes_on_once_it_is_taken(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.runtime import delivery

    monkeypatch.setattr(delivery, "RETRY_FIRST", 0.001)
    letter = engine.outputs.dead_letter_record("schema", "bad", topic="zhida.case.commands",
                                       partition=1, offset=5, key=b"c", value=b"{}", at=AT)
    stops = Stops()
    app = types.SimpleNamespace(consumer_generation_id=1)
    producer = FakeProducer(None, MessageSizeTooLargeError(), None, None)
    seen: list[list[str]] = []

    class Metadata:
        topic, partition, offset = "zhida.case.events", 0, 3

    async def send(*args: Any) -> Any:
        seen.append([s.where for s in stops.active(app)])  # what /readyz would report
        future = await producer.send(*args)
        if future.exception() is None:
            future = asyncio.get_running_loop().create_future()
            future.set_result(Metadata())
        return future

    app.producer = types.SimpleNamespace(send=send)
    fake = types.SimpleNamespace(app=app, metrics=engine.metrics, names=engine.names,
                                 outputs=types.SimpleNamespace(letter_stops=stops))
    failures = engine.metrics.deadletter_failures.labels("case_commands")
    before = failures._value.get()
    ends = await delivery.deliver(fake, [Record("zhida.case.events", b"c", b"{}"), letter])
    assert ends == {("zhida.case.events", 0): 3}
    assert failures._value.get() == before + 1
    assert seen == [[], [], ["zhida.case.commands[1]@5"], ["zhida.case.commands[1]@5"]]
    assert stops.active(app) == []  # cleared once the batch went out


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    d = tmp_path_factory.mktemp("engine")
    yield Engine(Settings(store="memory://", data_dir=d), load_world())


async def test_resubmit_never_sends_a_cut_original_as_the_input() -> None:
    """``zhida deadletters --resubmit`` skips a letter holding only a prefix of its input, or
    a cut key; ``--fixed`` replaces a cut original but not a cut key."""
    import hashlib

    from engine.tools.ops.deadletters import Letter, resubmit

    whole = b'{"complaint_id": "c-1"}'

    def letter(offset: int, **body: object) -> Letter:
        return Letter("zhida.deadletter", 0, offset, "c-1",
                      {"source_topic": "zhida.intake.complaints", "key": "c-1", **body})
    ok = letter(1, original=whole.decode(), original_sha256=hashlib.sha256(whole).hexdigest())
    cut = letter(2, original=whole[:9].decode(), truncated=True, original_bytes=len(whole),
                 original_sha256=hashlib.sha256(whole).hexdigest())
    unmarked = letter(3, original=whole[:9].decode(),
                      original_sha256=hashlib.sha256(whole).hexdigest())
    bad_key = letter(4, original=whole.decode(), key_truncated=True)
    done = await resubmit("127.0.0.1:1", [ok, cut, unmarked, bad_key], "zhida.", 1.0,
                          dry_run=True)
    assert [x.offset for x in done.sent] == [1]
    assert [x.offset for x, _ in done.skipped] == [2, 3, 4]
    assert "prefix" in done.skipped[0][1] and "key was cut" in done.skipped[2][1]
    fixed = await resubmit("127.0.0.1:1", [cut, bad_key], "zhida.", 1.0, fixed=whole,
                           dry_run=True)
    assert [x.offset for x in fixed.sent] == [2]
