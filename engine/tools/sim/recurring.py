"""Recurring problems and disputed streets: what the simulation gives ``zhida.insights`` to find.

A run's *plan*, drawn from its seed alone (``plan_for``), names

- a few **recurring places**: (category, street) and (category, point) pairs that keep being
  reported over the run (每月一题 hotspots), two reports in three by its regular callers
  (one phone each, each calling twice: ``regular_caller``);
  a point pair is a landmark of a central district, each report within ``POINT_JITTER_M`` of
  it (one point cluster for the engine);
- a few **disputed streets** (扯皮), each a recurring place too: for one category a street
  returns the case it gets, its district assigns the case to a neighbouring street of the
  same district, which returns it as well; the engine sends the case to the district as
  arbiter, and the district rules for one of the two (``Dispute.ruled``). The centres play
  this (engine/tools/sim/disputes.py); later cases of the place go straight to the ruled street.

``Recurring`` spaces the pairs' complaints over the generator's ticks: one every
``RECURRING_EVERY`` ticks, in turn over the pairs (the disputed places twice per round, so
that cases after the ruling come soon), at most ``RECURRING_MAX`` per pair: bounded, and the
same ticks give the same complaints (the generator draws them from a random source of their
own, so the regular inputs of a seed do not change).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.data.catalogue import Catalogue
from engine.data.topology import Topology
from engine.tools.sim.people import CENTRAL_DISTRICTS, PHONE_PREFIXES, SURNAMES

DISPUTED_STREETS = 2  # streets that return a case of one category: disputes to rule
RECURRING_STREETS = 3  # other (category, street) places reported again and again
RECURRING_POINTS = 2  # (category, landmark) places reported by coordinates
RECURRING_EVERY = 8  # ticks between two recurring complaints
RECURRING_MAX = 20  # recurring complaints per place over a run
CALLERS_PER_PLACE = 3  # the place's regular callers (the same phone every time)
POINT_JITTER_M = 30.0  # a point report lies this close to its landmark (merge radius 100 m)

#: 临界模糊地带: what streets argue about at their borders (street-owned categories)
DISPUTE_CATEGORIES = ("street_vending", "illegal_parking", "garbage_overflow", "sanitation")
#: the same problem again and again at one place (每月一题 candidates)
RECURRING_CATEGORIES = ("noise", "road_damage", "street_lighting", "garbage_overflow",
                        "illegal_parking", "property_management", "drainage")
POINT_CATEGORIES = ("road_damage", "street_lighting", "sanitation", "illegal_parking")
#: central landmarks, each well inside its district (farther than the border distance from
#: any other district: the engine places them without triage or the boundary rule)
LANDMARKS: tuple[tuple[str, float, float], ...] = (
    ("解放碑", 29.5576, 106.5770), ("观音桥", 29.5755, 106.5330), ("三峡广场", 29.5570, 106.4560),
    ("杨家坪", 29.5070, 106.5100), ("南坪", 29.5300, 106.5640), ("鱼洞", 29.3850, 106.5220),
    ("光电园", 29.6180, 106.5000),
)


@dataclass(frozen=True, slots=True)
class Place:
    """A recurring place: a street (``unit``) or a landmark (``point``), for one category."""

    category: str
    name: str  # for the complaint's description
    unit: str | None = None
    point: tuple[float, float] | None = None
    callers: tuple[tuple[str, str], ...] = ()  # (name, phone) of its regular callers
    disputed: bool = False


@dataclass(frozen=True, slots=True)
class Dispute:
    """A disputed street: ``street`` and ``neighbour`` both return the category's case, and
    their district rules for ``ruled`` (one of the two)."""

    category: str
    street: str
    neighbour: str
    district: str
    ruled: str


@dataclass(frozen=True, slots=True)
class Plan:
    places: tuple[Place, ...]  # the disputed streets first
    disputes: tuple[Dispute, ...]

    def rotation(self) -> tuple[int, ...]:
        """Indexes of ``places`` in their turn: the disputed ones twice per round."""
        disputed = [i for i, p in enumerate(self.places) if p.disputed]
        others = [i for i, p in enumerate(self.places) if not p.disputed]
        half = (len(others) + 1) // 2
        return (*disputed, *others[:half], *disputed, *others[half:])


def _caller(rng: random.Random) -> tuple[str, str]:
    return (rng.choice(SURNAMES) + rng.choice(("先生", "女士")),
            rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}")


def _known(wanted: tuple[str, ...], codes: list[str]) -> list[str]:
    return [c for c in wanted if c in codes] or codes


def plan_for(seed: int, topology: Topology, catalogue: Catalogue, *,
             disputed: int = DISPUTED_STREETS, streets: int = RECURRING_STREETS,
             points: int = RECURRING_POINTS) -> Plan:
    """The run's recurring places and disputed streets: the same seed, the same plan."""
    rng = random.Random(f"recurring-{seed}")
    codes = sorted(catalogue.codes("complaint"))
    owned = [c for c in codes if (k := catalogue.get(c, "complaint")) and k.owner == "street"]
    central = [d for d in CENTRAL_DISTRICTS if d in topology] or topology.districts

    def urban(district: str) -> list[str]:
        """The district's 街道 (else all its streets): where the busy borders are."""
        all_ = topology.streets_of(district)
        return [s for s in all_ if topology.name(s).endswith("街道")] or all_

    places: list[Place] = []
    disputes: list[Dispute] = []
    arguing = [d for d in central if len(urban(d)) >= 2]
    for district in rng.sample(arguing, min(disputed, len(arguing))):
        street, neighbour = rng.sample(urban(district), 2)
        category = rng.choice(_known(DISPUTE_CATEGORIES, owned)) if owned else rng.choice(codes)
        disputes.append(Dispute(category, street, neighbour, district,
                                ruled=rng.choice((street, neighbour))))
        places.append(Place(category, topology.name(street), unit=street,
                            callers=tuple(_caller(rng) for _ in range(CALLERS_PER_PLACE)),
                            disputed=True))
    disputed_streets = {p.unit for p in places}
    busy = [s for d in central for s in urban(d) if s not in disputed_streets]
    kinds = _shuffled(rng, _known(RECURRING_CATEGORIES, codes))
    for i, street in enumerate(rng.sample(busy, min(streets, len(busy)))):
        places.append(Place(kinds[i % len(kinds)], topology.name(street), unit=street,
                            callers=tuple(_caller(rng) for _ in range(CALLERS_PER_PLACE))))
    kinds = _shuffled(rng, _known(POINT_CATEGORIES, codes))
    for i, (name, lat, lon) in enumerate(rng.sample(LANDMARKS, min(points, len(LANDMARKS)))):
        places.append(Place(kinds[i % len(kinds)], name, point=(lat, lon),
                            callers=tuple(_caller(rng) for _ in range(CALLERS_PER_PLACE))))
    return Plan(tuple(places), tuple(disputes))


