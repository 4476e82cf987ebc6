"""What every HTTP answer of the worker shares: request values checked and echoed bounded,
errors as JSON (``json_errors``), the security headers (engine/runtime/http/routes.py and
engine/runtime/http/board.py use them)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
from aiohttp import web as aioweb
from faust.web import Request, Response, View

from engine.runtime import logs

MAX_DAYS = 400  # longest from/to period: a year and a month, compared with the year before
ID_MAX = 200  # the contract's longest id (schemas/common.py ``Id``)
ECHO_MAX = 100  # characters of a request's value repeated in an error
log = logs.get("zhida.web")


def period(start: str | None, end: str | None, tz_name: str, now: datetime
           ) -> tuple[date, date]:
    """``from``/``to`` (RFC 3339 instants or dates) as local days; default today.

    ValueError, with the reason for a 400, for a value that is not a time, one whose local
    day is outside years 1–9999 (``0001-01-01T00:00:00+14:00``: ``astimezone`` overflows),
    ``from`` after ``to``, or more than ``MAX_DAYS`` days: the figures are read per day.
    """
    tz = ZoneInfo(tz_name)
    today = now.astimezone(tz).date()

    def day(name: str, v: str | None) -> date:
        if not v:
            return today
        shown = v if len(v) <= ECHO_MAX else v[:ECHO_MAX] + "…"
        try:
            t = datetime.fromisoformat(v.replace(" ", "+"))  # a '+' in a query is a space
            return t.astimezone(tz).date() if t.tzinfo else t.date()
        except ValueError:
            raise ValueError(f"{name}: not an RFC 3339 time or a date: {shown!r}") from None
        except OverflowError:
            raise ValueError(f"{name}: {shown!r} is out of range in {tz_name}") from None

    first, last = day("from", start), day("to", end)
    if first > last:
        raise ValueError(f"from {first.isoformat()} is after to {last.isoformat()}")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"from {first.isoformat()} to {last.isoformat()} is "
                         f"{(last - first).days + 1} days: at most {MAX_DAYS}")
    return first, last


def echo(value: str) -> str:
    """A request's value repeated in an error answer, cut: never the whole 100 KB."""
    return value if len(value) <= ECHO_MAX else value[:ECHO_MAX] + "…"


def json_error(status: int, reason: str, **fields: Any) -> aioweb.Response:
    return aioweb.Response(body=orjson.dumps({"error": reason, **fields}), status=status,
                           content_type="application/json")


# Defence in depth for the board (it inserts every value as text already): only its own
# scripts run, nothing frames it, no type is sniffed, no address leaks to a link.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _hardened(response: aioweb.StreamResponse) -> aioweb.StreamResponse:
    if not response.prepared:  # a streamed answer has sent its headers already
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


@aioweb.middleware
async def json_errors(request: aioweb.Request,
                      handler: Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]
                      ) -> aioweb.StreamResponse:
    """Every error as JSON: aiohttp's own (404 no route, 405) with their reason, anything a
    handler raises logged with its traceback and answered 500 ``internal error``."""
    try:
        return _hardened(await handler(request))
    except aioweb.HTTPException as e:
        if e.status < 400:
            raise
        answer = json_error(e.status, (e.reason or "error").lower())
        if "Allow" in e.headers:  # a 405 names the methods there are
            answer.headers["Allow"] = e.headers["Allow"]
        return _hardened(answer)
    except (asyncio.CancelledError, ConnectionResetError):
        raise  # the client went away: nothing to answer
    except aiohttp.ClientError as e:  # a routed request (table_route): the owner is away
        log.warning("http_route_failed", method=request.method, path=echo(request.path),
                    error=type(e).__name__)
        return _hardened(json_error(
            503, "the worker holding this record did not answer; try again"))
    except Exception:
        log.exception("http_error", method=request.method, path=echo(request.path))
        return _hardened(json_error(500, "internal error"))


def checked_id(param: str) -> Callable[[Any], Any]:
    """Refuse a path id no record can have (longer than the contract's ``Id``, or not
    encodable text) with a 400 before ``table_route`` hashes it to a partition."""
    def decorate(fun: Any) -> Any:
        @functools.wraps(fun)
        async def handler(self: View, request: Request, **kwargs: Any) -> Response:
            value = str(request.match_info.get(param, ""))
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return self.json({"error": f"{param} is not text"}, status=400)
            if len(value) > ID_MAX:
                return self.json({"error": f"{param} longer than {ID_MAX} characters",
                                  param: echo(value)}, status=400)
            return await fun(self, request, **kwargs)
        return handler
    return decorate
