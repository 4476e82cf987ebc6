"""What the engine learnt from the run: ``zhida.insights`` and precedent-routed cases.

``InsightWatch`` reads ``zhida.insights`` (hotspots, disputes, rulings, revoked precedents)
and ``zhida.case.events`` (a ``dispatched`` event carrying ``precedent``: a case sent straight
to the unit a ruling named) into the run's ``SimStats``, for the summaries. The messages are
counted, each once by its id; the one kept whole is the hotspot with the most reports, and it
is printed through engine/tools/inert.py by whoever prints it.
"""

from __future__ import annotations

from typing import Any

from engine.tools.sim import Listener, SimStats
from topics import TopicNames

KINDS = frozenset({"hotspot", "dispute", "ruling", "revoked"})
IDS_KEPT = 100_000  # ids remembered to count a redelivered message once
ID_MAX = 200  # characters of an id: a longer one is not remembered


class InsightWatch(Listener):
    def __init__(self, bootstrap: str, names: TopicNames, stats: SimStats) -> None:
        super().__init__(bootstrap, [names.insights, names.case_events], stats)
        self.names = names
        self.tally = Tally(stats)

    def on_message(self, topic: str, value: dict[str, Any]) -> None:
        if topic == self.names.insights:
            self.tally.insight(value)
        else:
            self.tally.case_event(value)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class Tally:
    """Counts into ``stats``; a message seen again (at-least-once) is counted once."""

    def __init__(self, stats: SimStats) -> None:
        self.stats = stats
        self._insights: set[str] = set()
        self._precedent_cases: set[str] = set()

    def _first(self, seen: set[str], key: object) -> bool:
        if not isinstance(key, str) or len(key) > ID_MAX:
            return True  # counted, not remembered
        if key in seen:
            return False
        if len(seen) < IDS_KEPT:
            seen.add(key)
        return True

    def insight(self, value: object) -> None:
        if not isinstance(value, dict):
            return
        kind = value.get("kind")
        if not self._first(self._insights, value.get("insight_id")):
            return
        self.stats.insights[kind if kind in KINDS else "other"] += 1
        if kind != "hotspot":
            return
        top = self.stats.top_hotspot
        if top is None or _count(value.get("reports")) > _count(top.get("reports")):
            self.stats.top_hotspot = {k: value.get(k) for k in (
                "category", "place", "unit", "reports", "cases", "repeat_callers")}

    def case_event(self, value: object) -> None:
        if isinstance(value, dict) and value.get("type") == "dispatched" \
                and value.get("precedent") \
                and self._first(self._precedent_cases, value.get("case_id")):
            self.stats.precedent_cases += 1
