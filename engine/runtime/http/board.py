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
- **Hotspots** (每月一题) are the day's top ``insights.BOARD_HOTSPOTS`` by reports, and the
  **open disputes** (扯皮) the day's disputes no ruling names yet, newest first: the case
  writer's insight records of every partition, gathered like the figures
  (engine/runtime/http/insights.py).

Every worker shows the same city; the page and ``/board/data`` say how much of it was counted
(``coverage``: partitions counted of all, e.g. while a dead worker's partitions wait for the
group to rebalance).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from faust.web import Request, Response, View

from engine.core import figures
from engine.data.topology import Topology
from engine.runtime import latest
from engine.runtime.app import Engine
from engine.runtime.http import citywide, insights
from engine.runtime.http import errors as web
from engine.runtime.latest import LATEST

STATIC = Path(__file__).parent / "static"
GEOJSON = Path(__file__).parents[2] / "data" / "districts.geojson"
# what /board/static/{name} may serve, with its type: nothing else leaves the directory
STATIC_FILES = {"board.js": "application/javascript", "board.css": "text/css"}  # utf-8
MAP_WIDTH = 1000.0  # SVG user units; the page scales it
NO_CACHE = {"Cache-Control": "no-store"}
FIELDS = ("received", "responded", "resolved", "rated", "satisfied", "response_rate",
          "resolution_rate", "satisfaction_rate", "on_time_ack_rate", "on_time_resolve_rate",
          "escalations", "reopened")


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
    """``GET /board/data``: the city, each district, the latest escalations and directives,
    the day's top hotspots and its open disputes."""
    topo = engine.world.topology
    day = _today(engine)
    city = await citywide.gather(engine, day, day, latest=LATEST,
                                 records=("hotspots", "open_disputes"))
    total, children = figures.rollup(topo.city, city.units, topo)
    disputes = city.records.get("open_disputes", [])
    return {
        "day": day.isoformat(),
        "timezone": engine.world.policy.calendar.timezone,
        "generated_at": engine.clock().isoformat(),
        **_scope(engine, city),
        "city": row(topo.city, total, topo),
        "districts": [row(code, children.get(code, {}), topo) for code in topo.districts],
        "escalations": latest.newest_escalations(city.records.get("escalations", []), topo),
        "directives": latest.newest_directives(city.records.get("latest_directives", [])),
        "hotspots": insights.board_hotspots(city.records.get("hotspots", []), topo),
        "disputes": insights.board_disputes(disputes, topo),
        "open_disputes": len(disputes),
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
