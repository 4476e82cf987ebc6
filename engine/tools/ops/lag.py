"""``zhida lag``: the committed offsets of the engine's consumer group against each
partition's end offset, as an inert table.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.tools.ops.brokers import Auth, cluster, inbound_topics, log_ends, quiet_aiokafka
from engine.tools.ops.common import EXIT_USAGE, OpsError, shown, table


@dataclass(frozen=True)
class LagRow:
    """One partition: the group's committed offset, the partition's end, the lag between."""

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
    with quiet_aiokafka():
        await admin.start()
        try:
            offsets = await asyncio.wait_for(
                admin.list_consumer_group_offsets(group, partitions=asked), timeout)
            about = await _describe_group(admin, group, timeout)
        except Exception as e:
            raise OpsError(f"the brokers at {bootstrap} did not give the offsets of group "
                           f"{group}: {e}", code=EXIT_USAGE) from None
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
    """The group's state and member count, as the brokers describe it."""
    try:
        [response] = await asyncio.wait_for(admin.describe_consumer_groups([group]), timeout)
        g = response.groups[0]
        members = len(g[5])
        return f"state {g[2] or 'unknown'}, {members} member{'s' if members != 1 else ''}"
    except Exception:  # a broker without DescribeGroups: the offsets still tell the lag
        return "state not described by the brokers"


def lag_lines(rows: list[LagRow], group: str, bootstrap: str, about: str) -> list[str]:
    """The group's line, a table of its partitions and the total lag (or why there is none)."""
    if not rows:
        return [f"consumer group {shown(group)} on {shown(bootstrap)} has committed no offsets "
                f"({shown(about)}): has a worker with this app id (ZHIDA_APP_ID) consumed yet?"]
    table_rows = [("topic", "partition", "committed", "end", "lag")]
    table_rows += [(shown(r.topic), str(r.partition),
                    "-" if r.committed is None else str(r.committed), str(r.end), str(r.lag))
                   for r in rows]
    total = sum(r.lag for r in rows)
    return [f"consumer group {shown(group)} on {shown(bootstrap)} ({shown(about)})",
            *table(table_rows), f"total lag {total} over {len(rows)} partitions"]
