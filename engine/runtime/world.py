"""The world a worker or a tool decides with, loaded from the operator files.

``load_world`` reads the topology, catalogue and policy files (engine/data/) and builds the
core's ``World``; the placement data (district polygons, the topology's names) is loaded once
per process and shared. The I/O lives here, the rules in engine/core (``World``, ``Placer``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

import orjson

from engine.core.place import AddressMatcher, GeoIndex, Placer
from engine.core.world import World, calendars_for
from engine.data.catalogue import Catalogue
from engine.data.policy import Policy
from engine.data.topology import Topology

DISTRICTS = Path(__file__).parents[1] / "data" / "districts.geojson"


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


def load_world(topology: str | None = None, catalogue: str | None = None,
               policy: str | None = None, today: date | None = None) -> World:
    """The files named (the shipped ones by default), checked against each other."""
    p = Policy.load(policy)
    topo = Topology.load(topology)
    world = World(topo, Catalogue.load(catalogue), p,
                  calendars_for(p, today or datetime.now(UTC).date()),
                  placer=placer() if topology is None else placer_for(topo))
    world.catalogue.check_owners(world.topology)
    return world
