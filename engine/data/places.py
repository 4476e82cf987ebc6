"""Loads the placement data once: district polygons and the topology's names (I/O lives here,
the placing itself in engine.core.place)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import orjson

from engine.core.place import AddressMatcher, GeoIndex, Placer
from engine.data.topology import Topology

DISTRICTS = Path(__file__).parent / "districts.geojson"


@cache
def geo_index(path: Path | str | None = None) -> GeoIndex:
    """The district polygons of engine/data/districts.geojson, parents from the topology."""
    topology = Topology.load()
    parents = {code: u.parent for code, u in topology.units.items()}
    collection = orjson.loads(Path(path or DISTRICTS).read_bytes())
    return GeoIndex.from_geojson(collection, parents, city=topology.city)


@cache
def address_matcher(path: Path | str | None = None) -> AddressMatcher:
    """The district/town/street names of the topology (engine/data/topology.json)."""
    topology = Topology.load(path)
    return AddressMatcher(topology.units.values(), city=topology.city)


@cache
def placer() -> Placer:
    """Places any CONTRACT.md location: built once, shared (read-only)."""
    return Placer(geo_index(), address_matcher(), frozenset(Topology.load().units))


def placer_for(topology: Topology) -> Placer:
    """A placer for another topology file: its names for addresses, the same polygons."""
    return Placer(geo_index(), AddressMatcher(topology.units.values(), city=topology.city),
                  frozenset(topology.units))
