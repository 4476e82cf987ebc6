"""The whole city from any worker (CONTRACT.md "Several workers: one city"): scatter-gather.

A worker keeps the figure records of the case-table partitions it holds and no others. When
``GET /units/{code}/stats``, ``GET /hotspots``, ``GET /precedents`` or the board asks for the
city, the worker takes its own *share* (per held partition: each unit's counters for the
period, plus the directive, escalation and insight records asked for,
engine/runtime/http/insights.py) and asks every other worker of the group for theirs at the
internal route ``GET /internal/share`` (for workers only), all at once, waiting at most
``PEER_TIMEOUT``.
Where the others are comes from faust's assignor (``app.router.table_metadata``: each member's
``canonical_url``, handed out with every assignment).

Shares are summed **per partition**: when two answers claim one partition (a rebalance between
two asks), the newer is counted and the other's copy of it dropped, so nothing counts twice;
a worker that does not answer is left out, and ``coverage`` says so: ``counted`` partitions of
``partitions``, ``as_of`` the oldest moment a counted share was taken. Rates are computed
again from the summed counts (``figures.stats_of``), never averaged. Why this and not
snapshots on a compacted topic, a GlobalTable or a repartition: docs/design.md, "Several
workers, one city".

The summing (``combine``) and the wire form of a share are pure; the rest reads the store and
the network.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
from yarl import URL

from engine.core import figures
from engine.data.topology import Topology
from engine.runtime import logs
from engine.runtime.app import Engine
from engine.runtime.http import insights
from engine.runtime.latest import LATEST, directive_rows, held_escalations
from engine.runtime.store import CaseStore, figures_now_key

SHARE_PATH = "/internal/share"
PEER_TIMEOUT = 2.0  # seconds a peer may take: a dead one is left out, not waited for
QUIET_FOR = 60.0  # a peer that keeps failing is logged at info once per this many seconds
log = logs.get("zhida.citywide")

Counters = dict[str, dict[str, int]]  # unit code -> counter -> n


# ---- pure: a share, and the sum of several ----


@dataclass(frozen=True)
class Share:
    """What one worker answers for the partitions it holds, taken at ``taken_at``.

    ``units``: partition -> unit -> counters (the period's day counters plus now's; empty
    when none were asked for): the partitions the share claims;
    ``records``: lists by kind (``RECORD_KINDS``) of records each carrying its ``partition``,
    so they are counted with their partition's share.
    """

    worker: str
    taken_at: datetime
    units: Mapping[int, Mapping[str, Mapping[str, int]]]
    records: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class City:
    """Shares summed: one per partition counted."""

    units: Counters
    records: dict[str, list[dict[str, Any]]]
    counted: list[int]
    partitions: int
    as_of: datetime | None

    @property
    def whole(self) -> bool:
        return len(self.counted) == self.partitions

    def coverage(self) -> dict[str, Any]:
        """The contract's ``coverage`` field."""
        return {"partitions": self.partitions, "counted": len(self.counted),
                "as_of": self.as_of.isoformat() if self.as_of else None}


def pick(shares: Iterable[Share], partitions: int) -> dict[int, Share]:
    """The share counted for each partition some share claims (of 0..partitions-1): the one
    taken last, as a claim from before a rebalance is the older one; on a tie the first."""
    chosen: dict[int, Share] = {}
    for s in shares:
        for p in s.units:
            if 0 <= p < partitions and (p not in chosen or s.taken_at > chosen[p].taken_at):
                chosen[p] = s
    return chosen


def combine(shares: Iterable[Share], partitions: int) -> City:
    """Sum the shares, each partition once (``pick``); ``as_of`` is the oldest ``taken_at``
    of the shares that count for at least one partition, None when none does."""
    shares = list(shares)
    chosen = pick(shares, partitions)
    units: Counters = {}
    for p in sorted(chosen):
        figures.merge(units, chosen[p].units[p])
    records: dict[str, list[dict[str, Any]]] = {}
    for s in shares:
        for kind, items in s.records.items():
            kept = records.setdefault(kind, [])
            kept += [dict(r) for r in items if chosen.get(_partition(r)) is s]
    counting = [s for s in shares if any(c is s for c in chosen.values())]
    as_of = min((s.taken_at for s in counting), default=None)
    return City(units, records, sorted(chosen), partitions, as_of)


