"""每月一题 hotspots, 扯皮 disputes, rulings and precedents: what the case flow teaches.

**Where each is decided.** A place's merge group (engine/core/merge.py) already sees every
complaint of one category at one place, one after the other, on one partition: so the group
counts hotspots and keeps the place's precedents (``decide_group``). A dispute and its ruling
are the case's own business (engine/core/decide.py ``_return`` and ``_assign``, with
``dispute_of`` and ``ruling_of`` here); a ruled case tells its group (``GroupRuling``, one of
``group_notices``), and the group then forwards later reports of the place with the ruled unit
on their ``OpenCase`` (``precedent``), which the case's routing obeys. No rule reads another
aggregate's state: they talk through commands on ``zhida.case.commands``, as merging does.

**Hotspots** (CONTRACT.md "Recurring problems and disputes"). A place is the group's unit for
reports placed by unit or address; reports with coordinates form clusters inside the group
(a cluster's first point; a later point within ``merge_radius_m`` of it joins). A hotspot is
raised when ``hotspot_min_reports`` reports of the place fall within the past
``hotspot_window``; the next for the place only after ``hotspot_window`` has passed since the
raise. While it is current, each report of the place updates its counts (kept for
``GET /hotspots``). A report the group has routed before (the intake is at-least-once) counts
once. Callers are told apart by a keyed hash of their phone (no number is stored in the clear);
a report without a phone is a caller of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.core import ids, merge
from engine.core.model import (
    CaseEvent,
    CaseState,
    Command,
    GroupForget,
    GroupOpen,
    GroupReopened,
    GroupRevoke,
    GroupRuling,
    IssueDirective,
    OpenCase,
    Sighting,
    Spot,
)
from engine.core.react import Output
from engine.core.routing import UnknownUnit, route
from engine.core.world import World
from schemas.inbound import Directive, UnitsTarget
from schemas.outbound import HotspotInsight, PrecedentRecord, RevokedInsight

# Bounds of a group's record (``x:``, one changelog record rewritten by every report): a
# place with every bound reached stays near 12 KB, a district's point group with every
# cluster full near 100 KB (tests/core/test_insights.py holds that)
SIGHTINGS_KEPT = 12  # reports a place remembers within the window (the threshold if more)
SPOTS_KEPT = 16  # point clusters a group remembers
CASES_KEPT = 64  # a current hotspot's distinct cases remembered (its count goes on)
CALLERS_KEPT = 64  # a current hotspot's callers remembered
REOPENED_KEPT = 16
PRECEDENTS_KEPT = 32  # per place group; the oldest revoked ones go first
RETURNERS_KEPT = 16


@dataclass(frozen=True, slots=True)
class GroupDecision:
    """A group's answer to one command: its next state, the command that carries a report on,
    the insights to publish and the records ``GET /hotspots`` and ``/precedents`` read."""

    group: merge.GroupState
    forward: Command | None = None
    outputs: list[Output] = field(default_factory=list)
    records: list[HotspotInsight | PrecedentRecord] = field(default_factory=list)
    joined: bool = False
    commands: list[Command] = field(default_factory=list)  # a 未诉先办 directive to issue


# ---- the group: merging, hotspots, precedents ----


def decide_group(group: merge.GroupState | None, cmd: Command, world: World
                 ) -> GroupDecision | None:
    """None: nothing to do (a repeated forget, a repeated ruling or revocation)."""
    body = cmd.body
    g = group or merge.GroupState(key=cmd.aggregate)
    policy = world.policy
    if isinstance(body, GroupForget):
        routed = merge.route(g, cmd, policy.merge_window, policy.merge_radius_m)
        return None if routed is None else GroupDecision(routed.group)
    if isinstance(body, GroupReopened):
        return _reopened(g, body.case_id)
    if isinstance(body, GroupRuling):
        return _ruled(g, cmd, body)
    if isinstance(body, GroupRevoke):
        return _revoke(g, cmd, body)
    assert isinstance(body, GroupOpen), f"not a group command: {body.kind}"
    again = any(own == body.case_id for own, _ in g.routed) or any(
        c.case_id == body.case_id for c in g.candidates)
    routed = merge.route(g, cmd, policy.merge_window, policy.merge_radius_m)
    assert routed is not None and routed.forward is not None
    g, forward = routed.group, routed.forward
    report = body.open
    precedent = precedent_for(g, report, policy.merge_radius_m)
    if precedent is not None and isinstance(forward.body, OpenCase):
        forward = forward.model_copy(update={"body": forward.body.model_copy(update={
            "precedent": precedent.insight_id, "precedent_unit": precedent.unit})})
    if report.source != "complaint" or policy.hotspot_min_reports <= 0:
        return GroupDecision(g, forward, joined=routed.joined)
    point = merge.point_of(report.location)
    seen = Sighting(at=cmd.at, report=body.case_id, case_id=forward.aggregate,
                    caller=_caller(g.key, report),
                    unit=precedent.unit if precedent is not None else None,
                    lat=point[0] if point else None, lon=point[1] if point else None)
    g, outputs, records = _count(g, report, seen, again, world)
    ack = policy.directive_on_hotspot
    issued = [c for o in outputs if ack is not None and isinstance(o.value, HotspotInsight)
              for c in [directive_for(o.value, world, ack)] if c is not None]
    return GroupDecision(g, forward, outputs, records, joined=routed.joined, commands=issued)


def directive_for(h: HotspotInsight, world: World, ack_within: timedelta) -> Command | None:
    """未诉先办: the place's district tells its street to act before the next complaint
    (``[insights] directive_on_hotspot``); its id derives from the hotspot's, so a resend
    after a crash is the same directive. None where there is no district above the unit."""
    topo = world.topology
    target = topo.street_of(h.unit) or h.unit
    issuer = topo.district_of(target)
    if issuer is None or issuer == target or target not in topo:
        return None
    digest = hashlib.blake2b(h.insight_id.encode(), digest_size=8).hexdigest().upper()
    place = h.place if isinstance(h.place, str) else f"{h.place['lat']:.5f},{h.place['lon']:.5f}"
    directive = Directive(
        directive_id=f"WSXB-{digest}", issuer=issuer,
        title=f"未诉先办：{h.category} 高发（{place}）",
        body=(f"{h.window_start:%Y-%m-%d} 起 {h.reports} 件同类诉求（{h.cases} 案，"
              f"{h.repeat_callers} 位市民重复来电）。请主动排查处置并报告。"),
        targets=UnitsTarget(units=[target]), ack_within=ack_within, issued_at=h.at)
    return Command(aggregate=directive.directive_id, at=h.at,
                   body=IssueDirective(directive=directive))


def _unit_of(world: World, key: str, category: str, seen: Sighting) -> str:
    """The unit a counted report was dispatched to (what its case's ``dispatched`` says): the
    precedent's, or the rules' for its point or its group's unit. Routed only on a raise,
    not for every report: the case routes it anyway."""
    if seen.unit is not None:
        return seen.unit
    rules = world.catalogue.get(category, "complaint")
    if rules is None:
        return world.topology.city
    location: dict[str, Any] = {"lat": seen.lat, "lon": seen.lon} if seen.lat is not None \
        else {"unit": merge.place_of(key)}
    try:
        return route(world.topology, rules, location, world.placer,
                     world.policy.border_distance_m).unit
    except UnknownUnit:
        return world.topology.city


def _caller(key: str, report: OpenCase) -> str | None:
    """A tag telling callers apart within one group: a keyed, truncated hash of the phone."""
    c = report.complainant
    phone = c.citizen.phone if c is not None and c.citizen is not None else None
    if not phone:
        return None
    digits = "".join(ch for ch in phone if ch.isdigit()) or phone
    return hashlib.blake2b(digits.encode(), key=key.encode()[-64:], digest_size=6).hexdigest()


def place_of_report(group_key: str, report: OpenCase, radius_m: float
                    ) -> str | dict[str, float]:
    """The place as published: the group's unit, or a point cluster."""
    point = merge.point_of(report.location)
    if point is None:
        return merge.place_of(group_key)
    return {"lat": point[0], "lon": point[1], "radius_m": radius_m}


def _spot_index(spots: tuple[Spot, ...], point: tuple[float, float] | None,
                radius_m: float) -> int | None:
    for i, s in enumerate(spots):
        if point is None and s.lat is None:
            return i
        if point is not None and s.lat is not None and s.lon is not None \
                and merge.distance_m(point, (s.lat, s.lon)) <= radius_m:
            return i
    return None


def _count(g: merge.GroupState, report: OpenCase, seen: Sighting, again: bool, world: World
           ) -> tuple[merge.GroupState, list[Output], list[Any]]:
    policy = world.policy
    window, minimum, radius = policy.hotspot_window, policy.hotspot_min_reports, \
        policy.merge_radius_m
    at = seen.at
    spots = tuple(s for s in g.spots if _alive(s, at, window))
    point = merge.point_of(report.location)
    i = _spot_index(spots, point, radius)
    spot = spots[i] if i is not None else Spot(lat=point[0] if point else None,
                                               lon=point[1] if point else None)
    if again or any(x.report == seen.report for x in spot.seen):
        return g.model_copy(update={"spots": spots}), [], []
    recent = (*(x for x in spot.seen if at - x.at < window), seen)[-max(SIGHTINGS_KEPT,
                                                                       minimum):]
    spot = spot.model_copy(update={"seen": recent})
    outputs: list[Output] = []
    records: list[Any] = []
    current = spot.hotspot is not None and spot.raised_at is not None \
        and at - spot.raised_at < window
    if current:
        spot = _grown(spot, seen)
        records.append(spot.hotspot)
    elif len(recent) >= minimum:
        spot = _raised(g.key, report, spot, recent, at, world)
        assert spot.hotspot is not None
        outputs.append(insight_output(spot.hotspot))
        records.append(spot.hotspot)
    spots = (*spots, spot)[-SPOTS_KEPT:] if i is None else (*spots[:i], spot, *spots[i + 1:])
    return g.model_copy(update={"spots": spots}), outputs, records


def _alive(s: Spot, at: datetime, window: Any) -> bool:
    """A spot worth keeping: a report within the window, or a hotspot still current."""
    return any(at - x.at < window for x in s.seen) or (
        s.raised_at is not None and at - s.raised_at < window)


def _repeat_callers(callers: tuple[tuple[str, int], ...]) -> int:
    return sum(1 for _, n in callers if n > 1)


def _tally(callers: dict[str, int], tag: str | None) -> None:
    if tag is not None and (tag in callers or len(callers) < CALLERS_KEPT):
        callers[tag] = callers.get(tag, 0) + 1


def _raised(key: str, report: OpenCase, spot: Spot, recent: tuple[Sighting, ...],
            at: datetime, world: World) -> Spot:
    radius = world.policy.merge_radius_m
    callers: dict[str, int] = {}
    for x in recent:
        _tally(callers, x.caller)
    cases = tuple(dict.fromkeys(x.case_id for x in recent))[-CASES_KEPT:]
    first = recent[0]
    place: str | dict[str, float] = merge.place_of(key) if spot.lat is None or spot.lon is None \
        else {"lat": spot.lat, "lon": spot.lon, "radius_m": radius}
    hotspot = HotspotInsight(
        insight_id=ids.insight_id("hotspot", key, recent[-1].report), at=at,
        category=report.category, place=place,
        unit=_unit_of(world, key, report.category, first), window_start=first.at,
        reports=len(recent), cases=len(cases),
        repeat_callers=_repeat_callers(tuple(callers.items())),
        reopened=sum(1 for c in cases if c in spot.reopened))
    return spot.model_copy(update={"raised_at": at, "hotspot": hotspot, "cases": cases,
                                   "callers": tuple(callers.items())})


def _grown(spot: Spot, seen: Sighting) -> Spot:
    """A report of a current hotspot's place: its counts go on."""
    h = spot.hotspot
    assert h is not None
    callers = dict(spot.callers)
    _tally(callers, seen.caller)
    new_case = seen.case_id not in spot.cases
    cases = (*spot.cases, seen.case_id)[-CASES_KEPT:] if new_case else spot.cases
    hotspot = h.model_copy(update={
        "reports": h.reports + 1, "cases": h.cases + (1 if new_case else 0),
        "repeat_callers": _repeat_callers(tuple(callers.items()))})
    return spot.model_copy(update={"hotspot": hotspot, "cases": cases,
                                   "callers": tuple(callers.items())})


def _reopened(g: merge.GroupState, case_id: str) -> GroupDecision | None:
    """不满意: a reopened case of a place counts on its current hotspot (once per case)."""
    spots, records = [], []
    changed = False
    for s in g.spots:
        mine = case_id in s.cases or any(x.case_id == case_id for x in s.seen)
        if not mine or case_id in s.reopened:
            spots.append(s)
            continue
        changed = True
        s = s.model_copy(update={"reopened": (*s.reopened, case_id)[-REOPENED_KEPT:]})
        if s.hotspot is not None and case_id in s.cases:
            s = s.model_copy(update={"hotspot": s.hotspot.model_copy(
                update={"reopened": s.hotspot.reopened + 1})})
            records.append(s.hotspot)
        spots.append(s)
    if not changed:
        return None
    return GroupDecision(g.model_copy(update={"spots": tuple(spots)}), records=records)


# ---- precedents ----


def precedent_for(g: merge.GroupState, report: OpenCase, radius_m: float
                  ) -> PrecedentRecord | None:
    """The latest live precedent of the report's place: its unit for a report placed by unit
    or address, a point within ``radius_m`` of the ruled case's point for coordinates."""
    if report.source != "complaint":
        return None
    point = merge.point_of(report.location)
    for p in reversed(g.precedents):
        if p.revoked_at is not None or p.category != report.category:
            continue
        if isinstance(p.place, str):
            if point is None:
                return p
        elif point is not None and merge.distance_m(
                point, (p.place["lat"], p.place["lon"])) <= radius_m:
            return p
    return None


def _ruled(g: merge.GroupState, cmd: Command, body: GroupRuling) -> GroupDecision | None:
    if any(p.insight_id == body.ruling_id for p in g.precedents):
        return None
    record = PrecedentRecord(insight_id=body.ruling_id, category=body.category,
                             place=body.place, unit=body.unit, case_id=body.case_id,
                             at=cmd.at)
    kept = (*g.precedents, record)
    while len(kept) > PRECEDENTS_KEPT:  # the oldest revoked first, else the oldest
        drop = next((p for p in kept if p.revoked_at is not None), kept[0])
        kept = tuple(p for p in kept if p is not drop)
    return GroupDecision(g.model_copy(update={"precedents": kept}), records=[record])


def _revoke(g: merge.GroupState, cmd: Command, body: GroupRevoke) -> GroupDecision | None:
    i = next((i for i, p in enumerate(g.precedents)
              if p.insight_id == body.ruling_id and p.revoked_at is None), None)
    if i is None:
        return None
    record = g.precedents[i].model_copy(update={"revoked_at": cmd.at})
    kept = (*g.precedents[:i], record, *g.precedents[i + 1:])
    revoked = RevokedInsight(insight_id=ids.insight_id("revoked", body.ruling_id), at=cmd.at,
                             ruling_id=body.ruling_id)
    return GroupDecision(g.model_copy(update={"precedents": kept}),
                         outputs=[insight_output(revoked)], records=[record])


# ---- the case: disputes and rulings ----


def case_place(location: dict[str, Any], group: str | None) -> str | dict[str, float] | None:
    """A case's place, kept on its state: its point, or its group's unit (placed by unit or
    address), or the unit its location names; None for a case with neither."""
    point = merge.point_of(location)
    if point is not None:
        return {"lat": point[0], "lon": point[1]}
    if group:
        return merge.place_of(group)
    unit = location.get("unit")
    return unit if isinstance(unit, str) else None


def published_place(place: str | dict[str, float] | None, radius_m: float
                    ) -> str | dict[str, float] | None:
    """As ``zhida.insights`` says it: a point is a cluster ``{"lat", "lon", "radius_m"}``."""
    if isinstance(place, dict):
        return {"lat": place["lat"], "lon": place["lon"], "radius_m": radius_m}
    return place


def dispute_of(state: CaseState, actor: str, world: World) -> tuple[tuple[str, ...], str] | None:
    """The returning units and their arbiter when ``actor``'s return makes a dispute: a unit
    other than every one that returned the case before, whose lowest common ancestor with them
    is above them all (a centre passing a case a street returned to it up is no dispute)."""
    if not state.returned_by or actor in state.returned_by or actor not in world.topology:
        return None
    units = (*state.returned_by, actor)
    arbiter = units[0] if units[0] in world.topology else world.topology.city
    for u in units[1:]:
        if u in world.topology:
            arbiter = world.topology.lowest_common_ancestor(arbiter, u)
    if arbiter in units:
        return None
    return units, arbiter


def rules(state: CaseState, actor: str, world: World) -> bool:
    """An ``assign`` by the arbiter of the case's open dispute, or by an ancestor of it."""
    a = state.arbiter
    return state.dispute is not None and a is not None and (
        actor == a or (actor in world.topology and world.topology.is_ancestor(actor, a)))


def group_notices(before: CaseState | None, after: CaseState, events: list[CaseEvent],
                  at: datetime) -> list[Command]:
    """What a case tells its merge group: it closed (stop joining it), it was reopened (a
    hotspot counts it), it was ruled (a precedent for the place)."""
    if not after.group:
        return []
    out = []
    if after.state == "closed" and (before is None or before.state != "closed"):
        out.append(GroupForget(case_id=after.case_id))
    for e in events:
        if e.type == "reopened":
            out.append(GroupReopened(case_id=after.case_id))
        elif e.type == "assigned" and e.ruling and after.source == "complaint" \
                and e.place is not None:
            out.append(GroupRuling(ruling_id=e.ruling, case_id=after.case_id,
                                   category=after.category, place=e.place, unit=e.unit))
    return [Command(aggregate=after.group, at=at, body=b) for b in out]


def insight_output(value: HotspotInsight | RevokedInsight) -> Output:
    return Output("insights", value.insight_id, value, value.insight_id,
                  f"zhida.insight.{value.kind}")
