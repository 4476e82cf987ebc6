"""HTTP endpoints of the worker (CONTRACT.md "HTTP"), and only those.

faust serves pages of its own (``/``, ``/router/``, ``/table/...``, and with ``debug``
``/graph`` and statistics): ``/table/cases/<id>/`` dumped a whole case, personal data
included, into a 500's log. ``register`` drops every built-in blueprint before the web server
applies them; ``@app.table_route`` routes with ``app.router``, not with the ``/router`` pages.

Errors: every error answer is JSON, ``{"error": reason}``. A bad request is a 4xx with its
reason; whatever a handler raises is logged with its traceback and answered
``500 {"error": "internal error"}`` by one aiohttp middleware (``json_errors``), which also
turns aiohttp's own 404 and 405 into JSON: no route can answer an HTML error page or fail
without a trace. (A request line over 8 KB never reaches it: aiohttp's parser answers 400.)

The figures, ``GET /hotspots``, ``GET /precedents`` and the board answer for the whole city
whichever worker is asked: this worker's share and the other workers' (``GET /internal/share``,
for workers only) are combined per partition by engine/runtime/http/citywide.py, with
``coverage`` saying how much was counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.core import directive, figures
from engine.core.directive import DirectiveState
from engine.core.model import CaseEvent, CaseFile, CaseState
from engine.runtime import logs
from engine.runtime.app import Engine
from engine.runtime.health import Health
from engine.runtime.http import board, citywide, insights
from engine.runtime.http.errors import (  # noqa: F401  (names this module answered with)
    ECHO_MAX,
    ID_MAX,
    MAX_DAYS,
    SECURITY_HEADERS,
    checked_id,
    echo,
    json_error,
    json_errors,
    period,
)
from engine.runtime.latest import LATEST
from engine.runtime.pii import mask_record

FAUST_PAGES = "faust.web.apps"
log = logs.get("zhida.web")


def case_view(state: CaseState, file: CaseFile | None, history: list[CaseEvent]
              ) -> dict[str, Any]:
    """The case for people: its state, what it is about and its history, personal data masked.

    The history comes from its own records (engine/runtime/store.py), not from the state.
    Masked as a whole by ``pii.mask_record`` (docs/operations.md, "Personal data"): every
    complainant's ``citizen`` (name to its first character, phone to its masked number, any
    other field ``***``), numbers in every free text (summary, location address, a pause's
    reason, history notes and reasons, what a system added), engine fields as they are.
    """
    data = state.model_dump(mode="json", exclude={"applied", "through"})
    if file is not None:
        data.update(file.model_dump(mode="json", exclude={"case_id", "source", "category"}))
    data.setdefault("summary", "")
    data["history"] = [e.model_dump(mode="json", exclude={"opened"}, exclude_none=True)
                       for e in history]
    data["deadlines"] = [
        {"stage": e["stage"], "due": e["due"], "set_at": e["at"], "by": e["type"]}
        for e in data["history"] if e.get("due") and e.get("stage")
    ]
    masked: dict[str, Any] = mask_record(data)
    return masked


async def unit_stats_body(engine: Engine, code: str, start: date, end: date
                          ) -> dict[str, Any]:
    """``GET /units/{code}/stats``: the city's figures of ``code`` (every worker's share,
    engine/runtime/http/citywide.py), its directive figures, ``coverage`` and this worker's
    ``partitions``."""
    city = await citywide.gather(engine, start, end, unit=code, issuer=code)
    body = figures.stats_of(code, start, end, city.units, engine.world.topology)
    fields = DirectiveState.model_fields  # a peer's record may carry more (its partition)
    body["directives"] = directive.issuer_figures([
        DirectiveState.model_validate({k: v for k, v in r.items() if k in fields})
        for r in city.records.get("directives", [])])
    body["partitions"] = citywide.held(engine)  # the share of the city this worker holds
    body["coverage"] = city.coverage()
    return body


async def hotspots_body(engine: Engine, query: Mapping[str, str]) -> dict[str, Any]:
    """``GET /hotspots?from&to&unit``: the city's hotspots raised in the period (``from``/``to``
    as for the stats, default today), with ``unit`` at or below ``unit`` when given, most
    reports first (engine/runtime/http/insights.py), and ``coverage``. ValueError, with the
    reason for a 400, for a bad period or an unknown unit."""
    start, end = period(query.get("from"), query.get("to"),
                        engine.world.policy.calendar.timezone, engine.clock())
    unit = query.get("unit") or None
    if unit is not None and unit not in engine.world.topology:
        raise ValueError(f"unit: unknown unit {echo(unit)!r}")
    city = await citywide.gather(engine, start, end, unit=unit, records=("hotspots",),
                                 counters=False)
    # a peer filters as this worker does; again here, so an answer never holds more
    tz = ZoneInfo(engine.world.policy.calendar.timezone)
    found = insights.hotspots_in(city.records.get("hotspots", []), start, end, tz, unit,
                                 engine.world.topology)
    return {"from": start.isoformat(), "to": end.isoformat(), "unit": unit,
            "hotspots": insights.untagged(insights.ranked(found)),
            "coverage": city.coverage()}


async def precedents_body(engine: Engine) -> dict[str, Any]:
    """``GET /precedents``: every precedent of the city, revoked ones with ``revoked_at``,
    oldest first, and ``coverage``."""
    today = period(None, None, engine.world.policy.calendar.timezone, engine.clock())[0]
    city = await citywide.gather(engine, today, today, records=("precedents",),
                                 counters=False)
    return {"precedents": insights.untagged(insights.by_time(
                city.records.get("precedents", []))),
            "coverage": city.coverage()}


def share_request(engine: Engine, query: Any) -> dict[str, Any]:
    """``GET /internal/share``: this worker's share (engine/runtime/http/citywide.py). ValueError,
    with the reason for a 400, for a bad period, an unknown unit, a bad ``latest``, an unknown
    record kind or a bad ``counters``."""
    start, end = period(query.get("from"), query.get("to"),
                        engine.world.policy.calendar.timezone, engine.clock())
    topo = engine.world.topology
    unit, issuer = query.get("unit"), query.get("issuer")
    for name, code in (("unit", unit), ("issuer", issuer)):
        if code is not None and code not in topo:
            raise ValueError(f"{name}: unknown unit {echo(code)!r}")
    try:
        latest = int(query.get("latest", "0"))
    except ValueError:
        raise ValueError(f"latest: not a number: {echo(query['latest'])!r}") from None
    if not 0 <= latest <= LATEST:
        raise ValueError(f"latest: from 0 to {LATEST}")
    records = [k for k in query.get("records", "").split(",") if k]
    unknown = [k for k in records if k not in insights.KINDS]
    if unknown:
        raise ValueError(f"records: unknown kind {echo(unknown[0])!r}")
    counters = query.get("counters", "1")
    if counters not in ("0", "1"):
        raise ValueError(f"counters: 0 or 1, not {echo(counters)!r}")
    share = citywide.local_share(engine, start, end, unit=unit, issuer=issuer, latest=latest,
                                 records=records, counters=counters == "1")
    return citywide.share_json(share)


def drop_faust_pages(app: faust.App) -> list[str]:
    """Remove faust's built-in blueprints (before the server starts); returns their names."""
    manager = app.web.blueprints
    if manager.applied:
        raise RuntimeError("the web server has applied its blueprints already")
    enabled = manager._enabled  # faust keeps (prefix, blueprint) pairs here until apply()
    dropped = [str(bp) for _, bp in enabled if _is_faust_page(bp)]
    enabled[:] = [(prefix, bp) for prefix, bp in enabled if not _is_faust_page(bp)]
    return dropped


