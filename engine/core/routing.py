"""Where a new case goes: the lowest unit that owns its location and category."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.catalogue import Category
from engine.topology import Topology


@dataclass(frozen=True, slots=True)
class Placement:
    unit: str
    triage: bool = False


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


def route(topology: Topology, category: Category, location: dict[str, Any]) -> Placement:
    """Street-level work goes flat to the street; unplaceable locations to the city triage queue.

    lat/lon and address locations are triaged until geo/address routing lands.
    """
    code = location.get("unit")
    if not isinstance(code, str):
        return Placement(topology.city, triage=True)
    place = _place_of(topology, code)
    owner = category.owner
    if owner == "street":
        return Placement(topology.street_of(place) or place)
    if owner == "district":
        return Placement(topology.district_of(place) or topology.city)
    if owner == "city":
        return Placement(topology.city)
    return Placement(owner)  # a department's unit code, checked when the catalogue loads
