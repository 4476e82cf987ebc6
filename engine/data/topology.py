"""The administrative tree (city → district → street, departments beside them) and its lookups."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import orjson

Level = Literal["city", "district", "street", "department", "grid"]
DATA = Path(__file__).parent / "topology.json"
CITY_TOPIC_KEY = "city"


@dataclass(frozen=True, slots=True)
class Unit:
    code: str
    name: str
    level: Level
    parent: str | None
    kind: str | None = None


class Topology:
    """Read-only; every lookup is O(depth) over a dict, depth ≤ 4."""

    def __init__(self, units: list[Unit]) -> None:
        self.units: dict[str, Unit] = {u.code: u for u in units}
        roots = [u for u in units if u.parent is None]
        if len(roots) != 1:
            raise ValueError(f"topology needs exactly one root (the city centre), got {len(roots)}")
        self.city = roots[0].code
        for u in units:
            if u.parent is not None and u.parent not in self.units:
                raise ValueError(f"unit {u.code} names unknown parent {u.parent}")
        self._ancestors: dict[str, tuple[str, ...]] = {}
        self._children: dict[str, list[str]] = {}
        for u in units:
            if u.parent is not None:
                self._children.setdefault(u.parent, []).append(u.code)

    @classmethod
    def load(cls, path: Path | str | None = None) -> Topology:
        data = orjson.loads(Path(path or DATA).read_bytes())
        return cls([Unit(**u) for u in data["units"]])

    def __contains__(self, code: object) -> bool:
        return code in self.units

    def get(self, code: str) -> Unit | None:
        return self.units.get(code)

    def name(self, code: str) -> str:
        u = self.units.get(code)
        return u.name if u else code

    def level(self, code: str) -> Level:
        return self.units[code].level

    def parent(self, code: str) -> str | None:
        return self.units[code].parent

    def children(self, code: str) -> list[str]:
        return self._children.get(code, [])

    def ancestors(self, code: str) -> tuple[str, ...]:
        """Parent first, the city centre last."""
        cached = self._ancestors.get(code)
        if cached is not None:
            return cached
        chain: list[str] = []
        p = self.units[code].parent
        while p is not None:
            chain.append(p)
            p = self.units[p].parent
        result = tuple(chain)
        self._ancestors[code] = result
        return result

    def is_ancestor(self, ancestor: str, code: str) -> bool:
        return ancestor in self.ancestors(code)

    def lowest_common_ancestor(self, a: str, b: str) -> str:
        chain_a = (a, *self.ancestors(a))
        seen = set((b, *self.ancestors(b)))
        for code in chain_a:
            if code in seen:
                return code
        return self.city

    def district_of(self, code: str) -> str | None:
        """The district a unit lies in (itself for a district); None at city level."""
        for c in (code, *self.ancestors(code)):
            if self.units[c].level == "district":
                return c
        return None

    def street_of(self, code: str) -> str | None:
        for c in (code, *self.ancestors(code)):
            if self.units[c].level == "street":
                return c
        return None

    def dispatch_key(self, code: str) -> str:
        """Suffix of the dispatch topic that carries a unit's work: its district or ``city``."""
        return self.district_of(code) or CITY_TOPIC_KEY

    @cached_property
    def districts(self) -> list[str]:
        return sorted(c for c, u in self.units.items() if u.level == "district")

    @cached_property
    def streets(self) -> list[str]:
        return sorted(c for c, u in self.units.items() if u.level == "street")

    def streets_of(self, district: str) -> list[str]:
        return [c for c in self.children(district) if self.units[c].level == "street"]
