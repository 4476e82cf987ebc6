"""扯皮 played by the simulated centres: disputed streets, and arbiters that rule.

A disputed street of the run's plan (engine/tools/sim/recurring.py ``Dispute``) returns the
first case of its category placed on it (退单: "not ours"). Its district, getting the case
back, assigns it to the neighbouring street of the plan, which returns it too. Two units
returned one case: the engine sends it to their lowest common ancestor, the district, with
``dispute: true`` on the order (CONTRACT.md "Recurring problems and disputes"). The district
rules: it assigns the case to the street the plan says (``Dispute.ruled``), and that street
works it (no 退单 again). Later cases of the category at that place are dispatched by the
engine straight to the ruled street (a precedent), and the centres work them as any other.

Every other ``dispute: true`` order (two streets that happened to return one case) is ruled
too: the arbiter assigns the case to one of the units the simulation returned it from, else
to a street below it; an arbiter with no street below it handles the case itself.

``Disputes.move`` says what a unit does with an order of this play, None for any other order
(the centres' usual behaviour).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from engine.data.topology import Topology
from engine.tools.sim.recurring import Dispute

RETURNERS_KEPT = 8  # units remembered per case as having returned it


@dataclass(frozen=True, slots=True)
class Move:
    """``return`` the case, ``assign`` it to ``to`` (``ruling``: the arbiter's), or ``work``
    it (acknowledge and resolve, never return)."""

    action: Literal["return", "assign", "work"]
    to: str | None = None
    ruling: bool = False


@dataclass(slots=True)
class _Contest:
    dispute: Dispute
    step: int = 0  # 0: the street returned it; 1: the district passed it on; 2: returned again


class Disputes:
    def __init__(self, disputes: Iterable[Dispute], topology: Topology,
                 rng: random.Random) -> None:
        self.topology = topology
        self.rng = rng
        self._streets = {(d.category, d.street): d for d in disputes}
        self._started: set[tuple[str, str]] = set()  # disputed streets that returned a case
        self._contested: dict[str, _Contest] = {}  # case → the dispute its street started
        self._returners: dict[str, list[str]] = {}  # case → units that returned it
        self.ruled: dict[str, str] = {}  # case → the unit its arbiter ruled for

    def returned(self, case_id: str, unit: str) -> None:
        """The simulation returned ``case_id`` from ``unit`` (any 退单, planned or not)."""
        units = self._returners.setdefault(case_id, [])
        if unit not in units and len(units) < RETURNERS_KEPT:
            units.append(unit)

    def move(self, order: dict[str, Any]) -> Move | None:
        case_id, target = order["case_id"], order["target"]
        if order.get("dispute"):
            return self._rule(case_id, target)
        if case_id in self.ruled:
            return Move("work")  # the ruled owner: no 退单 again
        contest = self._contested.get(case_id)
        if contest is not None:
            d = contest.dispute
            if target == d.district and contest.step == 0:
                contest.step = 1
                return Move("assign", d.neighbour)  # "then the street next door"
            if target == d.neighbour and contest.step == 1:
                contest.step = 2
                return Move("return")  # "not ours either"
            return None
        location = order.get("location")
        unit = location.get("unit") if isinstance(location, dict) else None
        d = self._streets.get((str(order.get("category")), str(unit)))
        if d is None or target != d.street or (d.category, d.street) in self._started:
            return None
        self._started.add((d.category, d.street))  # its first case only
        self._contested[case_id] = _Contest(d)
        return Move("return")

    def _rule(self, case_id: str, arbiter: str) -> Move:
        topo = self.topology
        contest = self._contested.get(case_id)
        if contest is not None and arbiter in topo \
                and topo.is_ancestor(arbiter, contest.dispute.ruled):
            to: str | None = contest.dispute.ruled
        else:
            below = [u for u in self._returners.get(case_id, ())
                     if u in topo and arbiter in topo and topo.is_ancestor(arbiter, u)]
            to = self.rng.choice(below) if below else self._street_below(arbiter)
        if to is None:
            return Move("work")  # nobody below to rule for: the arbiter handles it
        self.ruled[case_id] = to
        return Move("assign", to, ruling=True)

    def _street_below(self, unit: str) -> str | None:
        topo = self.topology
        if unit not in topo:
            return None
        if topo.level(unit) == "district":
            streets = topo.streets_of(unit)
        elif unit == topo.city:
            streets = topo.streets
        else:
            streets = []
        return self.rng.choice(streets) if streets else None
