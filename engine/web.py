"""HTTP endpoints of the worker (CONTRACT.md "HTTP"), and only those.

faust serves pages of its own (``/``, ``/router/``, ``/table/...``, and with ``debug``
``/graph`` and statistics): ``/table/cases/<id>/`` dumped a whole case, personal data
included, into a 500's log. ``register`` drops every built-in blueprint before the web server
applies them; ``@app.table_route`` routes with ``app.router``, not with the ``/router`` pages.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine import board
from engine.app import Engine
from engine.core import directive, figures
from engine.core.model import CaseEvent, CaseFile, CaseState
from engine.health import Health
from engine.logs import mask_name, mask_phone
from engine.store import figures_now_key

FAUST_PAGES = "faust.web.apps"


def case_view(state: CaseState, file: CaseFile | None, history: list[CaseEvent]
              ) -> dict[str, Any]:
    """The case for people: its state, what it is about and its history, personal data masked.

    The history comes from its own records (engine/store.py), not from the state.
    """
    data = state.model_dump(mode="json", exclude={"applied", "through"})
    if file is not None:
        data.update(file.model_dump(mode="json", exclude={"case_id", "source", "category"}))
    for c in data.get("complainants", []):
        citizen = c.get("citizen") or {}
        if citizen.get("name"):
            citizen["name"] = mask_name(citizen["name"])
        if citizen.get("phone"):
            citizen["phone"] = mask_phone(citizen["phone"])
    data["summary"] = mask_phone(data.get("summary", ""))
    data["history"] = [e.model_dump(mode="json", exclude={"opened"}, exclude_none=True)
                       for e in history]
    for e in data["history"]:
        for k in ("note", "reason"):
            if e.get(k):
                e[k] = mask_phone(e[k])
    data["deadlines"] = [
        {"stage": e["stage"], "due": e["due"], "set_at": e["at"], "by": e["type"]}
        for e in data["history"] if e.get("due") and e.get("stage")
    ]
    return data


def period(start: str | None, end: str | None, tz_name: str, now: datetime
           ) -> tuple[date, date]:
    """``from``/``to`` (RFC 3339 instants or dates) as local days; default today."""
    tz = ZoneInfo(tz_name)
    today = now.astimezone(tz).date()

    def day(v: str | None) -> date:
        if not v:
            return today
        try:
            t = datetime.fromisoformat(v.replace(" ", "+"))  # a '+' in a query is a space
        except ValueError:
            raise ValueError(f"not an RFC 3339 time or a date: {v!r}") from None
        return t.astimezone(tz).date() if t.tzinfo else t.date()

    return day(start), day(end)


def _local_day(at: datetime, engine: Engine) -> date:
    return at.astimezone(ZoneInfo(engine.world.policy.calendar.timezone)).date()


def figures_of(engine: Engine, start: date, end: date
               ) -> tuple[dict[str, dict[str, dict[str, int]]], dict[str, dict[str, int]]]:
    """The figure records of the partitions this worker holds, summed: (days in [start,
    end], now). A range read per partition: days are sorted in the keys."""
    days: dict[str, dict[str, dict[str, int]]] = {}
    now: dict[str, dict[str, int]] = {}
    store = engine.store
    for p in engine.partitions:
        figures.merge(now, store.figures(p, figures_now_key(p))["units"])
        for d, rec in store.figures_days(p, start.isoformat(), end.isoformat()):
            figures.merge(days.setdefault(d, {}), rec["units"])
    return days, now


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
    @app.table_route(table=engine.cases, match_info="case_id")
    async def case(self: View, request: Request, case_id: str) -> Response:
        state = engine.store.state(case_id)
        if state is None:
            return self.json({"error": "unknown case", "case_id": case_id}, status=404)
        return self.json(case_view(state, engine.store.file(case_id),
                                   engine.store.history(case_id, state.seq)))

    @app.page("/units/{code}/stats")
    async def unit_stats(self: View, request: Request, code: str) -> Response:
        try:
            start, end = period(request.query.get("from"), request.query.get("to"),
                                engine.world.policy.calendar.timezone, engine.clock())
            body = figures.stats(code, start, end, *figures_of(engine, start, end),
                                 engine.world.topology)
        except KeyError:
            return self.json({"error": "unknown unit", "unit": code}, status=404)
        except ValueError as e:
            return self.json({"error": str(e)}, status=400)
        body["directives"] = directive.issuer_figures([
            d for p in engine.partitions for d in engine.store.directives(p)
            if d.issuer == code and start <= _local_day(d.issued_at, engine) <= end])
        body["partitions"] = engine.partitions  # the share of the city this worker holds
        return self.json(body)

    @app.page("/directives/{directive_id}")
    @app.table_route(table=engine.cases, match_info="directive_id")
    async def directive_status(self: View, request: Request, directive_id: str) -> Response:
        d = engine.store.directive(directive_id)
        if d is None:
            return self.json({"error": "unknown directive", "directive_id": directive_id},
                             status=404)
        return self.bytes(engine.statuses.get(d, engine.store, engine.clock()),
                          content_type="application/json")

    board.register(engine)  # GET /board and its data (engine/board.py)
