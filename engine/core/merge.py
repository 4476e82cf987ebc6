"""一事多诉 and alarm grouping: which open case a new report joins, decided where it is safe.

**Where the decision is made.** A report that may merge is not sent to a case but to its
*group*: the key ``g|<source>|<category or kind>|<place>`` on the same command log, so one
writer (engine/runtime/writer.py) sees every report of that category at that place, one after the
other. The group keeps the cases it opened within the merge window (``GroupState``); a report
either joins the most recent matching one (a ``JoinCase`` command to that case) or opens its own
case (an ``OpenCase`` to its own deterministic id) and becomes a candidate. Two reports
arriving together are serialised on the group's partition: the second sees the first's case.
That is the whole race argument — no case is read or written by the group, and no group by a
case except through commands.

**When the case has closed meanwhile.** A case that closes tells its group to forget it
(``GroupForget``). A join already in flight reaches a closed case: the case writer turns it
into an ``OpenCase`` for the report's own id (``bounce``), so nothing is lost.

**Matching.** Same group key (source, category or alarm kind, place: the location's unit, the
placed street or, for coordinates, the placed district), opened less than ``merge_window``
ago, and for coordinates within ``merge_radius_m`` of the case's first point. Alarms group by
street: a repeat from one sensor and same-kind alarms in one street join one case.

**Ratings with several complainants** (``rating_outcome``): the worst rating counts. An
``unsatisfied`` rating reopens the case at once (nothing can be worse); otherwise the case
closes when every complainant has rated, with the worst rating given; a feedback deadline
that passes first closes it with the worst rating received, or ``unrated`` if none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.core.ids import escape, unescape
from engine.core.model import (
    Command,
    Frozen,
    GroupForget,
    GroupOpen,
    JoinCase,
    OpenCase,
    Spot,
)
from engine.core.world import World
from schemas.outbound import PrecedentRecord

CANDIDATES_KEPT = 64  # the most recent open cases a group remembers
ROUTED_KEPT = 128  # the most recent reports a group routed, with the case each went to
RATING_ORDER = ("unsatisfied", "basically_satisfied", "satisfied")  # worst first


class Candidate(Frozen):
    case_id: str
    opened_at: datetime
    lat: float | None = None
    lon: float | None = None


class GroupState(Frozen):
    """The open cases one (source, category, place) opened within the window."""

    key: str
    candidates: tuple[Candidate, ...] = ()
    # (report's own case id, the case it went to): a report sent again (the intake is
    # at-least-once) goes where it went the first time, whatever the group has learnt since
    routed: tuple[tuple[str, str], ...] = ()
    # 每月一题 and precedents of the place (engine/core/insights.py)
    spots: tuple[Spot, ...] = ()
    precedents: tuple[PrecedentRecord, ...] = ()
    through: int = -1  # the last command offset applied (engine/runtime/writer.py)


@dataclass(frozen=True, slots=True)
class Routed:
    """A group's decision: its next state and the command that carries the report on."""

    group: GroupState
    forward: Command | None  # None: nothing to carry on (a forget)
    joined: bool


def group_key(source: str, category: str, place: str) -> str:
    """``g|<source>|<category>|<place>``, each part escaped (engine/runtime/storekeys.py): a
    category
    holding ``|`` cannot pose as another category's place. Unchanged for ordinary codes, so
    a group keeps its key, partition and ``x:`` record across the upgrade."""
    return "|".join(("g", escape(source), escape(category), escape(place)))


def place_of(key: str) -> str:
    """The place a group key names (a unit code)."""
    return unescape(key.rpartition("|")[2])


def group_of(world: World, report: OpenCase) -> str | None:
    """The group a report merges in (and a complaint is counted in, engine/core/insights.py),
    None when it cannot be placed, or for an alarm when merging is off.

    Complaints: the location's own unit, else the unit its point or address is placed on
    (a district for points, with the radius deciding within it). Alarms: the street the
    alarm is in (its district when no street is known).
    """
    policy = world.policy
    if report.source != "complaint" and policy.merge_window <= timedelta(0):
        return None  # a complaint's group also counts hotspots and holds precedents
    unit = report.location.get("unit")
    if not isinstance(unit, str):
        if world.placer is None:
            return None
        placed = world.placer.place(report.location, policy.border_distance_m)
        unit = placed.unit
    if unit is None or unit not in world.topology:
        return None
    if report.source == "sensed":
        unit = world.topology.street_of(unit) or unit
    return group_key(report.source, report.category, unit)