def _partition(record: Mapping[str, Any]) -> int:
    p = record.get("partition")
    return p if isinstance(p, int) else -1


def share_json(share: Share) -> dict[str, Any]:
    """A share as ``GET /internal/share`` answers it."""
    return {"worker": share.worker, "taken_at": share.taken_at.isoformat(),
            "partitions": sorted(share.units),
            "units": {str(p): u for p, u in sorted(share.units.items())},
            **{k: list(v) for k, v in share.records.items()}}


RECORD_KINDS = ("directives", "latest_directives", "escalations", *insights.KINDS)


def parse_share(body: Any) -> Share:
    """The share a peer answered; ValueError for anything that is not one (an answer from
    another version or another program is left out, like no answer)."""
    try:
        taken_at = datetime.fromisoformat(body["taken_at"])
        units = {int(p): {str(u): {str(n): int(v) for n, v in c.items()}
                          for u, c in unit_counters.items()}
                 for p, unit_counters in body["units"].items()}
        records = {k: [dict(r) for r in body.get(k, [])] for k in RECORD_KINDS if k in body}
        worker = str(body.get("worker", ""))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"not a share: {type(e).__name__}: {e}") from None
    if taken_at.tzinfo is None:
        raise ValueError("not a share: taken_at has no offset")
    return Share(worker, taken_at, units, records)


def collapse(own: Mapping[str, Mapping[str, int]], unit: str, topology: Topology) -> Counters:
    """Each unit's counters added up under ``unit`` itself or the child of ``unit`` it lies
    below; units outside ``unit``'s subtree (or the topology) left out.

    ``figures.rollup(unit, ...)`` gives the same total and children from this as from
    ``own``, and a share's size is bounded by the fan-out of ``unit`` (the city: its
    districts and city departments), not by the number of grids with counters.
    """
    out: Counters = {}
    for code, c in own.items():
        if code not in topology:
            continue
        below = code
        for link in (code, *topology.ancestors(code)):
            if link == unit:
                figures.merge(out, {below: c})
                break
            below = link
    return out


# ---- this worker's share ----


@dataclass
class _Held:
    revoked: set[int] = field(default_factory=set)


_HELD: weakref.WeakKeyDictionary[Any, _Held] = weakref.WeakKeyDictionary()


def held(engine: Engine) -> list[int]:
    """The case-table partitions this worker answers for: those recovered at the last
    rebalance (``engine.partitions``) and not revoked since. While the group rebalances a
    worker claims none of the partitions being moved, rather than their stale state."""
    h = _HELD.get(engine)
    revoked = h.revoked if h is not None else set()
    return [p for p in engine.partitions if p not in revoked]


def track(engine: Engine) -> None:
    """Follow revocations and assignments so that ``held`` is true during a rebalance."""
    h = _HELD[engine] = _Held()
    commands = engine.names.case_commands

    def revoked(_sender: Any, tps: Iterable[Any], **_: Any) -> None:
        h.revoked |= {tp.partition for tp in tps if tp.topic == commands}

    def assigned(_partitions: list[int]) -> None:
        h.revoked.clear()  # engine.partitions is the new assignment, recovered

    engine.app.on_partitions_revoked.connect(revoked, weak=False)
    engine.on_assignment.append(assigned)


def partition_units(store: CaseStore, partition: int, start: date, end: date,
                    unit: str, topology: Topology) -> Counters:
    """The counters of one partition over [start, end] plus now, collapsed under ``unit``
    (``collapse``): a range read of its day records and one now record."""
    now = store.figures(partition, figures_now_key(partition))["units"]
    days = dict(store.figures_days(partition, start.isoformat(), end.isoformat()))
    own = figures.per_unit(start, end, {d: rec["units"] for d, rec in days.items()}, now)
    return collapse(own, unit, topology)


