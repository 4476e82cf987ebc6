"""``zhida deadletters``: the dead letter topic grouped by reason, and ``--resubmit REASON`` /
``--offset [P:]N`` (``--fixed FILE``, ``--dry-run``): dead letters put back on their source
topics with their original keys and a ``zhida-resubmitted-from`` header.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine.runtime.pii import mask_text
from engine.tools.ops.brokers import (
    Auth,
    check_broker,
    cluster,
    inbound_topics,
    log_ends,
    quiet_aiokafka,
)
from engine.tools.ops.common import EXIT_USAGE, OpsError, brief, decode, shown

RESUBMITTED_HEADER = "zhida-resubmitted-from"


@dataclass
class Letter:
    """One record of ``zhida.deadletter``, named by its own place there (``P:N``)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    body: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def reason(self) -> str:
        return str(self.body.get("reason") or "?")

    def original(self) -> bytes | None:
        """The refused value's exact bytes, as the engine kept them."""
        if self.body.get("original") is not None:
            return str(self.body["original"]).encode("utf-8")
        if self.body.get("original_base64"):
            return base64.b64decode(self.body["original_base64"])
        return None


async def read_letters(bootstrap: str, topic: str, timeout: float, auth: Auth = None,
                       missing_ok: bool = False) -> list[Letter]:
    """Every dead letter up to the end offsets seen at the start (a snapshot: letters
    arriving meanwhile are left for the next run). Any topic of JSON bodies reads the same
    (``zhida precedents`` reads ``zhida.insights``); ``missing_ok``: no topic, no records."""
    md = await cluster(bootstrap, timeout, auth)
    parts = md.partitions_for_topic(topic)
    if not parts:
        if missing_ok:
            return []
        raise OpsError(f"topic {topic} does not exist on the brokers at {bootstrap}")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=100,
                                **(auth or {}))
    letters: list[Letter] = []
    with quiet_aiokafka():
        await consumer.start()
        try:
            consumer.assign(tps)
            ends = await log_ends(consumer, tps, timeout)
            await consumer.seek_to_beginning(*tps)
            todo = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(timeout, 30.0)
            while todo:
                if loop.time() > deadline:
                    raise OpsError(f"reading {topic} did not reach its end within "
                                   f"{max(timeout, 30.0):g} s", code=EXIT_USAGE)
                batch = await consumer.getmany(*todo, timeout_ms=500)
                for tp, messages in batch.items():
                    for m in messages:
                        if m.offset >= ends[tp]:
                            continue
                        body = decode(m.value)
                        letters.append(Letter(
                            tp.topic, tp.partition, m.offset,
                            m.key.decode("utf-8", "replace") if m.key is not None else None,
                            body if isinstance(body, dict) else {"_raw": body}))
                todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
        finally:
            await consumer.stop()
    letters.sort(key=lambda x: (str(x.body.get("at") or ""), x.partition, x.offset))
    return letters


def letter_lines(letters: list[Letter], topic: str, latest: int) -> list[str]:
    """Counts per reason, most frequent first, each with its ``latest`` newest letters."""
    if not letters:
        return [f"no dead letters on {topic}"]
    by_reason: dict[str, list[Letter]] = {}
    for x in letters:
        by_reason.setdefault(x.reason, []).append(x)
    lines = [f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''} on {topic}, "
             f"{len(by_reason)} reason{'s' if len(by_reason) != 1 else ''} "
             "(P:N is the letter's partition and offset there, for --offset)"]
    for reason, group in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        lines.append(f"{shown(reason, 64):<20} {len(group):>6}")
        for x in group[-latest:] if latest > 0 else ():
            b = x.body
            where = shown(f"{b.get('source_topic')}[{b.get('partition')}]@{b.get('offset')}")
            detail = b.get("detail", "")
            lines.append(f"  {x.ref:<8} {shown(b.get('at', ''))}  {where}"
                         f"  key={shown(b.get('key'))}"
                         f"  {brief(mask_text(detail) if isinstance(detail, str) else detail)}")
    return lines


def select_letters(letters: list[Letter], *, reason: str | None = None,
                   offset: str | None = None) -> list[Letter]:
    """All letters of ``reason``, or the one at ``offset`` (``N`` or ``P:N``)."""
    if reason is not None:
        chosen = [x for x in letters if x.reason == reason]
        if not chosen:
            known = ", ".join(sorted({x.reason for x in letters})) or "none"
            raise OpsError(f"no dead letters with reason {reason!r} (reasons present: {known})")
        return chosen
    assert offset is not None
    part, _, num = offset.rpartition(":")
    try:
        n, p = int(num), (int(part) if part else None)
    except ValueError:
        raise OpsError(f"--offset {offset!r}: expected N or P:N (partition:offset)",
                       code=EXIT_USAGE) from None
    chosen = [x for x in letters if x.offset == n and (p is None or x.partition == p)]
    if not chosen:
        raise OpsError(f"no dead letter at {offset}")
    if len(chosen) > 1:
        raise OpsError(f"offset {n} is on {len(chosen)} partitions ("
                       + ", ".join(x.ref for x in chosen) + "): give P:N", code=EXIT_USAGE)
    return chosen


