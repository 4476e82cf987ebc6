"""What ``zhida replay`` prints and writes: the live and candidate figures of a unit and its
direct children side by side with the difference, a short explanation of what changed most,
and the ``--json`` document (CONTRACT.md "Replay and what-if").

Pure and without a Kafka client, so the table and the JSON are tested from made-up figures
(tests/tools/test_replay_cli.py). Only figures are shown, never a case's content: unit codes
and names come from the topology, every printed value is inert (engine/tools/inert.py).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from engine.tools.ops.common import shown

Figures = Mapping[str, Any]  # one unit's figures, as engine.core.replay.unit_figures gives them
LEVELS = ("district", "city", "top")  # where an escalation sent the supervision (CONTRACT.md)


@dataclass(frozen=True, slots=True)
class Row:
    """One printed figure: its label, how to read it from a unit's figures, and whether it is
    a rate (shown in %, its difference in percentage points) or a count."""

    label: str
    read: Callable[[Figures], Any] | None  # None: a group's heading, no values
    rate: bool = False


def _level(level: str) -> Callable[[Figures], Any]:
    return lambda f: (f.get("escalations_by_level") or {}).get(level, 0)


def _field(name: str) -> Callable[[Figures], Any]:
    return lambda f: f.get(name)


def _directive(name: str) -> Callable[[Figures], Any]:
    """A figure of the directives the unit (or a unit below it) issued: None without them."""
    return lambda f: (f.get("directives") or {}).get(name)


ROWS: tuple[Row, ...] = (
    Row("received", _field("received")),
    Row("on-time ack rate", _field("on_time_ack_rate"), rate=True),
    Row("on-time resolve rate", _field("on_time_resolve_rate"), rate=True),
    Row("overdue at end", _field("overdue")),
    Row("reminders", _field("reminders")),
    Row("escalations", _field("escalations")),
    Row("  to district", _level("district")),
    Row("  to city", _level("city")),
    Row("  top", _level("top")),
    Row("closed unrated", _field("closed_unrated")),
    Row("reopened", _field("reopened")),
    Row("directives", None),
    Row("  issued", _directive("issued")),
    Row("  tasks acknowledged", _directive("ack_ratio"), rate=True),
    Row("  task reminders", _directive("reminders")),
    Row("  task escalations", _directive("escalated")),
)


def has_cases(live: Figures, candidate: Figures) -> bool:
    """A child is shown when either column counted anything for it."""
    return any(row.read(f) for row in ROWS if row.read is not None and not row.rate
               for f in (live, candidate))


def shown_units(unit: str, children: Iterable[str], live: Mapping[str, Figures],
                candidate: Mapping[str, Figures]) -> list[str]:
    """The unit itself, then its direct children with cases in the period, in topology order."""
    return [unit, *(c for c in children
                    if has_cases(live.get(c, {}), candidate.get(c, {})))]


def document(start: date, end: date, live_digests: Iterable[str], candidate: str | None,
             units: Iterable[str], live: Mapping[str, Figures],
             cand: Mapping[str, Figures]) -> dict[str, Any]:
    """The ``--json`` document, exactly the contract's shape: ``from``/``to`` as asked,
    ``policy.live`` the digests the cases ran under, ``policy.candidate`` the candidate's
    digest or ``"live"``, and per unit its two columns."""
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "policy": {"live": sorted(set(live_digests)), "candidate": candidate or "live"},
        "units": {u: {"live": dict(live[u]), "candidate": dict(cand[u])} for u in units},
    }


def dumps(doc: Mapping[str, Any]) -> bytes:
    """The document as written to ``--json FILE``: indented, keys in the order given."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


# ---- the table ----


def _value(v: Any, rate: bool) -> str:
    if v is None:
        return "-"
    return f"{v * 100:.1f}%" if rate else f"{v:,}"


def _difference(a: Any, b: Any, rate: bool) -> str:
    if a is None or b is None:
        return "-" if a == b else "n/a"
    d = b - a
    if rate:
        pp = round(d * 100, 1)
        return "0" if pp == 0 else f"{pp:+.1f} pp"
    return "0" if d == 0 else f"{d:+,}"


