"""The read-only facts the core decides with: topology, catalogue, policy, working time.

Built from the operator files by engine/runtime/world.py (``load_world``): the core reads no
file."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from engine.core.calendar import WorkingTime, build_calendar
from engine.core.place import Placer
from engine.data.catalogue import Catalogue
from engine.data.policy import Policy
from engine.data.topology import Topology

CLOCKS = ("24x7", "workdays")


@dataclass(frozen=True)
class World:
    topology: Topology
    catalogue: Catalogue
    policy: Policy  # the file in force: frozen on every case opened from now on
    calendars: dict[str, WorkingTime] = field(default_factory=dict)
    # every policy version a running case was opened under, by digest (engine/runtime/writer.py
    # loads them from the store; a restart with a new file never rewrites running cases)
    policies: dict[str, Policy] = field(default_factory=dict)
    placer: Placer | None = None  # points and addresses → units (engine/core/place.py)

    def policy_for(self, digest: str) -> Policy:
        """The policy frozen on a case; KeyError if its version was not loaded first."""
        if not digest or digest == self.policy.digest:
            return self.policy
        return self.policies[digest]

    def knows(self, digest: str) -> bool:
        return not digest or digest == self.policy.digest or digest in self.policies

    def clock(self, policy: Policy) -> WorkingTime:
        return self.calendars[policy.clock]

    def uncovered_years(self) -> frozenset[int]:
        """Years the working-day calendar only knows as weekends (no holiday data)."""
        return getattr(self.calendars.get("workdays"), "uncovered_years", frozenset())

    def fallback_years(self, today: date, ahead_days: int = 60) -> list[int]:
        """Years deadlines run into soon (this one; the next within ``ahead_days``) that only
        the weekend fallback knows: the operator must list their announced days."""
        soon = {today.year, (today + timedelta(days=ahead_days)).year}
        return sorted(soon & self.uncovered_years())


def calendars_for(policy: Policy, today: date) -> dict[str, WorkingTime]:
    """Both clocks, built from the file in force: holidays are facts, not frozen policy."""
    c = policy.calendar
    return {kind: build_calendar(kind, tz=c.timezone, office_hours=c.office_hours,
                                 years=c.years, today=today) for kind in CLOCKS}
