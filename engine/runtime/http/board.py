"""The live city board (全局"一屏掌控", issue 16 item 2): one page served by the worker.

``GET /board`` is a static page (engine/runtime/http/static/: HTML, CSS and vanilla JS, no library,
no build
step) with the 38 districts drawn as SVG from engine/data/districts.geojson, projected here once
per process. Not simplified: the source is already generalised (a vertex every ~2 km, 4,990 in
all, scripts/extract_districts.py), which makes 64 KB of SVG path data. The page polls
``GET /board/data`` every few seconds and ``GET /board/districts/{code}`` when a district is
clicked.

Where each figure comes from, and why:

- **Figures** are the supervision counters of engine/core/figures.py for *today* (the city's
  time zone), summed over every partition of the city, this worker's and the other workers'
  (engine/runtime/http/citywide.py), and rolled up in one pass from the city (``figures.rollup``):
  each
  district's row is exactly what ``GET /units/{code}/stats`` answers for it, without 38
  separate roll-ups.
- **Red** is ``overdue`` (open now and past its stage's due), as the endpoint counts it.
- **Yellow** is ``yellow`` (open now, its stage's reminder 催办 sent, not yet past due), a
  "now" counter the writer keeps beside backlog and overdue.
- **Latest escalations** come from a small in-memory ring filled by each worker's case writer
  (``note_escalation``), so a worker's list starts empty when it starts and covers only the
  escalations it has processed since; the board merges every worker's ring by time.
- **Latest directives** are read from the directive records (``d:``) of the held partitions,
  newest ``issued_at`` first: a directive is one small record however many targets it has, so
  the read is over the number of directives, and it survives a restart. The read is cached
  for ``DIRECTIVE_TTL`` seconds so several open boards cost one read; the board merges every
  worker's newest by time.

Every worker shows the same city; the page and ``/board/data`` say how much of it was counted
(``coverage``: partitions counted of all, e.g. while a dead worker's partitions wait for the
group to rebalance).
"""

from __future__ import annotations

import heapq
import html
import math
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from faust.web import Request, Response, View

from engine.core import figures
from engine.core.directive import DirectiveEvent, DirectiveState
from engine.core.model import CaseEvent
from engine.data.topology import Topology
from engine.runtime.app import Engine

# engine.web imports this module to register the board; its functions are looked up when a
# request comes, so importing the module object here (not names from it) is safe either way
from engine.runtime.http import citywide
from engine.runtime.http import routes as web
from engine.runtime.store import unpack

STATIC = Path(__file__).parent / "static"
GEOJSON = Path(__file__).parents[2] / "data" / "districts.geojson"
# what /board/static/{name} may serve, with its type: nothing else leaves the directory
STATIC_FILES = {"board.js": "application/javascript", "board.css": "text/css"}  # utf-8
MAP_WIDTH = 1000.0  # SVG user units; the page scales it
LATEST = 20  # escalations and directives listed
DIRECTIVE_TTL = 2.0  # seconds a directive read is reused
NO_CACHE = {"Cache-Control": "no-store"}
FIELDS = ("received", "responded", "resolved", "rated", "satisfied", "response_rate",
          "resolution_rate", "satisfaction_rate", "on_time_ack_rate", "on_time_resolve_rate",
          "escalations", "reopened")


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


# ---- figures ----


def row(code: str, counters: Mapping[str, int], topo: Topology) -> dict[str, Any]:
    """One unit's line on the board: the contract's figures plus yellow and red."""
    f = figures.figures(counters)
    backlog, overdue = f["backlog"], f["overdue"]
    return {
        "code": code, "name": topo.name(code), "level": topo.level(code),
        "backlog": backlog, "overdue": overdue,
        "yellow": f["yellow"],  # reminded (催办), not yet late
        "red": overdue,
        "overdue_share": round(overdue / backlog, 4) if backlog else None,
        **{k: f[k] for k in FIELDS},
    }