def unit_lines(code: str, name: str, live: Figures, candidate: Figures) -> list[str]:
    """One unit's block: a heading, then a row a figure with live, candidate, difference."""
    head = f"{shown(code)} {shown(name)}" if name and name != code else shown(code)
    rows = [(head, "live", "candidate", "difference")]
    for row in ROWS:
        if row.read is None:
            rows.append(("  " + row.label, "", "", ""))
            continue
        a, b = row.read(live), row.read(candidate)
        rows.append(("  " + row.label, _value(a, row.rate), _value(b, row.rate),
                     _difference(a, b, row.rate)))
    widths = [max(width(r[i]) for r in rows) for i in range(4)]
    return ["  ".join((pad(r[0], widths[0]), *(pad(c, w, right=True) for c, w in
                                               zip(r[1:], widths[1:], strict=True))))
            .rstrip() for r in rows]


def width(text: str) -> int:
    """Columns a terminal gives ``text``: a CJK character (a unit's name) takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, to: int, right: bool = False) -> str:
    fill = " " * max(to - width(text), 0)
    return fill + text if right else text + fill


def explanation(units: list[str], live: Mapping[str, Figures], cand: Mapping[str, Figures],
                name: Callable[[str], str], top: int = 3) -> list[str]:
    """What changed most: the units below the first (or the first alone, when it has no
    children shown) with the largest change in escalations, and where the escalations went."""
    def esc(f: Figures) -> int:
        return int(f.get("escalations") or 0)

    head, below = units[0], units[1:]
    total = esc(cand[head]) - esc(live[head])
    if total == 0 and all(esc(cand[u]) == esc(live[u]) for u in below):
        return [f"What changed most: nothing in escalations ({esc(live[head]):,} in both "
                f"columns at {shown(head)})."]
    lines = [f"What changed most: escalations {esc(live[head]):,} → {esc(cand[head]):,} "
             f"({total:+,}) at {_named(head, name)}" + _by_level(live[head], cand[head]) + "."]
    moved = sorted((u for u in below if esc(cand[u]) != esc(live[u])),
                   key=lambda u: (-abs(esc(cand[u]) - esc(live[u])), u))
    for u in moved[:top]:
        d = esc(cand[u]) - esc(live[u])
        lines.append(f"  {_named(u, name)}: {esc(live[u]):,} → {esc(cand[u]):,} ({d:+,})"
                     + _by_level(live[u], cand[u]))
    if len(moved) > top:
        lines.append(f"  and {len(moved) - top} more unit{'s' if len(moved) - top > 1 else ''} "
                     "with a change in escalations")
    return lines


def _named(code: str, name: Callable[[str], str]) -> str:
    n = name(code)
    return f"{shown(code)} {shown(n)}" if n and n != code else shown(code)


def _by_level(live: Figures, cand: Figures) -> str:
    """`` (to district +3, to city +1)``: the levels whose count moved."""
    parts = []
    for level in LEVELS:
        d = _level(level)(cand) - _level(level)(live)
        if d:
            parts.append(f"{'top' if level == 'top' else 'to ' + level} {d:+,}")
    return f" ({', '.join(parts)})" if parts else ""


def report_lines(doc: Mapping[str, Any], name: Callable[[str], str],
                 notes: Iterable[str] = ()) -> list[str]:
    """The whole printout from the ``--json`` document: what was replayed, one block a unit,
    the explanation, then any note on a figure that is not what it seems."""
    units = list(doc["units"])
    live = {u: doc["units"][u]["live"] for u in units}
    cand = {u: doc["units"][u]["candidate"] for u in units}
    policy = doc["policy"]
    digests = ", ".join(shown(d) for d in policy["live"]) or "none"
    candidate = ("the recorded deadline firings (exact replay)" if policy["candidate"] == "live"
                 else f"policy {shown(policy['candidate'])}")
    lines = [f"Replay of the cases opened and directives issued from {doc['from']} to "
             f"{doc['to']} (end exclusive): "
             f"live (policy {digests}) against {candidate}.", ""]
    for u in units:
        lines += unit_lines(u, name(u), live[u], cand[u])
        lines.append("")
    lines += explanation(units, live, cand, name)
    lines += [shown(n, 400) for n in notes]
    return lines
