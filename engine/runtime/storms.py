"""Alarm storms: a district's alarms above the policy's rate, reported once per storm.

A rainstorm trips hundreds of waterlogging sensors in minutes. The merge groups keep that to
one case per street and kind (engine/core/merge.py); this watch tells the operators a storm
is on: ``zhida_alarm_storms_total`` and one ``alarm_storm`` log line when a district's alarms
in the last minute pass ``storm_alarms_per_minute``, and ``alarm_storm_over`` once its last
minute has fallen to half the rate. Counted per worker on the alarms its intake partitions
carry (with several workers each sees its share; the rate is then per worker).
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

from engine.core import merge
from engine.core.model import Command, GroupOpen, OpenCase
from engine.runtime import logs
from engine.runtime.app import Engine

log = logs.get("zhida.storms")
WINDOW = timedelta(minutes=1)


class StormWatch:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: dict[str, deque[datetime]] = {}
        self.active: set[str] = set()

    def saw(self, cmd: Command) -> None:
        body = cmd.body
        world = self.engine.world
        if isinstance(body, GroupOpen):  # placed at intake already: the group key says where
            report, unit = body.open, merge.place_of(cmd.aggregate)
        elif isinstance(body, OpenCase):  # merging off: place it here
            report, unit = body, body.location.get("unit")
            if not isinstance(unit, str) and world.placer is not None:
                unit = world.placer.place(body.location, world.policy.border_distance_m).unit
        else:
            return
        if report.source != "sensed" or not isinstance(unit, str) or unit not in world.topology:
            return
        district = world.topology.district_of(unit)
        if district is not None:
            self.observe(district, cmd.at)

    def observe(self, district: str, at: datetime) -> None:
        times = self.seen.setdefault(district, deque())
        times.append(at)
        while times and at - times[0] > WINDOW:
            times.popleft()
        limit = self.engine.world.policy.storm_alarms_per_minute
        if len(times) > limit and district not in self.active:
            self.active.add(district)
            self.engine.metrics.storms.inc()
            log.warning("alarm_storm", district=district,
                        name=self.engine.world.topology.name(district),
                        alarms_last_minute=len(times), limit=limit)
        elif district in self.active and len(times) <= limit // 2:
            self.active.discard(district)
            log.info("alarm_storm_over", district=district, alarms_last_minute=len(times))