def _today(engine: Engine) -> date:
    """Today, the city's local day."""
    return web.period(None, None, engine.world.policy.calendar.timezone, engine.clock())[0]


def _scope(engine: Engine, city: citywide.City) -> dict[str, Any]:
    return {"partitions": citywide.held(engine),  # this worker's own, as before
            "partition_count": city.partitions, "coverage": city.coverage(),
            "scope": describe_coverage(city.counted, city.partitions)}


def partition_runs(parts: list[int]) -> str:
    """[0, 1, 2, 5] → "0–2, 5"."""
    if not parts:
        return ""
    runs: list[str] = []
    start = prev = parts[0]
    for p in [*parts[1:], None]:
        if p is not None and p == prev + 1:
            prev = p
            continue
        runs.append(str(start) if start == prev else f"{start}–{prev}")
        if p is not None:
            start = prev = p
    return ", ".join(runs)


def describe_coverage(counted: list[int], total: int) -> str:
    """What the figures cover, for the page: the whole city, or how much of it is counted
    (a partition is left out while no worker answers for it), so nobody mistakes a part for
    the city."""
    if not counted:
        return f"no partition of {total} counted yet (starting or rebalancing)"
    if len(counted) >= total:
        word = "partition" if total == 1 else "partitions"
        return f"the whole city ({word} {partition_runs(counted)} of {total})"
    return (f"{len(counted)} of {total} partitions counted ({partition_runs(counted)}): "
            "the others have no worker answering for them now")


async def board_data(engine: Engine) -> dict[str, Any]:
    """``GET /board/data``: the city, each district, the latest escalations and directives."""
    topo = engine.world.topology
    day = _today(engine)
    city = await citywide.gather(engine, day, day, latest=LATEST)
    total, children = figures.rollup(topo.city, city.units, topo)
    return {
        "day": day.isoformat(),
        "timezone": engine.world.policy.calendar.timezone,
        "generated_at": engine.clock().isoformat(),
        **_scope(engine, city),
        "city": row(topo.city, total, topo),
        "districts": [row(code, children.get(code, {}), topo) for code in topo.districts],
        "escalations": newest_escalations(city.records.get("escalations", []), topo),
        "directives": newest_directives(city.records.get("latest_directives", [])),
    }


async def district_data(engine: Engine, code: str) -> dict[str, Any]:
    """``GET /board/districts/{code}``: the district and each unit under it (streets first,
    then departments), the same figures as ``GET /units/{code}/stats`` and its children.
    KeyError for a code that is not a district."""
    topo = engine.world.topology
    if code not in topo or topo.level(code) != "district":
        raise KeyError(code)
    day = _today(engine)
    city = await citywide.gather(engine, day, day, unit=code)
    total, children = figures.rollup(code, city.units, topo)
    units = [row(c, children[c], topo) for c in topo.children(code)]
    units.sort(key=lambda r: (r["level"] != "street", r["code"]))
    return {"day": day.isoformat(), **_scope(engine, city), **row(code, total, topo),
            "children": units}


# ---- the map ----


@dataclass(frozen=True)
class DistrictShape:
    code: str
    name: str
    path: str  # SVG path data in map units
    label: tuple[float, float]
    area: float  # in map units², to decide whether a label fits


def short_name(name: str) -> str:
    """万州区 → 万州, 石柱土家族自治县 → 石柱: labels that fit in small polygons."""
    if name.endswith("自治县"):
        return name[:2]
    if len(name) > 2 and name[-1] in "区县":
        return name[:-1]
    return name


