"""What ``GET /hotspots``, ``GET /precedents`` and the board show of ``zhida.insights``
(CONTRACT.md "Recurring problems and disputes"), for the whole city from any worker.

The case writer keeps each insight under ``i:<insight_id>`` (a hotspot's counts kept current)
and each precedent under ``r:<ruling_id>`` (engine/runtime/writer.py ``_keep_insights``), on
the partition of the aggregate that made it: a hotspot and a precedent on their place's merge
group's, a dispute and its ruling on their case's. So, like the figures, a worker reads the
records of the partitions it holds (``partition_records``), each tagged with its partition, and
the worker asked gathers every other worker's at ``GET /internal/share`` and keeps each
partition's from one answer (engine/runtime/http/citywide.py: ``records`` of a ``Share``).
What is left is pure and here: which records a question keeps, in which order.

Share record kinds (``KINDS``):

- ``hotspots``: the hotspots whose ``at`` (when raised) falls on a local day of the period,
  with ``unit`` at or below the unit asked when one is;
- ``open_disputes``: the disputes of the period no ruling names (``dispute_id``) yet. A ruling
  is its case's, so on the dispute's partition: each partition can tell its own open ones;
- ``precedents``: every precedent, revoked ones with ``revoked_at``.

Cost: a prefix read (by kind: ``i:hotspot/``, ``i:dispute/``, ``i:ruling/``, ``r:``) over
every record of the kind the partition has ever kept, whatever the period: the keys are ids,
not times. A day index kept by the case writer would bound it by the period.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.data.topology import Topology
from engine.runtime.store import CaseStore

KINDS = ("hotspots", "open_disputes", "precedents")
BOARD_HOTSPOTS = 5  # the board's top hotspots of the day
BOARD_DISPUTES = 20  # open disputes the board lists, newest first

Record = dict[str, Any]


# ---- pure: which records, in which order ----


def local_day(at: Any, tz: ZoneInfo) -> date:
    """The local day of a record's ``at`` (RFC 3339 as stored; an instant without an offset
    is UTC, as the figures take it)."""
    t = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(tz).date()


def in_period(record: Mapping[str, Any], start: date, end: date, tz: ZoneInfo) -> bool:
    """``at`` falls on a local day of [start, end]; a record without one never does."""
    try:
        return start <= local_day(record["at"], tz) <= end
    except (KeyError, TypeError, ValueError):
        return False


def at_or_below(code: Any, unit: str, topology: Topology) -> bool:
    """``code`` is ``unit`` or a unit below it (a code outside the topology is below none)."""
    return code == unit or (isinstance(code, str) and code in topology
                            and topology.is_ancestor(unit, code))


def hotspots_in(records: Iterable[Mapping[str, Any]], start: date, end: date, tz: ZoneInfo,
                unit: str | None = None, topology: Topology | None = None) -> list[Record]:
    """The hotspots of ``records`` raised in the period, with ``unit`` (when given) at or
    below it."""
    out = []
    for r in records:
        if r.get("kind") != "hotspot" or not in_period(r, start, end, tz):
            continue
        if unit is not None and (topology is None or not at_or_below(r.get("unit"), unit,
                                                                     topology)):
            continue
        out.append(dict(r))
    return out


def _instant(at: Any) -> datetime:
    t = datetime.fromisoformat(str(at))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def ranked(hotspots: Iterable[Mapping[str, Any]]) -> list[Record]:
    """Most ``reports`` first; among equals the one raised first, then by id: one order on
    every worker."""
    return sorted((dict(h) for h in hotspots),
                  key=lambda h: (-int(h.get("reports", 0)), _instant(h["at"]),
                                 str(h.get("insight_id", ""))))


def open_disputes(disputes: Iterable[Mapping[str, Any]], rulings: Iterable[Mapping[str, Any]]
                  ) -> list[Record]:
    """The disputes no ruling names."""
    ruled = {r.get("dispute_id") for r in rulings}
    return [dict(d) for d in disputes if d.get("insight_id") not in ruled]


def newest_first(records: Iterable[Mapping[str, Any]]) -> list[Record]:
    return sorted((dict(r) for r in records), key=lambda r: (
        _instant(r["at"]), str(r.get("insight_id", ""))), reverse=True)


def by_time(precedents: Iterable[Mapping[str, Any]]) -> list[Record]:
    """Oldest ruling first (then by id)."""
    return sorted((dict(p) for p in precedents),
                  key=lambda p: (_instant(p["at"]), str(p.get("insight_id", ""))))


def untagged(records: Iterable[Mapping[str, Any]]) -> list[Record]:
    """Records as answered: without the ``partition`` a share tagged them with."""
    return [{k: v for k, v in r.items() if k != "partition"} for r in records]


def place_text(place: Any) -> str:
    """A place for people: the unit code, or ``"lat,lon"`` of a point cluster."""
    if isinstance(place, Mapping):
        return f"{place.get('lat')},{place.get('lon')}"
    return "" if place is None else str(place)


def board_hotspots(hotspots: Iterable[Mapping[str, Any]], topology: Topology,
                   n: int = BOARD_HOTSPOTS) -> list[Record]:
    """The board's top ``n`` hotspots by reports: what it shows of each."""
    return [{"insight_id": h["insight_id"], "at": h["at"], "category": h.get("category"),
             "place": place_text(h.get("place")), "unit": h.get("unit"),
             "unit_name": topology.name(str(h.get("unit"))), "reports": h.get("reports", 0),
             "cases": h.get("cases", 0)}
            for h in ranked(hotspots)[:n]]


def board_disputes(disputes: Iterable[Mapping[str, Any]], topology: Topology,
                   n: int = BOARD_DISPUTES) -> list[Record]:
    """The board's open disputes, newest first: what it shows of each."""
    return [{"insight_id": d["insight_id"], "at": d["at"], "case_id": d.get("case_id"),
             "category": d.get("category"), "units": list(d.get("units") or ()),
             "arbiter": d.get("arbiter"), "arbiter_name": topology.name(str(d.get("arbiter")))}
            for d in newest_first(disputes)[:n]]


# ---- this worker's records ----


def partition_records(store: CaseStore, partition: int, kinds: Collection[str], start: date,
                      end: date, tz: ZoneInfo, unit: str | None = None,
                      topology: Topology | None = None) -> dict[str, list[Record]]:
    """The records of ``kinds`` (of ``KINDS``) kept on ``partition`` for the period, each
    tagged with its ``partition``: one share's part (engine/runtime/http/citywide.py)."""
    out: dict[str, list[Record]] = {}
    if "hotspots" in kinds:
        out["hotspots"] = hotspots_in(store.insights(partition, "hotspot"), start, end, tz,
                                      unit, topology)
    if "open_disputes" in kinds:
        disputes = [d for d in store.insights(partition, "dispute")
                    if d.get("kind") == "dispute" and in_period(d, start, end, tz)]
        rulings = store.insights(partition, "ruling") if disputes else iter(())
        out["open_disputes"] = open_disputes(disputes, rulings)
    if "precedents" in kinds:
        out["precedents"] = list(store.precedents(partition))
    return {k: [{**r, "partition": partition} for r in v] for k, v in out.items()}
