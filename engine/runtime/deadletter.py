"""Dead letters that always get out: a bounded letter, and what happens when one is not sent.

**Bounded** (``build_letter``, the one place every letter is made). An input can be as large
as the brokers take (~1 MB) and JSON escaping can make its copy six times that, so a letter
that copied it whole could not be produced: the send failed, the agent crashed and the input
was neither processed nor dead-lettered. Now the letter keeps the ``detail`` to
``DETAIL_MAX`` characters and the key to ``KEY_MAX_BYTES`` (each cut with a visible marker),
and when the encoded letter would exceed ``LETTER_MAX_BYTES`` the original is cut to the
longest prefix that fits (text on a character boundary, or base64 of the first bytes), with
``truncated: true``. ``original_bytes`` and ``original_sha256`` describe the whole original
in every letter, so a cut one can still be matched to its input. The size is measured on
the encoded bytes, not guessed: the prefix is searched by encoding it.

**Not sent** (``send_letter``, ``Stops``). Being bounded, a letter cannot be too large for
the producer; what is left (a dead letter topic whose ``max.message.bytes`` is lower, a
missing ACL, a delivery timing out) is the safety net here. A letter is retried a few times
with backoff for retriable errors, then logged (``deadletter_failed``: where the input was
and the error, never its content) and counted (``zhida_deadletter_failures_total``), and the
input is *kept*: the intake pauses that partition and withholds the acknowledgement of its
records, so the offset is never committed and the input is read again after a restart (or a
rebalance, which resumes every partition). Pausing rather than waiting in the agent: one
agent reads every partition of its topic, and waiting would stop them all. ``/readyz`` says
``consumer stalled`` while a stop holds (engine/runtime/health.py). The case writer cannot pause one
partition (a batch spans several and is written whole, engine/runtime/writer.py): it keeps retrying
its batch slowly, reported the same way until the batch goes out.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka.errors import KafkaError, KafkaTimeoutError

from engine.runtime import logs
from schemas.codec import clip, encode
from schemas.outbound import DETAIL_MAX, KEY_MAX_BYTES, LETTER_MAX_BYTES, DeadLetter

if TYPE_CHECKING:
    from engine.runtime.outputs import Record

log = logs.get("zhida.deadletter")

ATTEMPTS = 4  # sends of one letter for retriable errors: waits 0.5 + 1 + 2 s between them
RETRY_FIRST = 0.5
_ESCAPE_MAX = 6  # JSON escapes one byte to at most six (a control character: \u0000)


# ---- building ----


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter ready to produce: its Kafka key and value, and what was cut."""

    key: bytes | None
    value: bytes
    detail: str  # as carried (cut)
    truncated: bool  # the original was cut
    key_truncated: bool


def build_letter(reason: str, detail: str, *, source_topic: str, partition: int | None,
                 offset: int | None, key: bytes | str | None, value: bytes | str | None,
                 at: datetime, max_bytes: int = LETTER_MAX_BYTES) -> Letter:
    """The letter for one refused input; pure and deterministic (a replay sends the same
    bytes). ``value`` as bytes is the input exactly; as text (a command's origin), its UTF-8.
    The encoded value is at most ``max_bytes``, whatever the input."""
    detail = _text(clip(detail, DETAIL_MAX))
    text_key, key_cut = _bounded_key(key)
    raw = None if value is None else value if isinstance(value, bytes) else \
        value.encode("utf-8", "replace")
    original: str | None = None
    original_b64: str | None = None
    if raw is not None:
        try:
            original = raw.decode("utf-8")
        except UnicodeDecodeError:
            original_b64 = base64.b64encode(raw).decode()
    letter = DeadLetter(
        reason=reason, detail=detail, source_topic=source_topic, partition=partition,
        offset=offset, key=text_key, original=original, original_base64=original_b64,
        original_bytes=None if raw is None else len(raw),
        original_sha256=None if raw is None else hashlib.sha256(raw).hexdigest(),
        key_truncated=key_cut, at=at)
    encoded = encode(letter)
    truncated = False
    if len(encoded) > max_bytes and raw is not None:  # without one, a letter is a few KB
        truncated = True
        empty = letter.model_copy(update={"truncated": True,
                                          "original": "" if original is not None else None,
                                          "original_base64": "" if original is None else None})
        room = max_bytes - len(encode(empty))
        cut = (empty.model_copy(update={"original": _text_prefix(raw, room)})
               if original is not None
               else empty.model_copy(update={"original_base64": _base64_prefix(raw, room)}))
        encoded = encode(cut)
        if len(encoded) > max_bytes:  # cannot happen (measured above); never send it anyway
            encoded = encode(empty.model_copy(update={"original": None,
                                                      "original_base64": None}))
    return Letter(text_key.encode() if text_key else None, encoded, detail, truncated,
                  key_cut)


def _text(s: str) -> str:
    """``s`` as valid UTF-8 text (a lone surrogate, which JSON encoders refuse, replaced)."""
    return s.encode("utf-8", "replace").decode("utf-8")


def _bounded_key(key: bytes | str | None) -> tuple[str | None, bool]:
    """The key as text, cut to ``KEY_MAX_BYTES`` UTF-8 bytes with ``… (+N bytes)``."""
    if key is None:
        return None, False
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else _text(key)
    raw = text.encode("utf-8")
    if len(raw) <= KEY_MAX_BYTES:
        return text, False
    head = _utf8_boundary(raw, KEY_MAX_BYTES)
    return f"{raw[:head].decode('utf-8')}… (+{len(raw) - head} bytes)", True


