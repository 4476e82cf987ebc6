"""Operator tools behind ``zhida case | tail | deadletters | lag`` (docs/operations.md).

They talk to what a deployment already has: the worker's HTTP endpoint (``GET /cases/{id}``)
and the brokers (the contract's topics and the engine's consumer group), so an operator needs
no other client on the box. Every failure an operator can cause (a wrong address, a topic that
does not exist, a dead letter that is not there) raises ``OpsError``: one line and an exit code,
never a traceback. ``engine/tools/cli.py`` wires the subcommands; this module does the work.

What they print comes from other systems' messages, so every ``*_lines``/``render``/``*_json``
function here is pure and returns inert text (engine/tools/inert.py: control, bidi and separator
characters escaped, raw values cut at ``inert.LIMIT``); ``tail`` masks personal data as the
worker's ``GET /cases/{id}`` does (engine/runtime/pii.py), the worker masks what ``case`` shows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata

from engine.runtime.kafka.offsets import fetched_ends
from engine.runtime.pii import mask_record, mask_text
from engine.tools.inert import LIMIT, visible, visible_json
from topics import CITY_DISPATCH, DISPATCH_SUFFIX, SPECS, TopicNames

DEFAULT_URL = "http://127.0.0.1:6066"
URL_ENV = "ZHIDA_URL"
# value fields that name a unit, matched by ``zhida tail --unit``
UNIT_FIELDS = ("unit", "target", "actor", "late_unit", "supervisor", "issuer", "assign_to")
RESUBMITTED_HEADER = "zhida-resubmitted-from"
# the brokers' authentication arguments for every aiokafka client (SASL on a locked-down
# cluster, engine/runtime/settings.py); None or {} on a plaintext one
Auth = dict[str, Any] | None


class OpsError(Exception):
    """A failure to report as one line; ``code`` is the process's exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(visible(" ".join(message.split())))
        self.code = code


class BrokerUnreachable(OpsError):
    """No broker answered within the connect timeout (exit code 2, as for a bad file)."""

    def __init__(self, bootstrap: str, timeout: float, cause: str) -> None:
        super().__init__(f"cannot reach the Kafka brokers at {bootstrap} within {timeout:g} s"
                         + (f": {cause}" if cause else ""), code=2)


# ---- brokers ----


