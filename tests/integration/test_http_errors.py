"""Hostile requests against the session's worker: every answer a 4xx with a JSON reason,
none a 500 (issue 22); and a hostile complaint read back through ``GET /cases/{id}`` with
nothing personal in it."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import orjson
import pytest

from engine.core.ids import case_id_for
from engine.runtime.pii import SEP
from tests.support.broker import NAMES, Collector, Worker
from tests.support.messages import complaint

pytestmark = pytest.mark.integration

HOSTILE = [
    ("/units/500103/stats?from=0001-01-01T00:00:00%2B14:00", 400),
    ("/units/500103/stats?to=9999-12-31T23:59:59-12:00", 400),
    ("/units/500103/stats?from=garbage", 400),
    ("/units/500103/stats?from=%00%1b%5B2J", 400),
    ("/units/500103/stats?from=" + "9" * 5000, 400),
    ("/units/500103/stats?from=2026-12-07&to=2026-12-01", 400),  # reversed
    ("/units/500103/stats?from=2000-01-01&to=2026-12-01", 400),  # over 400 days
    ("/units/%3Cscript%3Ealert(1)%3C%2Fscript%3E/stats", 404),
    ("/units/" + "5" * 5000 + "/stats?from=0001-01-01T00:00:00%2B14:00", 404),
    ("/cases/" + "x" * 5000, 400),
    ("/cases/%ff%fe", 404),
    ("/cases/%00%1b", 404),
    ("/cases/%3Cscript%3E", 404),
    ("/directives/" + "y" * 5000, 400),
    ("/directives/%3Cscript%3E", 404),
    ("/board/districts/%3Cscript%3E", 404),
    ("/board/districts/" + "5" * 5000, 404),
    ("/board/static/..%2F..%2Fetc%2Fpasswd", 404),
    ("/internal/share?from=garbage", 400),
    ("/internal/share?unit=%3Cscript%3E", 400),
    ("/internal/share?issuer=" + "5" * 5000, 400),
    ("/internal/share?latest=all", 400),
    ("/internal/share?latest=100000", 400),
    ("/nothing/here", 404),
    ("/table/cases/x/", 404),
]


def request(worker: Worker, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    req = urllib.request.Request(worker.url(path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get_content_type(), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read()


def errors_logged(worker: Worker) -> int:
    return worker.log_tail(50_000_000).count('"event": "http_error"')


@pytest.mark.parametrize(("path", "status"), HOSTILE)
def test_hostile_requests_answer_4xx_json(worker: Worker, path: str, status: int) -> None:
    before = errors_logged(worker)
    got, content_type, body = request(worker, path)
    assert (got, content_type) == (status, "application/json"), body[:300]
    answer = orjson.loads(body)
    assert isinstance(answer["error"], str) and answer["error"]
    assert len(body) < 1000  # the value is not repeated whole
    assert errors_logged(worker) == before  # nothing was a server error


def test_wrong_methods_and_odd_parameters(worker: Worker) -> None:
    got, content_type, body = request(worker, "/cases/x", method="POST")
    assert (got, content_type) == (405, "application/json") and orjson.loads(body)["error"]
    got, content_type, body = request(worker, "/healthz", method="DELETE")
    assert got == 405 and content_type == "application/json"
    # the board's data takes no parameters: odd ones change nothing
    got, content_type, body = request(worker, "/board/data?unit=%3Cscript%3E&from=0001-01-01")
    assert (got, content_type) == (200, "application/json") and "districts" in orjson.loads(body)


def test_a_request_line_over_8_kb_is_refused_by_the_http_server(worker: Worker) -> None:
    """aiohttp's parser refuses it (400, its own plain text) before any route or middleware
    runs (docs/operations.md, "HTTP"): a 4xx, never a 500."""
    try:
        got, _, _ = request(worker, "/cases/" + "x" * 100_000)
    except (ConnectionError, urllib.error.URLError):  # it may close while we still send
        got = 400
    assert 400 <= got < 500
    assert request(worker, "/healthz")[0] == 200


async def test_a_hostile_complaint_shows_nothing_personal(kafka: Collector,
                                                          worker: Worker) -> None:
    phones = ["+86 137 6837 3852", "137-6837-3852", "023-6386 1234", "(023)63861234",
              "0236386 1234", "11010519491231002X"]
    c = complaint(description="路面塌陷，" + "，".join(phones),
                  citizen={"name": "王小明", "phone": "+86 137 6837 3852",
                           "id_card": "11010519491231002X", "address": "渝中区某路8号",
                           "wechat": "wxm_1990"})
    await kafka.send(NAMES.complaints, c, key=c["complaint_id"])
    case_id = case_id_for("complaint", c["complaint_id"])
    await kafka.events(case_id, 2)
    got, _, body = request(worker, f"/cases/{case_id}")
    assert got == 200
    text = body.decode()
    flat = re.sub(f"[{SEP}]", "", text)
    for p in phones:
        assert re.sub(f"[{SEP}]", "", p)[-10:] not in flat, p
    for secret in ("王小明", "渝中区某路8号", "wxm_1990"):
        assert secret not in text
    [who] = orjson.loads(body)["complainants"]
    assert who["citizen"] == {"name": "王**", "phone": "+86 137 **** 3852", "id_card": "***",
                              "address": "***", "wechat": "***"}
