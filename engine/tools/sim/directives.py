"""Simulated directives (政令): the city and a district centre issue, the targets sign and report.

The desk issues a few directives while the simulation runs (to every street, to the streets
of some districts, a district centre to a list of its own streets) and follows
``zhida.directive.events`` for the demo's summary: each directive's acknowledgement ratio,
time to full acknowledgement and escalations. The targets' side lives in ``Centres``
(engine/tools/sim/centres.py): they sign after a realistic delay, report after that, and a few never
sign, so the engine's ladder has to remind and escalate them.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.data.topology import Topology
from engine.tools.sim import Listener, Scheduler, Sender, SimStats, now_iso
from topics import TopicNames

SILENT_SHARE = 0.03  # targets that never sign: reminded, then supervised up the ladder
ACK_RANGE = (60.0, 1800.0)  # simulated seconds to 签收
REPORT_RANGE = (600.0, 3600.0)  # simulated seconds from 签收 to 落实反馈
ACK_WITHIN = 3600.0  # simulated seconds, scaled to real time by the speed


@dataclass
class Tracked:
    """One directive as the issuer sees it on ``zhida.directive.events``."""

    directive_id: str
    issuer: str
    title: str
    targets: int = 0
    sent_at: float = field(default_factory=time.monotonic)
    delivered: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    reported: set[str] = field(default_factory=set)
    escalations: set[int] = field(default_factory=set)  # seqs of escalated events
    reminders: set[int] = field(default_factory=set)
    fully_acknowledged_after: float | None = None  # real seconds from issue
    completed: bool = False

    @property
    def ack_ratio(self) -> float:
        return len(self.acknowledged) / self.targets if self.targets else 0.0


class Desk(Listener):
    """Issues the simulation's directives and follows them on ``zhida.directive.events``."""

    def __init__(self, bootstrap: str, names: TopicNames, topology: Topology, sender: Sender,
                 scheduler: Scheduler, stats: SimStats, *, speed: float = 60.0,
                 seed: int = 0) -> None:
        super().__init__(bootstrap, [names.directive_events], stats)
        self.names = names
        self.topology = topology
        self.sender = sender
        self.scheduler = scheduler
        self.speed = max(speed, 1e-9)
        self.rng = random.Random(f"directives-{seed}")
        self.tracked: dict[str, Tracked] = {}
        stats.directives = self.tracked

    def plan(self, duration: float) -> None:
        """Three directives spread over the first half of the input window."""
        topo = self.topology
        districts = sorted(topo.districts)
        some = self.rng.sample(districts, 3)
        own = "500103" if "500103" in topo else districts[0]
        plans: list[tuple[str, str, dict[str, Any], bool]] = [
            (topo.city, "汛期城市安全隐患大排查", {"level": "street"}, True),
            (topo.city, "重点区域燃气安全专项检查", {"level": "street", "within": some}, False),
            (own, "辖区背街小巷环境整治", {"units": topo.streets_of(own)[:6]}, True),
        ]
        for i, (issuer, title, targets, report) in enumerate(plans):
            delay = duration * 0.5 * i / len(plans)
            self.scheduler.schedule(f"directive:{i}", delay,
                                    lambda a=(issuer, title, targets, report): self._issue(*a))

    async def _issue(self, issuer: str, title: str, targets: dict[str, Any],
                     report: bool) -> None:
        did = f"ZL-{int(time.time() * 1000)}-{self.rng.randrange(10**6):06d}"
        ack_within = max(ACK_WITHIN / self.speed, 1.0)
        body: dict[str, Any] = {
            "directive_id": did, "issuer": issuer, "title": title,
            "body": f"{title}：请各单位立即组织落实，按时签收并反馈落实情况。",
            "targets": targets, "ack_within": f"PT{ack_within:.3f}S", "issued_at": now_iso(),
        }
        if report:
            by = time.time() + 4 * ack_within
            body["report_by"] = datetime.fromtimestamp(by).astimezone().isoformat()
        self.tracked[did] = Tracked(did, issuer, title)
        await self.sender.send(self.names.directives, did, body)

    def on_message(self, topic: str, value: dict[str, Any]) -> None:
        t = self.tracked.get(value.get("directive_id", ""))
        if t is None:
            return
        kind, target = value.get("type"), value.get("target")
        if kind == "issued":
            t.targets = int(value.get("targets") or 0)
        elif kind == "delivered" and target:
            t.delivered.add(target)
        elif kind == "acknowledged" and target:
            t.acknowledged.add(target)
            if t.targets and len(t.acknowledged) == t.targets \
                    and t.fully_acknowledged_after is None:
                t.fully_acknowledged_after = time.monotonic() - t.sent_at
        elif kind == "reported" and target:
            t.reported.add(target)
        elif kind == "escalated":
            t.escalations.add(int(value["seq"]))
        elif kind == "warned":
            t.reminders.add(int(value["seq"]))
        elif kind == "completed":
            t.completed = True


class Targets:
    """How simulated units answer a directive's task (used by ``Centres``)."""

    def __init__(self, names: TopicNames, topology: Topology, sender: Sender,
                 scheduler: Scheduler, stats: SimStats, rng: random.Random,
                 speed: float) -> None:
        self.names = names
        self.topology = topology
        self.sender = sender
        self.scheduler = scheduler
        self.stats = stats
        self.rng = rng
        self.speed = speed
        self._seen: set[str] = set()
        self._tasks: set[tuple[str, str]] = set()  # (directive, target) orders received

    def on_order(self, order: dict[str, Any]) -> None:
        """``kind=directive``: sign after a while (a few never), then report."""
        if order.get("order_id") in self._seen:
            return
        self._seen.add(order.get("order_id", ""))
        if self.rng.random() < SILENT_SHARE:
            self.stats.directive_silent += 1
            return
        did, target = order["directive_id"], order["target"]
        self._tasks.add((did, target))
        delay = self.rng.uniform(*ACK_RANGE) / self.speed
        self.scheduler.schedule(f"dtask:{did}:{target}", delay,
                                lambda: self._answer(did, target))

    def on_supervision(self, order: dict[str, Any]) -> None:
        """督办 of a directive task: the supervising level signs for its late unit."""
        if order.get("order_id") in self._seen:
            return
        self._seen.add(order.get("order_id", ""))
        late, supervisor = order.get("late_unit"), order["target"]
        did = order["directive_id"]
        # the first level up acts for its target half the time; a higher one leaves it
        if (did, late) not in self._tasks or self.rng.random() < 0.5:
            return
        action = "report" if order.get("stage") == "report" else "ack"
        note = "督办：代为签收。" if action == "ack" else "督办：已督促落实。"
        self.scheduler.schedule(f"dsup:{did}:{late}", self.rng.uniform(30, 300) / self.speed,
                                lambda: self._update(did, supervisor, action, target=late,
                                                     note=note))

    async def _answer(self, did: str, target: str) -> None:
        await self._update(did, target, "ack", note="已签收。")
        self.scheduler.schedule(f"dreport:{did}:{target}",
                                self.rng.uniform(*REPORT_RANGE) / self.speed,
                                lambda: self._update(did, target, "report",
                                                     note="已按要求落实。"))

    async def _update(self, did: str, actor: str, action: str, **fields: Any) -> None:
        target = fields.get("target", actor)
        body = {"update_id": f"{did}:{target}:{action}:{actor}", "actor": actor,
                "action": action, "at": now_iso(), "directive_id": did, **fields}
        await self.sender.send(self.names.unit_updates, did, body)
        self.stats.directive_updates += 1