class _LastError(logging.Handler):
    """Keeps aiokafka's last complaint (the cause) and keeps it off stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[_LastError]:
    """aiokafka logs every failed connection (Python's last-resort handler prints them):
    the operator is to see one line, ours, so they are collected here instead."""
    logger = logging.getLogger("aiokafka")
    handler = _LastError()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _cause(text: str) -> str:
    """The useful end of aiokafka's message: 'Connect call failed …' → 'connection refused'."""
    if "Errno 111" in text or "Connect call failed" in text:
        return "connection refused"
    if "Name or service not known" in text or "Errno -2" in text or "Errno -3" in text:
        return "unknown host"
    if "]" in text:
        text = text.split("]", 1)[1]
    return text.strip().strip(":").strip()


async def connect(bootstrap: str, timeout: float, auth: Auth = None) -> AIOKafkaClient:
    """A bootstrapped client, retrying until ``timeout``: a broker still starting is waited
    for, one that never answers is named in a ``BrokerUnreachable`` (not ~30 s of retries
    and a traceback, as before)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with _quiet_aiokafka() as last:
        while True:
            left = deadline - loop.time()
            client = AIOKafkaClient(bootstrap_servers=bootstrap,
                                    request_timeout_ms=max(int(left * 1000), 1000),
                                    **(auth or {}))
            try:
                await asyncio.wait_for(client.bootstrap(), max(left, 0.05))
                return client
            except Exception as e:  # refused, unknown host, no answer: all end the same
                await client.close()
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # Ctrl-C, whatever aiokafka made
                    raise asyncio.CancelledError from None  # of it: stop, do not retry
                cause = last.message or (f"{e}" if not isinstance(e, TimeoutError)
                                         else "no answer")
                if loop.time() + 0.25 >= deadline:
                    raise BrokerUnreachable(bootstrap, timeout, _cause(cause)) from None
                await asyncio.sleep(0.25)


async def check_broker(bootstrap: str, timeout: float, auth: Auth = None) -> None:
    """Fail fast and in one line when no broker answers (``zhida worker``/``simulate``)."""
    client = await connect(bootstrap, timeout, auth)
    await client.close()


async def cluster(bootstrap: str, timeout: float, auth: Auth = None) -> ClusterMetadata:
    """Metadata of every topic (partitions), from one bounded connection."""
    client = await connect(bootstrap, timeout, auth)
    try:
        with _quiet_aiokafka():
            return await asyncio.wait_for(client.fetch_all_metadata(), timeout)
    except Exception as e:
        raise OpsError(f"no topic metadata from the brokers at {bootstrap}: {e or 'timeout'}",
                       code=2) from None
    finally:
        await client.close()


async def log_ends(consumer: AIOKafkaConsumer, tps: list[TopicPartition], timeout: float
                   ) -> dict[TopicPartition, int]:
    """The next offset to be written on each (assigned) partition: its high watermark.

    ListOffsets(latest) is the usual answer, but the embedded broker (Tansu 0.6) answers
    the last record batch's base offset + 1, short of the end by the rest of that batch
    (seen: a partition with records up to 8 reported 8, its fetch said 9). A fetch's high
    watermark is right on both (``engine.runtime.kafka.offsets.fetched_ends``); the consumer's
    positions are left anywhere: seek afterwards.
    """
    ends = await consumer.end_offsets(tps)
    ends.update(await fetched_ends(consumer, ends, min(timeout, 5.0)))
    return ends


def resolve_topics(name: str, prefix: str, districts: Iterable[str]) -> list[str]:
    """``case.events``, ``zhida.case.events``, ``case_events``, ``dispatch.500103`` or
    ``dispatch`` (every dispatch topic) → full topic names; anything else is an OpsError
    listing what is known, so a typo is answered at once instead of tailing nothing."""
    n = name.strip()
    if prefix and n.startswith(prefix):
        n = n[len(prefix):]
    for spec in SPECS:
        if n in (spec.suffix, spec.key):
            return [prefix + spec.suffix]
    names = TopicNames(prefix)
    codes = [*districts, CITY_DISPATCH]
    if n in ("dispatch", "dispatch.*"):
        return [names.dispatch(c) for c in codes]
    if n.startswith(DISPATCH_SUFFIX):
        code = n[len(DISPATCH_SUFFIX):]
        if code in codes:
            return [names.dispatch(code)]
        raise OpsError(f"no dispatch topic for {code!r}: a district code of the topology "
                       f"(e.g. {codes[0]}) or {CITY_DISPATCH!r}", code=2)
    known = ", ".join(s.suffix for s in SPECS)
    raise OpsError(f"unknown topic {name!r}: one of {known}, dispatch.<district code>, "
                   "dispatch (all of them), with or without the prefix " + repr(prefix), code=2)


# ---- tail ----


def decode(value: bytes | None) -> Any:
    """The body as JSON; a body that is not JSON shows as ``{"_raw": text or base64}``."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        try:
            return {"_raw": value.decode("utf-8")}
        except UnicodeDecodeError:
            return {"_raw_base64": base64.b64encode(value).decode()}


def matches(value: Any, key: str | None, units: set[str], cases: set[str]) -> bool:
    """``--unit`` matches the fields that name a unit; ``--case`` the case_id or the key."""
    body = value if isinstance(value, dict) else {}
    if units:
        named = {str(body[f]) for f in UNIT_FIELDS if body.get(f)}
        named.update(str(u) for u in body.get("assist_units") or ())
        location = body.get("location")
        if isinstance(location, dict) and location.get("unit"):
            named.add(str(location["unit"]))
        if not named & units:
            return False
    return not cases or body.get("case_id") in cases or key in cases


@dataclass
class TailOptions:
    units: set[str] = field(default_factory=set)
    cases: set[str] = field(default_factory=set)
    from_beginning: bool = False
    max_records: int | None = None
    pretty: bool = False
    meta: bool = False


def render(topic: str, partition: int, offset: int, key: str | None, value: Any,
           headers: dict[str, str], timestamp: int | None, opts: TailOptions) -> str:
    """One record for the terminal: its body masked (``pii.mask_record``: citizen contact on
    dispatch orders and complaints, numbers in free text, a dead letter's original), as
    JSON whose every character is inert (``visible_json``: still valid JSON for ``jq``)."""
    value = mask_record(value)
    if opts.meta:
        shown: Any = {"topic": topic, "partition": partition, "offset": offset, "key": key,
                      "timestamp": timestamp, "headers": headers, "value": value}
    else:
        shown = value
    if not opts.pretty:
        return visible_json(orjson.dumps(shown).decode())
    head = f"# {visible(topic, LIMIT)}[{partition}]@{offset} key={visible(key, LIMIT)}"
    if headers.get("ce_type"):
        head += f" {visible(headers['ce_type'], LIMIT)}"
    return head + "\n" + visible_json(json.dumps(shown, ensure_ascii=False, indent=2))


async def tail(bootstrap: str, topics: list[str], opts: TailOptions, timeout: float,
               out: TextIO | None = None, auth: Auth = None) -> int:
    """Print matching records as they arrive until ``max_records`` (or Ctrl-C); returns the
    count printed. Reads with no consumer group: tailing never moves the engine's offsets."""
    out = out or sys.stdout
    md = await cluster(bootstrap, timeout, auth)
    missing = [t for t in topics if not md.partitions_for_topic(t)]
    if len(missing) == len(topics):
        raise OpsError(f"topic {missing[0]} does not exist on the brokers at {bootstrap} "
                       "(has a worker started there with this prefix?)")
    tps = [TopicPartition(t, p) for t in topics if t not in missing
           for p in sorted(md.partitions_for_topic(t) or ())]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=100,
                                **(auth or {}))
    printed = 0
    with _quiet_aiokafka():
        await consumer.start()
        try:
            consumer.assign(tps)
            if opts.from_beginning:
                await consumer.seek_to_beginning(*tps)
            else:  # positions now, so nothing produced after this line is missed
                for tp, end in (await log_ends(consumer, tps, timeout)).items():
                    consumer.seek(tp, end)
            while opts.max_records is None or printed < opts.max_records:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, messages in sorted(batch.items()):
                    for m in messages:
                        key = m.key.decode("utf-8", "replace") if m.key is not None else None
                        value = decode(m.value)
                        if not matches(value, key, opts.units, opts.cases):
                            continue
                        headers = {k: v.decode("utf-8", "replace") for k, v in m.headers or ()}
                        out.write(render(tp.topic, tp.partition, m.offset, key, value, headers,
                                         m.timestamp, opts) + "\n")
                        out.flush()
                        printed += 1
                        if opts.max_records is not None and printed >= opts.max_records:
                            return printed
        finally:
            await consumer.stop()
    return printed