@dataclass
class Resubmitted:
    """What a resubmission sent, and what it skipped with the reason why."""

    sent: list[Letter] = field(default_factory=list)
    skipped: list[tuple[Letter, str]] = field(default_factory=list)


def resubmit_lines(done: Resubmitted, chosen: list[Letter], dry_run: bool, fixed: bool
                   ) -> list[str]:
    """What ``deadletters --resubmit/--offset`` did, one line per letter."""
    verb = "would resubmit" if dry_run else "resubmitted"
    what = "a corrected body for " if fixed else ""
    many = len(chosen) != 1
    lines = [f"{verb} {what}{len(done.sent)} of {len(chosen)} dead letter{'s' if many else ''} "
             f"to {'their source topics' if many else 'its source topic'}"
             + (f"; skipped {len(done.skipped)}" if done.skipped else "")]
    lines += [f"  {x.ref:<8} → {shown(x.body.get('source_topic'))} key={shown(x.body.get('key'))}"
              for x in done.sent]
    lines += [f"  {x.ref:<8} skipped: {shown(why)}" for x, why in done.skipped]
    return lines


async def resubmit(bootstrap: str, letters: list[Letter], prefix: str, timeout: float,
                   fixed: bytes | None = None, dry_run: bool = False, auth: Auth = None
                   ) -> Resubmitted:
    """Produce each letter's original (or ``fixed``) to its source topic with its key.

    Only the contract's input topics are written: a letter from elsewhere (the engine's
    internal command stream), one that kept no original, or one whose original was cut
    (``truncated``, or not matching its ``original_sha256``: only a prefix is left, and
    sending it would be a different input; ``--fixed`` can still replace it) or whose key was
    cut (``key_truncated``: the key would be wrong even with ``--fixed``) is skipped and said
    so. Each
    record carries ``zhida-resubmitted-from: <topic>/<P>/<N>`` so the trail stays
    readable; a resubmitted input the engine already took is dropped as a duplicate.
    """
    result = Resubmitted()
    allowed = inbound_topics(prefix)
    todo: list[tuple[Letter, bytes]] = []
    for x in letters:
        source = str(x.body.get("source_topic") or "")
        value = fixed if fixed is not None else x.original()
        if source not in allowed:
            result.skipped.append((x, f"source topic {source or '?'} is not an input topic"))
        elif x.body.get("key_truncated"):
            result.skipped.append((x, "the letter's key was cut: have the sender send it again"))
        elif fixed is None and _cut(x.body, value):
            result.skipped.append((x, f"the letter keeps only a prefix of the original's "
                                      f"{x.body.get('original_bytes')} bytes: use --fixed "
                                      "or have the sender send it again"))
        elif value is None:
            result.skipped.append((x, "the letter kept no original value"))
        else:
            todo.append((x, value))
    if dry_run or not todo:
        result.sent = [x for x, _ in todo]
        return result
    await check_broker(bootstrap, timeout, auth)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                request_timeout_ms=int(max(timeout, 5.0) * 1000),
                                **(auth or {}))
    with quiet_aiokafka():
        await producer.start()
        try:
            for x, value in todo:
                key = x.body.get("key") if x.body.get("key") is not None else x.key
                header = f"{x.topic}/{x.partition}/{x.offset}".encode()
                await producer.send_and_wait(
                    str(x.body["source_topic"]), value,
                    key=str(key).encode("utf-8") if key is not None else None,
                    headers=[(RESUBMITTED_HEADER, header)])
                result.sent.append(x)
        finally:
            await producer.stop()
    return result


def _cut(body: dict[str, Any], value: bytes | None) -> bool:
    """The letter's original is not the whole input (engine/runtime/deadletter.py bounds
    letters)."""
    if body.get("truncated"):
        return True
    digest = body.get("original_sha256")
    return value is not None and isinstance(digest, str) and \
        hashlib.sha256(value).hexdigest() != digest


def read_fixed(path: str) -> bytes:
    """A corrected body: must be a JSON object (the contract's bodies all are)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise OpsError(f"--fixed {path}: {e.strerror or e}", code=EXIT_USAGE) from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise OpsError(f"--fixed {path}: invalid JSON: {e}", code=EXIT_USAGE) from None
    if not isinstance(body, dict):
        raise OpsError(f"--fixed {path}: a message body is a JSON object, "
                       f"got {type(body).__name__}", code=EXIT_USAGE)
    return raw.strip()

