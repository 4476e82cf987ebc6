"""``zhida tail``: follow contract topics, decoded, filtered by unit or case, masked and inert;
read with no consumer group, so the engine's offsets never move.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.runtime.pii import mask_record
from engine.tools.inert import LIMIT, visible, visible_json
from engine.tools.ops.brokers import Auth, cluster, log_ends, quiet_aiokafka
from engine.tools.ops.common import EXIT_USAGE, OpsError, decode
from topics import CITY_DISPATCH, DISPATCH_SUFFIX, SPECS, TopicNames

# value fields that name a unit, matched by ``zhida tail --unit``
UNIT_FIELDS = ("unit", "target", "actor", "late_unit", "supervisor", "issuer", "assign_to")


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
                       f"(e.g. {codes[0]}) or {CITY_DISPATCH!r}", code=EXIT_USAGE)
    known = ", ".join(s.suffix for s in SPECS)
    raise OpsError(f"unknown topic {name!r}: one of {known}, dispatch.<district code>, "
                   "dispatch (all of them), with or without the prefix " + repr(prefix),
                   code=EXIT_USAGE)


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
    """``zhida tail``'s filters (``--unit``, ``--case``) and how records are shown."""

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
    with quiet_aiokafka():
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