@cache
def district_shapes(path: Path = GEOJSON) -> tuple[tuple[DistrictShape, ...], float, float]:
    """The districts projected (equirectangular at the map's middle latitude: Chongqing spans
    4° of latitude, so nothing fancier shows); (shapes, width, height)."""
    from shapely.geometry import MultiPolygon, Polygon, shape

    features = orjson.loads(path.read_bytes())["features"]
    geoms = [(f["properties"]["code"], f["properties"]["name"], shape(f["geometry"]))
             for f in features]
    minx = min(g.bounds[0] for _, _, g in geoms)
    miny = min(g.bounds[1] for _, _, g in geoms)
    maxx = max(g.bounds[2] for _, _, g in geoms)
    maxy = max(g.bounds[3] for _, _, g in geoms)
    kx = math.cos(math.radians((miny + maxy) / 2))
    scale = MAP_WIDTH / ((maxx - minx) * kx)
    height = (maxy - miny) * scale

    def xy(lon: float, lat: float) -> tuple[float, float]:
        return (lon - minx) * kx * scale, (maxy - lat) * scale

    def ring(coords: Any) -> str:
        pts = [xy(lon, lat) for lon, lat in coords]
        return "M" + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + "Z"

    out = []
    for code, name, g in geoms:
        polys = g.geoms if isinstance(g, MultiPolygon) else [g] if isinstance(g, Polygon) else []
        d = "".join(ring(p.exterior.coords) + "".join(ring(i.coords) for i in p.interiors)
                    for p in polys)
        lp = g.representative_point()
        area = g.area * (kx * scale) * scale
        out.append(DistrictShape(code, name, d, xy(lp.x, lp.y), area))
    return tuple(out), MAP_WIDTH, height


LABEL_MIN_AREA = 2500.0  # map units²: smaller districts (渝中, 沙坪坝, …) show on hover


@cache
def map_svg() -> str:
    """The map as inline SVG: one ``path.district`` per district carrying ``data-code``; the
    page's script sets its colour and ``data-*`` figures."""
    shapes, width, height = district_shapes()
    paths, labels = [], []
    for s in shapes:
        name = html.escape(s.name)
        paths.append(f'<path class="district" id="d-{s.code}" data-code="{s.code}" '
                     f'data-name="{name}" d="{s.path}"><title>{name}</title></path>')
        if s.area >= LABEL_MIN_AREA:
            x, y = s.label
            labels.append(f'<text x="{x:.0f}" y="{y:.0f}">{html.escape(short_name(s.name))}'
                          "</text>")
    return (f'<svg id="map" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
            'aria-label="重庆市 38 个区县">'
            f'<g class="districts">{"".join(paths)}</g>'
            f'<g class="labels" aria-hidden="true">{"".join(labels)}</g></svg>')


@cache
def page() -> str:
    return (STATIC / "board.html").read_text(encoding="utf-8").replace("<!--MAP-->", map_svg())


@cache
def static_file(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


# ---- routes ----


def register(engine: Engine) -> None:
    """Add the board's routes to the worker's web server (engine/runtime/http/routes.py calls this,
    and
    answers whatever a handler here raises with a logged 500 JSON: ``web.json_errors``)."""
    app = engine.app

    @app.page("/board")
    async def board_page(self: View, request: Request) -> Response:
        return self.html(page())  # aiohttp adds "; charset=utf-8" to a text body

    @app.page("/board/static/{name}")
    async def board_static(self: View, request: Request, name: str) -> Response:
        content_type = STATIC_FILES.get(name)
        if content_type is None:
            return self.json({"error": "not found", "name": web.echo(name)}, status=404)
        return self.text(static_file(name), content_type=content_type)

    @app.page("/board/data")
    async def board_json(self: View, request: Request) -> Response:
        return self.bytes(orjson.dumps(await board_data(engine)), content_type="application/json",
                          headers=dict(NO_CACHE))

    @app.page("/board/districts/{code}")
    async def board_district(self: View, request: Request, code: str) -> Response:
        try:
            body = await district_data(engine, code)
        except KeyError:
            return self.json({"error": "not a district", "unit": web.echo(code)}, status=404)
        return self.bytes(orjson.dumps(body), content_type="application/json",
                          headers=dict(NO_CACHE))