def _utf8_boundary(raw: bytes, n: int) -> int:
    """The largest cut at or below ``n`` that does not split a character of ``raw``."""
    n = min(n, len(raw))
    while 0 < n < len(raw) and raw[n] & 0xC0 == 0x80:  # a continuation byte
        n -= 1
    return n


def _escaped_len(text: str) -> int:
    return len(orjson.dumps(text)) - 2  # without the quotes


def _text_prefix(raw: bytes, room: int) -> str:
    """The longest prefix of ``raw`` (valid UTF-8, cut on a character boundary) whose JSON
    string is at most ``room`` bytes: searched by encoding, as escaping costs one to six
    bytes a character. ``fits(n)``, for the prefix cut at or below byte ``n``, only turns
    from true to false as ``n`` grows: a binary search for the last ``n`` it holds at."""
    if room <= 0:
        return ""
    hi = min(len(raw), room)  # escaping never shortens: nothing longer fits
    lo = min(room // _ESCAPE_MAX, hi)  # fits even if every byte escapes

    def fits(n: int) -> bool:
        return _escaped_len(raw[:_utf8_boundary(raw, n)].decode("utf-8")) <= room

    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return raw[:_utf8_boundary(raw, lo)].decode("utf-8")


def _base64_prefix(raw: bytes, room: int) -> str:
    """Base64 of the longest prefix of ``raw`` that fits ``room`` (base64 is never escaped)."""
    return base64.b64encode(raw[:max(room, 0) // 4 * 3]).decode()


# ---- sending ----


def retriable(error: BaseException) -> bool:
    """Worth sending again: a Kafka error marked retriable, or a timeout (a full buffer, a
    delivery aiokafka gave up on). faust wraps the producer's errors: follow the causes."""
    e: BaseException | None = error
    while e is not None:
        if isinstance(e, KafkaTimeoutError | TimeoutError):
            return True
        if isinstance(e, KafkaError):
            return bool(e.retriable)
        e = e.__cause__ or e.__context__
    return False


def error_name(error: BaseException) -> str:
    """The Kafka error under faust's wrapping (``MessageSizeTooLargeError``), for logs."""
    e: BaseException | None = error
    while e is not None:
        if isinstance(e, KafkaError):
            return type(e).__name__
        e = e.__cause__ or e.__context__
    return type(error).__name__


async def send_letter(producer: Any, record: Record, *, attempts: int = ATTEMPTS,
                      first_delay: float = RETRY_FIRST) -> BaseException | None:
    """Send ``record`` and wait until the brokers have it; None, or the last error.

    Waiting costs one round trip per dead letter, which are rare; not waiting would let
    faust commit the input's offset while its letter could still fail.
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            delivered = await producer.send(record.topic, record.key, record.value,
                                            record.partition, None, record.headers)
            await delivered
            return None
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if attempt == attempts or not retriable(e):
                return e
            log.warning("deadletter_retry", error=error_name(e), attempt=attempt,
                        retry_in=delay)
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Stop:
    """A consumer that stopped because a dead letter could not be sent."""

    consumer: str  # ``intake_<topic>`` or ``case_commands``
    where: str  # the input: ``topic[partition]@offset``
    error: str
    generation: int | None  # holds in this consumer generation; None: until cleared

    def describe(self) -> str:
        return f"{self.consumer}: the dead letter of {self.where} could not be sent ({self.error})"


class Stops:
    """Stopped partitions of this worker, for the intake agents and ``/readyz``."""

    def __init__(self) -> None:
        self._stops: dict[tuple[str, int | None], Stop] = {}

    def hold(self, app: Any, event: Any, consumer: str, error: str) -> Stop:
        """Stop the event's partition: pause it and keep the event unacknowledged."""
        m = event.message
        stop = Stop(consumer, f"{m.topic}[{m.partition}]@{m.offset}", error,
                    getattr(app, "consumer_generation_id", None))
        self._stops[(m.topic, m.partition)] = stop
        self._withhold(m)
        app.consumer.pause_partitions({m.tp})
        return stop

    def holds(self, app: Any, event: Any) -> bool:
        """True for an event of a stopped partition (fetched before the pause): withheld.

        A new consumer generation ends the stop: faust resumed the partition from its
        committed offset, so the input is being read again.
        """
        m = event.message
        stop = self._stops.get((m.topic, m.partition))
        if stop is None:
            return False
        if stop.generation != getattr(app, "consumer_generation_id", None):
            del self._stops[(m.topic, m.partition)]
            return False
        self._withhold(m)
        return True

    @staticmethod
    def _withhold(message: Any) -> None:
        # as engine/runtime/kafka/guard.py does: ``Message.ack()`` will not reach the consumer, so
        # no
        # offset at or past this one is committed (faust would skip a gap of one)
        message.acked = True

    def set(self, key: tuple[str, int | None], stop: Stop) -> None:
        self._stops[key] = stop

    def clear(self, key: tuple[str, int | None]) -> None:
        self._stops.pop(key, None)

    def active(self, app: Any) -> list[Stop]:
        """The stops holding now (the current consumer generation, or until cleared)."""
        generation = getattr(app, "consumer_generation_id", None)
        return [s for s in self._stops.values()
                if s.generation is None or s.generation == generation]