def _is_faust_page(blueprint: Any) -> bool:
    """faust names its own blueprints by import path; ours would be objects."""
    return isinstance(blueprint, str) and blueprint.startswith(FAUST_PAGES)


def register(engine: Engine, health: Health | None = None) -> None:
    app = engine.app
    drop_faust_pages(app)
    app.web.web_app.middlewares.append(json_errors)  # every route, the board's too

    @app.page("/healthz")
    async def healthz(self: View, request: Request) -> Response:
        return self.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(self: View, request: Request) -> Response:
        if health is not None:
            status, body = health.status()
            return self.json(body, status=status)
        if engine.ready:
            return self.json({"status": "ready"})
        return self.json({"status": "starting"}, status=503)

    @app.page("/metrics")
    async def metrics(self: View, request: Request) -> Response:
        return self.bytes(generate_latest(engine.metrics.registry),
                          content_type=CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4")

    @app.page("/catalogue")
    async def catalogue(self: View, request: Request) -> Response:
        return self.json(engine.world.catalogue.as_json())

    @app.page("/cases/{case_id}")
    @checked_id("case_id")
    @app.table_route(table=engine.cases, match_info="case_id")
    async def case(self: View, request: Request, case_id: str) -> Response:
        state = engine.store.state(case_id)
        if state is None:
            return self.json({"error": "unknown case", "case_id": case_id}, status=404)
        return self.json(case_view(state, engine.store.file(case_id),
                                   engine.store.history(case_id, state.seq)))

    @app.page("/units/{code}/stats")
    async def unit_stats(self: View, request: Request, code: str) -> Response:
        if code not in engine.world.topology:
            return self.json({"error": "unknown unit", "unit": echo(code)}, status=404)
        try:
            start, end = period(request.query.get("from"), request.query.get("to"),
                                engine.world.policy.calendar.timezone, engine.clock())
        except ValueError as e:
            return self.json({"error": str(e)}, status=400)
        return self.json(await unit_stats_body(engine, code, start, end))

    @app.page("/hotspots")
    async def hotspots(self: View, request: Request) -> Response:
        try:
            body = await hotspots_body(engine, request.query)
        except ValueError as e:
            return self.json({"error": str(e)}, status=400)
        return self.bytes(orjson.dumps(body), content_type="application/json")

    @app.page("/precedents")
    async def precedents(self: View, request: Request) -> Response:
        return self.bytes(orjson.dumps(await precedents_body(engine)),
                          content_type="application/json")

    @app.page(citywide.SHARE_PATH)
    async def share(self: View, request: Request) -> Response:
        """For the other workers only (engine/runtime/http/citywide.py): never asks anyone
        itself."""
        try:
            body = share_request(engine, request.query)
        except ValueError as e:
            return self.json({"error": str(e)}, status=400)
        return self.bytes(orjson.dumps(body), content_type="application/json")

    @app.page("/directives/{directive_id}")
    @checked_id("directive_id")
    @app.table_route(table=engine.cases, match_info="directive_id")
    async def directive_status(self: View, request: Request, directive_id: str) -> Response:
        d = engine.store.directive(directive_id)
        if d is None:
            return self.json({"error": "unknown directive", "directive_id": directive_id},
                             status=404)
        return self.bytes(engine.statuses.get(d, engine.store, engine.clock()),
                          content_type="application/json")

    board.register(engine)  # GET /board and its data (engine/runtime/http/board.py)
    citywide.track(engine)  # which partitions this worker answers for, through rebalances
