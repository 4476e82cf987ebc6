"""No 500 on any input (engine/runtime/http/routes.py): ``from``/``to`` at the edges of time, every
error
answered as JSON, a handler's exception logged with its traceback."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from aiohttp import web as aioweb
from aiohttp.test_utils import make_mocked_request
from structlog.testing import capture_logs

from engine.runtime.http import routes as web

TZ = "Asia/Shanghai"
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # 10:00 in Chongqing
TODAY = date(2026, 12, 7)


def test_default_period_is_today() -> None:
    assert web.period(None, None, TZ, NOW) == (TODAY, TODAY)
    assert web.period("", "", TZ, NOW) == (TODAY, TODAY)


def test_instants_and_dates_become_local_days() -> None:
    assert web.period("2026-12-01T16:00:00Z", "2026-12-07", TZ, NOW) == (date(2026, 12, 2),
                                                                          TODAY)
    # a '+' in a query string arrives as a space
    assert web.period("2026-12-01T00:00:00 08:00", None, TZ, NOW) == (date(2026, 12, 1), TODAY)


@pytest.mark.parametrize(("start", "end", "reason"), [
    ("0001-01-01T00:00:00+14:00", None, "from: '0001-01-01T00:00:00+14:00' is out of range"),
    (None, "9999-12-31T23:59:59-12:00", "to: '9999-12-31T23:59:59-12:00' is out of range"),
    ("0001-01-01", None, "days: at most 400"),  # a real day, far too long a period
    ("yesterday", None, "from: not an RFC 3339 time or a date: 'yesterday'"),
    ("2026-02-30", None, "not an RFC 3339 time or a date"),
    ("<script>alert(1)</script>", None, "not an RFC 3339 time or a date"),
    ("9" * 100_000, None, "…"),
    ("2026-12-07", "2026-12-01", "from 2026-12-07 is after to 2026-12-01"),
    ("2025-01-01", "2026-12-07", "is 706 days: at most 400"),
])
def test_bad_periods_are_value_errors(start: str | None, end: str | None, reason: str) -> None:
    with pytest.raises(ValueError) as e:
        web.period(start, end, TZ, NOW)
    message = str(e.value)
    assert reason in message
    assert len(message) < 300


def test_the_longest_period_is_allowed() -> None:
    first = date.fromordinal(TODAY.toordinal() - web.MAX_DAYS + 1)
    assert web.period(first.isoformat(), None, TZ, NOW) == (first, TODAY)
    with pytest.raises(ValueError):
        web.period(date.fromordinal(first.toordinal() - 1).isoformat(), None, TZ, NOW)


def test_echo_is_cut() -> None:
    assert web.echo("x" * 10) == "x" * 10
    assert web.echo("x" * 100_000) == "x" * web.ECHO_MAX + "…"


# ---- every error is JSON ----


async def _answer(handler: Any, path: str = "/cases/x") -> tuple[int, dict[str, Any],
                                                                  aioweb.StreamResponse]:
    response = await web.json_errors(make_mocked_request("GET", path), handler)
    assert isinstance(response, aioweb.Response) and response.body is not None
    assert response.content_type == "application/json"
    return response.status, orjson.loads(bytes(response.body)), response  # type: ignore[arg-type]


async def test_a_handlers_exception_is_logged_and_answered_500_json() -> None:
    async def broken(request: aioweb.Request) -> aioweb.StreamResponse:
        raise OverflowError("date value out of range")

    with capture_logs() as logged:
        status, body, _ = await _answer(broken, "/units/500103/stats")
    assert status == 500 and body == {"error": "internal error"}
    [entry] = logged
    assert entry["log_level"] == "error" and entry["event"] == "http_error"
    assert entry["exc_info"] is True and entry["path"] == "/units/500103/stats"


async def test_an_owner_that_does_not_answer_a_routed_request_is_503() -> None:
    import aiohttp

    async def routed(request: aioweb.Request) -> aioweb.StreamResponse:
        raise aiohttp.ClientConnectorError(None, OSError(111, "refused"))  # type: ignore[arg-type]

    status, body, _ = await _answer(routed, "/cases/ZD0123")
    assert status == 503 and "did not answer" in body["error"]


async def test_every_answer_carries_the_security_headers() -> None:
    async def fine(request: aioweb.Request) -> aioweb.StreamResponse:
        return aioweb.Response(text="<html></html>", content_type="text/html")

    async def broken(request: aioweb.Request) -> aioweb.StreamResponse:
        raise RuntimeError("boom")

    for handler in (fine, broken):
        response = await web.json_errors(make_mocked_request("GET", "/board"), handler)
        assert "script-src" not in response.headers["Content-Security-Policy"]  # 'self' only
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"


async def test_aiohttps_own_errors_are_json() -> None:
    async def missing(request: aioweb.Request) -> aioweb.StreamResponse:
        raise aioweb.HTTPNotFound()

    async def wrong_method(request: aioweb.Request) -> aioweb.StreamResponse:
        raise aioweb.HTTPMethodNotAllowed("POST", ["GET", "HEAD"])

    assert (await _answer(missing))[:2] == (404, {"error": "not found"})
    status, body, response = await _answer(wrong_method)
    assert (status, body) == (405, {"error": "method not allowed"})
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}


async def test_answers_pass_through() -> None:
    async def fine(request: aioweb.Request) -> aioweb.StreamResponse:
        return aioweb.json_response({"ok": True})

    response = await web.json_errors(make_mocked_request("GET", "/healthz"), fine)
    assert response.status == 200


class _View:
    """What ``checked_id`` uses of a faust View."""

    def json(self, value: Any, status: int = 200) -> tuple[int, Any]:
        return status, value


@pytest.mark.parametrize(("value", "status"), [
    ("ZD00AA11BB22CC33DD44", 200),
    ("x" * 200, 200),
    ("x" * 201, 400),
    ("x" * 100_000, 400),
    ("\udcff\udcfe", 400),  # undecodable bytes in the path
])
async def test_ids_no_record_can_have_are_refused_before_routing(value: str,
                                                                  status: int) -> None:
    async def routed(view: Any, request: Any, **kwargs: Any) -> tuple[int, Any]:
        return 200, kwargs

    handler = web.checked_id("case_id")(routed)
    request = make_mocked_request("GET", "/cases/x", match_info={"case_id": value})
    got, body = await handler(_View(), request, case_id=value)
    assert got == status
    if status == 400:
        assert "case_id" in body["error"] and len(orjson.dumps(body)) < 400