def local_share(engine: Engine, start: date, end: date, *, unit: str | None = None,
                issuer: str | None = None, latest: int = 0, records: Collection[str] = (),
                counters: bool = True) -> Share:
    """This worker's share: ``unit``'s counters per held partition (None: the city's),
    collapsed to its children (``collapse``), or none without ``counters``; with ``issuer``,
    the directives it issued in the period; with ``latest``, the board's latest directives
    and escalations of the held partitions; ``records``, the insight records of those kinds
    (``insights.KINDS``: hotspots of the period at or below ``unit``, open disputes of the
    period, precedents)."""
    parts = held(engine)
    topo = engine.world.topology
    taken_at = engine.clock()
    top = unit or topo.city
    tz = ZoneInfo(engine.world.policy.calendar.timezone)
    units = {p: partition_units(engine.store, p, start, end, top, topo) if counters else {}
             for p in parts}
    kept: dict[str, list[dict[str, Any]]] = {}
    if issuer is not None:
        kept["directives"] = [
            {**d.model_dump(mode="json"), "partition": p}
            for p in parts for d in engine.store.directives(p)
            if d.issuer == issuer and start <= d.issued_at.astimezone(tz).date() <= end]
    if latest:
        n = min(latest, LATEST)  # what the board lists
        kept["latest_directives"] = directive_rows(engine, parts, n)
        kept["escalations"] = held_escalations(engine, parts)[:n]
    for kind in records:
        kept[kind] = []  # said even when empty: a peer that does not say it is left out
    for p in parts if records else ():
        for kind, found in insights.partition_records(engine.store, p, records, start, end,
                                                      tz, unit, topo).items():
            kept[kind].extend(found)
    return Share(str(engine.app.conf.canonical_url), taken_at, units, kept)


# ---- the others' shares ----


def _ident(url: URL | str) -> tuple[str, int]:
    u = URL(str(url))
    return (u.host or "", u.port or 80)


def peer_urls(engine: Engine) -> list[str]:
    """The other workers holding case-table partitions at the last assignment."""
    try:
        meta = engine.app.router.table_metadata(engine.cases.name)
    except (KeyError, AttributeError):
        return []
    me = _ident(engine.app.conf.canonical_url)
    return sorted(url for url, topics in meta.items()
                  if any(topics.values()) and _ident(url) != me)


_missed: dict[str, float] = {}


def _note_missing(url: str, reason: str) -> None:
    """A peer left out: info once per ``QUIET_FOR`` per peer, debug otherwise."""
    now = time.monotonic()
    if now - _missed.get(url, -QUIET_FOR) >= QUIET_FOR:
        _missed[url] = now
        log.info("citywide_peer_missing", peer=url, reason=reason)
    else:
        log.debug("citywide_peer_missing", peer=url, reason=reason)


async def fetch_share(engine: Engine, url: str, query: Mapping[str, str]) -> Share | None:
    """A peer's share, or None when it does not answer in time or answers no share."""
    target = URL(url).with_path(SHARE_PATH).with_query(dict(query))
    try:
        async with engine.app.http_client.get(
                target, timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT)) as r:
            body = await r.read()
            if r.status != 200:
                raise ValueError(f"HTTP {r.status}")
        share = parse_share(orjson.loads(body))
        asked = [k for k in query.get("records", "").split(",") if k]
        if any(k not in share.records for k in asked):  # a worker of an older version
            raise ValueError(f"no {', '.join(k for k in asked if k not in share.records)}")
        return share
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:  # JSONDecodeError too
        _note_missing(url, f"{type(e).__name__}: {str(e)[:200]}")
        return None


def share_query(start: date, end: date, *, unit: str | None, issuer: str | None,
                latest: int, records: Collection[str] = (), counters: bool = True
                ) -> dict[str, str]:
    """``local_share``'s arguments as ``GET /internal/share`` takes them
    (engine/runtime/http/routes.py ``share_request``)."""
    q = {"from": start.isoformat(), "to": end.isoformat()}
    if unit is not None:
        q["unit"] = unit
    if issuer is not None:
        q["issuer"] = issuer
    if latest:
        q["latest"] = str(latest)
    if records:
        q["records"] = ",".join(sorted(records))
    if not counters:
        q["counters"] = "0"
    return q


async def gather(engine: Engine, start: date, end: date, *, unit: str | None = None,
                 issuer: str | None = None, latest: int = 0, records: Collection[str] = (),
                 counters: bool = True) -> City:
    """The city over [start, end]: this worker's share and every peer's, summed (the
    arguments: ``local_share``'s)."""
    mine = local_share(engine, start, end, unit=unit, issuer=issuer, latest=latest,
                       records=records, counters=counters)
    peers = peer_urls(engine)
    query = share_query(start, end, unit=unit, issuer=issuer, latest=latest, records=records,
                        counters=counters)
    theirs = await asyncio.gather(*(fetch_share(engine, url, query) for url in peers))
    return combine([mine, *(s for s in theirs if s is not None)], engine.store.partitions)
