"""``zhida case``: a case and its history from the worker's ``GET /cases/{id}`` (personal data
already masked there), as a readable view or as the worker's JSON, inert either way.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson

from engine.tools.inert import visible_json
from engine.tools.ops.common import EXIT_USAGE, OpsError, brief, shown, table

DEFAULT_URL = "http://127.0.0.1:6066"
URL_ENV = "ZHIDA_URL"


def fetch_case(url: str, case_id: str, timeout: float) -> dict[str, Any]:
    """``GET {url}/cases/{case_id}``: the worker masks personal data before it answers."""
    where = f"{url.rstrip('/')}/cases/{urllib.parse.quote(case_id, safe='')}"
    try:
        with urllib.request.urlopen(where, timeout=timeout) as r:
            data: dict[str, Any] = orjson.loads(r.read())
            return data
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise OpsError(f"case {case_id} not found (GET {where} answered 404)") from None
        raise OpsError(f"GET {where} answered {e.code} {_reason(e)}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise OpsError(f"cannot reach the worker at {url}: {reason} (set --url or {URL_ENV})",
                       code=EXIT_USAGE) from None
    except orjson.JSONDecodeError:
        raise OpsError(f"GET {where} did not answer JSON: is {url} a zhida worker?") from None


def _reason(e: urllib.error.HTTPError) -> str:
    """The worker's JSON ``error`` (a 400's reason), else the status line's reason."""
    with contextlib.suppress(Exception):
        error = orjson.loads(e.read(4096))["error"]
        if isinstance(error, str):
            return f"{e.reason}: {error}"
    return str(e.reason)


_SKIP_IN_DETAILS = {"case_id", "seq", "at", "type", "state", "unit", "actor"}


TEXT_LIMIT = 400  # characters of a free text (a summary) printed on one line


def case_lines(data: dict[str, Any], unit_name: Callable[[str], str] | None = None
               ) -> list[str]:
    """The case for a terminal: a header of what it is and where it stands, then its
    history one event a line (what changed, who did it, the rest as key=value). Every
    value inert and cut (``shown``): the worker's answer carries what other systems wrote."""
    def unit(code: Any) -> str:
        if not code:
            return "-"
        name = unit_name(str(code)) if unit_name else str(code)
        return shown(f"{code} {name}" if name and name != code else code)

    lines = [f"case        {shown(data.get('case_id'))}"]
    state = shown(data.get("state"))
    if data.get("stage"):
        state += f" (stage {shown(data['stage'])}, due {shown(data.get('due') or '-')})"
    if data.get("outcome"):
        state += f" outcome {shown(data['outcome'])}"
    lines.append(f"state       {state}")
    lines.append(f"unit        {unit(data.get('unit'))}")
    if data.get("co_handlers"):
        lines.append(f"co-handlers {', '.join(unit(u) for u in data['co_handlers'])}")
    lines.append(f"category    {shown(data.get('category'))}"
                 f" · priority {shown(data.get('priority'))}"
                 f" · source {shown(data.get('source'))}")
    if data.get("summary"):
        lines.append(f"summary     {shown(data['summary'], TEXT_LIMIT)}")
    if data.get("location"):
        lines.append(f"location    {shown(orjson.dumps(data['location']).decode(), TEXT_LIMIT)}")
    figures = [f"escalation level {shown(data.get('escalation_level', 0))}",
               f"returns {shown(data.get('returns', 0))}",
               f"reopened {shown(data.get('reopened', 0))}"]
    if data.get("first_responsible"):
        figures.append("首接负责 (first responsible)")
    if data.get("supervisor"):
        figures.append(f"supervised by {shown(data['supervisor'])} "
                       f"until {shown(data.get('supervise_due'))}")
    lines.append(f"figures     {' · '.join(figures)}")
    for c in data.get("complainants") or ():
        citizen = c.get("citizen") or {}
        who = " ".join(shown(citizen[k]) for k in ("name", "phone") if citizen.get(k))
        lines.append(f"complainant {shown(c.get('complaint_id'))} via {shown(c.get('channel'))}"
                     + (f": {who}" if who else ""))
    history = data.get("history") or []
    lines.append(f"history     {len(history)} event{'s' if len(history) != 1 else ''}")
    rows = [("seq", "at", "type", "state", "unit", "actor", "details")]
    for e in history:
        details = " ".join(f"{shown(k)}={brief(v)}" for k, v in e.items()
                           if k not in _SKIP_IN_DETAILS and v not in (None, "", [], 0))
        rows.append((shown(e.get("seq", "")), shown(e.get("at", "")), shown(e.get("type", "")),
                     shown(e.get("state", "")), shown(e.get("unit", "")),
                     shown(e.get("actor") or ""), details))
    lines += ["  " + line for line in table(rows)]
    return lines


def case_json(data: dict[str, Any]) -> str:
    """``zhida case --json``: the worker's answer indented, inert and still JSON."""
    return visible_json(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