# ---- a case, from the worker ----


def fetch_case(url: str, case_id: str, timeout: float) -> dict[str, Any]:
    """``GET {url}/cases/{case_id}``: the worker masks personal data before it answers."""
    where = f"{url.rstrip('/')}/cases/{urllib.parse.quote(case_id, safe='')}"
    try:
        with urllib.request.urlopen(where, timeout=timeout) as r:
            data: dict[str, Any] = orjson.loads(r.read())
            return data
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise OpsError(f"case {case_id} not found (GET {where} answered 404)") from None
        raise OpsError(f"GET {where} answered {e.code} {_reason(e)}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise OpsError(f"cannot reach the worker at {url}: {reason} (set --url or {URL_ENV})",
                       code=2) from None
    except orjson.JSONDecodeError:
        raise OpsError(f"GET {where} did not answer JSON: is {url} a zhida worker?") from None


def _reason(e: urllib.error.HTTPError) -> str:
    """The worker's JSON ``error`` (a 400's reason), else the status line's reason."""
    with contextlib.suppress(Exception):
        error = orjson.loads(e.read(4096))["error"]
        if isinstance(error, str):
            return f"{e.reason}: {error}"
    return str(e.reason)


_SKIP_IN_DETAILS = {"case_id", "seq", "at", "type", "state", "unit", "actor"}


TEXT_LIMIT = 400  # characters of a free text (a summary) printed on one line


