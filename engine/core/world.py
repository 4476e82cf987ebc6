"""The read-only facts the core decides with: topology, catalogue, policy."""

from __future__ import annotations

from dataclasses import dataclass

from engine.catalogue import Catalogue
from engine.policy import Policy
from engine.topology import Topology


@dataclass(frozen=True)
class World:
    topology: Topology
    catalogue: Catalogue
    policy: Policy

    @classmethod
    def load(cls, topology: str | None = None, catalogue: str | None = None,
             policy: str | None = None) -> World:
        world = cls(Topology.load(topology), Catalogue.load(catalogue), Policy.load(policy))
        world.catalogue.check_owners(world.topology)
        return world
