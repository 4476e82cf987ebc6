"""Where a new case goes: the lowest unit that owns its location and category."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.data.catalogue import Category
from engine.data.topology import Topology

if TYPE_CHECKING:
    from engine.core.place import Placer


@dataclass(frozen=True, slots=True)
class Placement:
    unit: str
    triage: bool = False
    boundary: bool = False  # near a district line: the lowest common ancestor assigns it
    reason: str | None = None  # triage: why the location could not be placed


class UnknownUnit(Exception):
    pass


def _place_of(topology: Topology, code: str) -> str:
    """A department's place is its parent's area; grids, streets, districts are their own."""
    unit = topology.get(code)
    if unit is None:
        raise UnknownUnit(code)
    if unit.level == "department":
        return unit.parent or topology.city
    return code


def route(topology: Topology, category: Category, location: dict[str, Any],
          placer: Placer | None = None, border_m: float = 0.0) -> Placement:
    """Street-level work goes flat to the street; unplaceable locations to the city triage queue.

    A point or an address is first placed (engine/core/place.py): on a district (there are
    no street polygons) or, for an address, the street or town it names; a point within
    ``border_m`` of another district goes to their lowest common ancestor with ``boundary``.
    """
    code = location.get("unit")
    if not isinstance(code, str):
        if placer is None:
            return Placement(topology.city, triage=True, reason="no placement data loaded")
        p = placer.place(location, border_m)
        if p.unit is None or p.unit not in topology:
            return Placement(topology.city, triage=True, reason=p.reason)
        if p.boundary:
            return Placement(p.unit, boundary=True, reason=p.reason)
        code = p.unit
    place = _place_of(topology, code)
    owner = category.owner
    if owner == "street":
        return Placement(topology.street_of(place) or place)
    if owner == "district":
        return Placement(topology.district_of(place) or topology.city)
    if owner == "city":
        return Placement(topology.city)
    return Placement(owner)  # a department's unit code, checked when the catalogue loads