def case_lines(data: dict[str, Any], unit_name: Callable[[str], str] | None = None
               ) -> list[str]:
    """The case for a terminal: a header of what it is and where it stands, then its
    history one event a line (what changed, who did it, the rest as key=value). Every
    value inert and cut (``_v``): the worker's answer carries what other systems wrote."""
    def unit(code: Any) -> str:
        if not code:
            return "-"
        name = unit_name(str(code)) if unit_name else str(code)
        return _v(f"{code} {name}" if name and name != code else code)

    lines = [f"case        {_v(data.get('case_id'))}"]
    state = _v(data.get("state"))
    if data.get("stage"):
        state += f" (stage {_v(data['stage'])}, due {_v(data.get('due') or '-')})"
    if data.get("outcome"):
        state += f" outcome {_v(data['outcome'])}"
    lines.append(f"state       {state}")
    lines.append(f"unit        {unit(data.get('unit'))}")
    if data.get("co_handlers"):
        lines.append(f"co-handlers {', '.join(unit(u) for u in data['co_handlers'])}")
    lines.append(f"category    {_v(data.get('category'))} · priority {_v(data.get('priority'))}"
                 f" · source {_v(data.get('source'))}")
    if data.get("summary"):
        lines.append(f"summary     {_v(data['summary'], TEXT_LIMIT)}")
    if data.get("location"):
        lines.append(f"location    {_v(orjson.dumps(data['location']).decode(), TEXT_LIMIT)}")
    figures = [f"escalation level {_v(data.get('escalation_level', 0))}",
               f"returns {_v(data.get('returns', 0))}",
               f"reopened {_v(data.get('reopened', 0))}"]
    if data.get("first_responsible"):
        figures.append("首接负责 (first responsible)")
    if data.get("supervisor"):
        figures.append(f"supervised by {_v(data['supervisor'])} "
                       f"until {_v(data.get('supervise_due'))}")
    lines.append(f"figures     {' · '.join(figures)}")
    for c in data.get("complainants") or ():
        citizen = c.get("citizen") or {}
        who = " ".join(_v(citizen[k]) for k in ("name", "phone") if citizen.get(k))
        lines.append(f"complainant {_v(c.get('complaint_id'))} via {_v(c.get('channel'))}"
                     + (f": {who}" if who else ""))
    history = data.get("history") or []
    lines.append(f"history     {len(history)} event{'s' if len(history) != 1 else ''}")
    rows = [("seq", "at", "type", "state", "unit", "actor", "details")]
    for e in history:
        details = " ".join(f"{_v(k)}={_short(v)}" for k, v in e.items()
                           if k not in _SKIP_IN_DETAILS and v not in (None, "", [], 0))
        rows.append((_v(e.get("seq", "")), _v(e.get("at", "")), _v(e.get("type", "")),
                     _v(e.get("state", "")), _v(e.get("unit", "")),
                     _v(e.get("actor") or ""), details))
    lines += ["  " + line for line in table(rows)]
    return lines


def case_json(data: dict[str, Any]) -> str:
    """``zhida case --json``: the worker's answer indented, inert and still JSON."""
    return visible_json(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _v(value: Any, limit: int = LIMIT) -> str:
    """One value printed on a line: inert, and cut at ``limit`` characters."""
    return visible(value if isinstance(value, str) else str(value), limit)


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else orjson.dumps(v).decode()
    text = " ".join(text.split())
    return visible(text if len(text) <= 80 else text[:77] + "...")


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns, the last one unpadded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
            for r in rows]


# ---- dead letters ----


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


async def read_letters(bootstrap: str, topic: str, timeout: float, auth: Auth = None
                       ) -> list[Letter]:
    """Every dead letter up to the end offsets seen at the start (a snapshot: letters
    arriving meanwhile are left for the next run)."""
    md = await cluster(bootstrap, timeout, auth)
    parts = md.partitions_for_topic(topic)
    if not parts:
        raise OpsError(f"topic {topic} does not exist on the brokers at {bootstrap}")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=100,
                                **(auth or {}))
    letters: list[Letter] = []
    with _quiet_aiokafka():
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
                                   f"{max(timeout, 30.0):g} s", code=2)
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
        lines.append(f"{_v(reason, 64):<20} {len(group):>6}")
        for x in group[-latest:] if latest > 0 else ():
            b = x.body
            where = _v(f"{b.get('source_topic')}[{b.get('partition')}]@{b.get('offset')}")
            detail = b.get("detail", "")
            lines.append(f"  {x.ref:<8} {_v(b.get('at', ''))}  {where}  key={_v(b.get('key'))}"
                         f"  {_short(mask_text(detail) if isinstance(detail, str) else detail)}")
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
                       code=2) from None
    chosen = [x for x in letters if x.offset == n and (p is None or x.partition == p)]
    if not chosen:
        raise OpsError(f"no dead letter at {offset}")
    if len(chosen) > 1:
        raise OpsError(f"offset {n} is on {len(chosen)} partitions ("
                       + ", ".join(x.ref for x in chosen) + "): give P:N", code=2)
    return chosen


@dataclass
class Resubmitted:
    sent: list[Letter] = field(default_factory=list)
    skipped: list[tuple[Letter, str]] = field(default_factory=list)


def inbound_topics(prefix: str) -> set[str]:
    return {prefix + s.suffix for s in SPECS if s.direction == "in"}