def _shuffled(rng: random.Random, items: list[str]) -> list[str]:
    return rng.sample(items, len(items))


def regular_caller(place: Place, n: int) -> tuple[str, str] | None:
    """Who makes report ``n`` (from 0) of ``place``: its regular callers in turn, each twice,
    and every third report someone new (None)."""
    if not place.callers or n % 3 == 2:
        return None
    return place.callers[(n // 3) % len(place.callers)]


class Recurring:
    """Which place, if any, a tick reports again: every ``every`` ticks the next in turn,
    until each has had ``cap`` complaints."""

    def __init__(self, plan: Plan, every: int = RECURRING_EVERY, cap: int = RECURRING_MAX
                 ) -> None:
        self.plan = plan
        self.every = max(every, 1)
        self.cap = cap
        self.turns = plan.rotation()
        self.sent = [0] * len(plan.places)

    def due(self, tick: int) -> tuple[Place, int] | None:
        """The place reported at ``tick`` (1 for the first tick), and how many reports of it
        came before."""
        if not self.turns or tick <= 0 or tick % self.every:
            return None
        i = self.turns[(tick // self.every - 1) % len(self.turns)]
        if self.sent[i] >= self.cap:
            return None
        self.sent[i] += 1
        return self.plan.places[i], self.sent[i] - 1
