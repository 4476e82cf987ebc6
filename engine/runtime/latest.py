"""What the board lists as latest: the escalations (督办) this worker's writer produced, kept in
memory, and the directives most recently issued on its partitions, read from the store.

The case writer notes every ``escalated`` event here once it is written (engine/runtime/
writer.py); the board (engine/runtime/http/board.py) and the other workers' share requests
(engine/runtime/http/citywide.py) read it.
"""

from __future__ import annotations

import heapq
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.core.directive import DirectiveEvent, DirectiveState
from engine.core.model import CaseEvent
from engine.data.topology import Topology
from engine.runtime.store import unpack

if TYPE_CHECKING:
    from engine.runtime.app import Engine

LATEST = 20  # escalations and directives listed
DIRECTIVE_TTL = 2.0  # seconds a directive read is reused


# ---- the escalation ring, filled by the writer ----


@dataclass
class _Board:
    """What the board keeps between requests for one engine."""

    escalations: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LATEST))
    seen: set[tuple[str, str, int]] = field(default_factory=set)
    directives: tuple[float, list[int], list[dict[str, Any]]] | None = None


_BOARDS: weakref.WeakKeyDictionary[Engine, _Board] = weakref.WeakKeyDictionary()


def _board(engine: Engine) -> _Board:
    b = _BOARDS.get(engine)
    if b is None:
        b = _BOARDS[engine] = _Board()
    return b


def note_escalation(engine: Engine, event: CaseEvent | DirectiveEvent) -> None:
    """Remember an ``escalated`` event (督办) of a case or a directive task for the board.

    Called by the case writer for each ``escalated`` event it produces; anything else is
    ignored, so the writer may pass every event. O(1): a bounded deque. A command replayed
    after a crash produces the same (id, seq) again, which is kept once.
    """
    if event.type != "escalated":
        return
    if isinstance(event, CaseEvent):
        kind, ident = "case", event.case_id
    else:
        kind, ident = "directive", event.directive_id
    b = _board(engine)
    key = (kind, ident, event.seq)
    if key in b.seen:
        return
    if len(b.escalations) == b.escalations.maxlen:
        old = b.escalations[0]
        b.seen.discard((old["kind"], old["id"], old["seq"]))
    b.seen.add(key)
    b.escalations.append({
        "kind": kind, "id": ident, "seq": event.seq, "at": event.at.isoformat(),
        "late_unit": event.late_unit or (event.target if isinstance(event, DirectiveEvent)
                                         else event.unit),
        "supervisor": event.supervisor, "level": event.escalation_level,
        "stage": event.stage, "top": bool(event.top),
        "partition": engine.store.partition(ident),
    })


def held_escalations(engine: Engine, partitions: list[int]) -> list[dict[str, Any]]:
    """This worker's ring, newest first, only of ``partitions`` (a rebalance may move some
    away), each with its ``partition``: a worker's share for the board
    (engine/runtime/http/citywide.py)."""
    keep = set(partitions)
    return [dict(e) for e in reversed(_board(engine).escalations) if e["partition"] in keep]


def named_escalation(e: Mapping[str, Any], topo: Topology) -> dict[str, Any]:
    """An escalation as the board lists it: with the units' names and district."""
    late, sup = e["late_unit"], e["supervisor"]
    return {**{k: v for k, v in e.items() if k != "partition"},
            "late_name": topo.name(late) if late else None,
            "supervisor_name": topo.name(sup) if sup else None,
            "district": topo.district_of(late) if late in topo else None}


def latest_escalations(engine: Engine) -> list[dict[str, Any]]:
    """Newest first, only those of partitions still held (a rebalance may move some away)."""
    topo = engine.world.topology
    return [named_escalation(e, topo)
            for e in held_escalations(engine, list(engine.partitions))]


def _instant(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def newest_escalations(found: list[dict[str, Any]], topo: Topology, n: int = LATEST
                       ) -> list[dict[str, Any]]:
    """Several workers' escalations as one list: newest ``at`` first (ties in one order on
    every worker), the first ``n``."""
    found = sorted(found, key=lambda e: (_instant(e["at"]), e["kind"], e["id"], e["seq"]),
                   reverse=True)
    return [named_escalation(e, topo) for e in found[:n]]


# ---- directives, from the store ----


def directive_rows(engine: Engine, held: list[int], n: int = LATEST) -> list[dict[str, Any]]:
    """The ``n`` (at most ``LATEST``) most recently issued directives on the ``held``
    partitions, with their acknowledgement ratio (as ``GET /directives/{id}`` counts it) and
    their ``partition``."""
    b = _board(engine)
    held = list(held)
    cached = b.directives
    if cached is not None and cached[1] == held and time.monotonic() - cached[0] < DIRECTIVE_TTL:
        return cached[2][:n]
    store = engine.store
    found: dict[str, dict[str, Any]] = {}
    where: dict[str, int] = {}
    for p in held:
        # CaseStore has no public prefix read; this is the one it uses for a directive's tasks
        for k, raw in store._prefixed(p, b"d:"):
            did = k[2:].decode()
            # the memory store is one dict for every partition: keep only what p owns
            if did not in found and store.partition(did) == p:
                found[did] = unpack(raw)
                where[did] = p
    newest = heapq.nlargest(LATEST, found.items(),
                            key=lambda kv: datetime.fromisoformat(str(kv[1]["issued_at"])))
    topo = engine.world.topology
    out = []
    for did, rec in newest:
        d = DirectiveState.model_validate({**rec, "directive_id": did})
        out.append({
            "directive_id": did, "title": d.title, "issuer": d.issuer,
            "issuer_name": topo.name(d.issuer), "issued_at": d.issued_at.isoformat(),
            "targets": d.targets, "acknowledged": d.acknowledged, "reported": d.reported,
            "escalated": d.escalated,
            "ack_ratio": round(d.acknowledged / d.targets, 4) if d.targets else 0.0,
            "fully_acknowledged_at": (d.fully_acknowledged_at.isoformat()
                                      if d.fully_acknowledged_at else None),
            "completed_at": d.completed_at.isoformat() if d.completed_at else None,
            "partition": where[did],
        })
    b.directives = (time.monotonic(), held, out)
    return out[:n]


def newest_directives(found: list[dict[str, Any]], n: int = LATEST) -> list[dict[str, Any]]:
    """Several workers' latest directives as one list: newest ``issued_at`` first."""
    found = sorted(found, key=lambda d: (_instant(d["issued_at"]), d["directive_id"]),
                   reverse=True)
    return [{k: v for k, v in d.items() if k != "partition"} for d in found[:n]]