def resubmit_lines(done: Resubmitted, chosen: list[Letter], dry_run: bool, fixed: bool
                   ) -> list[str]:
    """What ``deadletters --resubmit/--offset`` did, one line per letter."""
    verb = "would resubmit" if dry_run else "resubmitted"
    what = "a corrected body for " if fixed else ""
    many = len(chosen) != 1
    lines = [f"{verb} {what}{len(done.sent)} of {len(chosen)} dead letter{'s' if many else ''} "
             f"to {'their source topics' if many else 'its source topic'}"
             + (f"; skipped {len(done.skipped)}" if done.skipped else "")]
    lines += [f"  {x.ref:<8} → {_v(x.body.get('source_topic'))} key={_v(x.body.get('key'))}"
              for x in done.sent]
    lines += [f"  {x.ref:<8} skipped: {_v(why)}" for x, why in done.skipped]
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
    with _quiet_aiokafka():
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
        raise OpsError(f"--fixed {path}: {e.strerror or e}", code=2) from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise OpsError(f"--fixed {path}: invalid JSON: {e}", code=2) from None
    if not isinstance(body, dict):
        raise OpsError(f"--fixed {path}: a message body is a JSON object, "
                       f"got {type(body).__name__}", code=2)
    return raw.strip()


# ---- consumer lag ----


@dataclass(frozen=True)
class LagRow:
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing here yet
    end: int
    lag: int


async def consumer_lag(bootstrap: str, group: str, prefix: str, timeout: float,
                       auth: Auth = None) -> tuple[list[LagRow], str]:
    """Committed offsets of ``group`` against the partitions' end offsets, and a line on
    the group itself (state, members) when the brokers describe it.

    The partitions are named in the request (the deployment's topics: the prefix's and the
    group's own): asking for "all of the group's offsets" (a null topic list) is not
    understood by every broker (Tansu 0.6 answers it with a frame aiokafka cannot read).
    Rows: every partition with a committed offset, and every partition of a topic the
    engine consumes (its input topics and ``case.commands``), committed or not yet.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    md = await cluster(bootstrap, timeout, auth)
    consumed = inbound_topics(prefix) | {prefix + "case.commands"}
    asked = [TopicPartition(t, p) for t in sorted(md.topics())
             if t.startswith((prefix, f"{group}-")) for p in md.partitions_for_topic(t) or ()]
    if not asked:
        return [], "no topics of this deployment on the brokers"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                request_timeout_ms=int(max(timeout, 5.0) * 1000),
                                **(auth or {}))
    with _quiet_aiokafka():
        await admin.start()
        try:
            offsets = await asyncio.wait_for(
                admin.list_consumer_group_offsets(group, partitions=asked), timeout)
            about = await _describe_group(admin, group, timeout)
        except Exception as e:
            raise OpsError(f"the brokers at {bootstrap} did not give the offsets of group "
                           f"{group}: {e}", code=2) from None
        finally:
            await admin.close()
        committed = {tp: o.offset for tp, o in offsets.items() if o.offset >= 0}
        if not committed:
            return [], about
        topics = {tp.topic for tp in committed} | consumed
        tps = sorted((tp for tp in asked if tp.topic in topics),
                     key=lambda tp: (tp.topic, tp.partition))
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    enable_auto_commit=False, **(auth or {}))
        await consumer.start()
        try:
            consumer.assign(tps)
            ends = await log_ends(consumer, tps, timeout)
            unset = [tp for tp in tps if tp not in committed]
            begins = await consumer.beginning_offsets(unset) if unset else {}
        finally:
            await consumer.stop()
    rows = []
    for tp in tps:
        at = committed.get(tp)
        start = at if at is not None else begins[tp]
        rows.append(LagRow(tp.topic, tp.partition, at, ends[tp], max(ends[tp] - start, 0)))
    return rows, about


async def _describe_group(admin: Any, group: str, timeout: float) -> str:
    try:
        [response] = await asyncio.wait_for(admin.describe_consumer_groups([group]), timeout)
        g = response.groups[0]
        members = len(g[5])
        return f"state {g[2] or 'unknown'}, {members} member{'s' if members != 1 else ''}"
    except Exception:  # a broker without DescribeGroups: the offsets still tell the lag
        return "state not described by the brokers"


def lag_lines(rows: list[LagRow], group: str, bootstrap: str, about: str) -> list[str]:
    if not rows:
        return [f"consumer group {_v(group)} on {_v(bootstrap)} has committed no offsets "
                f"({_v(about)}): has a worker with this app id (ZHIDA_APP_ID) consumed yet?"]
    table_rows = [("topic", "partition", "committed", "end", "lag")]
    table_rows += [(_v(r.topic), str(r.partition),
                    "-" if r.committed is None else str(r.committed), str(r.end), str(r.lag))
                   for r in rows]
    total = sum(r.lag for r in rows)
    return [f"consumer group {_v(group)} on {_v(bootstrap)} ({_v(about)})", *table(table_rows),
            f"total lag {total} over {len(rows)} partitions"]


# ---- output ----


def quiet_broken_pipe() -> None:
    """``zhida tail … | head``: the reader left; end quietly instead of a flush error."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