def point_of(location: dict[str, Any]) -> tuple[float, float] | None:
    lat, lon = location.get("lat"), location.get("lon")
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        return float(lat), float(lon)
    return None


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine, spherical Earth): metres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(h)))


def route(group: GroupState | None, cmd: Command, window: timedelta, radius_m: float
          ) -> Routed | None:
    """Join the most recent matching candidate, or open the report's own case; None: a
    repeated ``GroupForget`` with nothing left to do."""
    body = cmd.body
    g = group or GroupState(key=cmd.aggregate)
    if isinstance(body, GroupForget):
        kept = tuple(c for c in g.candidates if c.case_id != body.case_id)
        if len(kept) == len(g.candidates):
            return None
        return Routed(g.model_copy(update={"candidates": kept}), None, joined=False)
    assert isinstance(body, GroupOpen)
    own, report = body.case_id, body.open
    went = next((to for o, to in reversed(g.routed) if o == own), None)
    if went is not None:  # the same report again: where it went, a duplicate there
        return Routed(g, _to(cmd, went, own, report), joined=False)
    if window <= timedelta(0):  # merging off: the group only counts (engine/core/insights.py);
        # a report sent again opens its own case again, a duplicate there
        return Routed(g, _open(cmd, own, report), joined=False)
    live = tuple(c for c in g.candidates if cmd.at - c.opened_at < window)
    if any(c.case_id == own for c in live):  # the same report again: its own case says so
        return Routed(g, _open(cmd, own, report), joined=False)
    point = point_of(report.location)
    match = None
    for c in reversed(live):  # the most recent first
        if point is None or c.lat is None or c.lon is None \
                or distance_m(point, (c.lat, c.lon)) <= radius_m:
            match = c
            break
    if match is not None:
        routed = (*g.routed, (own, match.case_id))[-ROUTED_KEPT:]
        return Routed(g.model_copy(update={"candidates": live, "routed": routed}),
                      _to(cmd, match.case_id, own, report), joined=True)
    new = Candidate(case_id=own, opened_at=cmd.at, lat=point[0] if point else None,
                    lon=point[1] if point else None)
    kept = (*live, new)[-CANDIDATES_KEPT:]
    routed = (*g.routed, (own, own))[-ROUTED_KEPT:]
    return Routed(g.model_copy(update={"candidates": kept, "routed": routed}),
                  _open(cmd, own, report), joined=False)


def _to(cmd: Command, case_id: str, own: str, report: OpenCase) -> Command:
    """The report to ``case_id``: its own case opens, another is joined."""
    if case_id == own:
        return _open(cmd, own, report)
    return Command(aggregate=case_id, at=cmd.at, origin=cmd.origin,
                   body=JoinCase(open=report, own_case_id=own))


def _open(cmd: Command, case_id: str, report: OpenCase) -> Command:
    return Command(aggregate=case_id, at=cmd.at, body=report, origin=cmd.origin)


def bounce(cmd: Command) -> Command:
    """A join that found its case closed (or never opened): the report opens its own case."""
    body = cmd.body
    assert isinstance(body, JoinCase)
    return Command(aggregate=body.own_case_id, at=cmd.at, body=body.open, origin=cmd.origin)


def worst(ratings: tuple[str, ...]) -> str | None:
    """The worst of the ratings given, None if there are none."""
    if not ratings:
        return None
    return min(ratings, key=RATING_ORDER.index)


def rating_outcome(ratings: tuple[str, ...], complainants: int) -> str | None:
    """What the ratings received so far decide: ``unsatisfied`` (reopen), a closing outcome
    once every complainant has rated, or None (wait for the others)."""
    if "unsatisfied" in ratings:
        return "unsatisfied"
    if len(ratings) >= max(complainants, 1):
        return worst(ratings)
    return None
