"""Simulated governance centres: they work the orders on ``zhida.dispatch.*``.

For each ``kind=case`` handler order the target unit, after a simulated delay, acknowledges
(签收), reports progress and resolves (办结) on ``zhida.unit.updates``; for a sensed case the
level above the holder then verifies (核查). Orders for the city centre's triage queue (a
location the engine could not place) are assigned by the city centre to a street. Orders with
``role=assist`` and reminders (催办) are counted, not acted on.

About 4 % of street orders are never signed for: the engine reminds the street, then its
district supervises (督办, a ``kind=supervision`` order). Half the districts act on it (they
sign for the case on the street's behalf, or push the late resolution through); the others do
not, and the engine goes on to the city centre, which always acts. So a demo shows reminders
and escalations at every level.

Delays are in simulated time, divided by ``speed`` for the real wait. Acknowledgements come
1–20 simulated minutes after the order, inside the stage's window from the default SLA policy;
about 10 % come late, after the window. Resolution follows 10 minutes to 2 hours later.

The rest of the closed loop is exercised too: about 6 % of street orders are returned
(退单) once, and the district then assigns the case to another of its streets or handles it;
about 5 % of acknowledged cases summon a district department (吹哨报到), 3 % are suspended
and resumed; and about 2 % of orders draw a forged ``ack`` from a street of another district,
which the engine must refuse as ``unauthorized``.

扯皮 is played as well (engine/tools/sim/disputes.py): the run's disputed streets return the
first case of their category, their district passes it to the street next door, which returns
it too; the engine makes it a dispute, and the district's order with ``dispute: true`` is
answered with an ``assign`` (the ruling) to the street the plan names, which then works it.
Every ``dispute: true`` order gets the arbiter's ruling.

One ``Scheduler`` (engine/tools/sim/__init__.py) fires all delayed actions: one pending action per
case, replaced when a new order for the case arrives (reassignment, reopening).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from engine.data.policy import Policy
from engine.data.topology import CITY_TOPIC_KEY, Topology
from engine.tools.sim import CHONGQING, Listener, Scheduler, Sender, SimStats, now_iso
from engine.tools.sim.directives import Targets
from engine.tools.sim.disputes import Disputes, Move
from engine.tools.sim.generator import street_weight
from engine.tools.sim.recurring import Dispute
from topics import TopicNames

MINUTE = 60.0
ACK_RANGE = (1 * MINUTE, 20 * MINUTE)
LATE_SHARE = 0.10
LATE_BY = (1 * MINUTE, 30 * MINUTE)
RESOLVE = (10 * MINUTE, 30 * MINUTE, 120 * MINUTE)  # low, mode, high (triangular)
TRIAGE = (2 * MINUTE, 15 * MINUTE)
VERIFY = (5 * MINUTE, 45 * MINUTE)
RETURN_SHARE = 0.06
ASSIST_SHARE = 0.05
SUSPEND_SHARE = 0.03
FORGE_SHARE = 0.02
SUSPEND_FOR = (30 * MINUTE, 3 * 60 * MINUTE)
SILENT_SHARE = 0.04  # street orders never signed for
ACTS_ON_SUPERVISION = {"district": 0.5, "city": 1.0, "department": 0.5, "street": 0.5}

NOTES = {
    "ack": "已签收，正在安排处置。",
    "progress": "已派工作人员到场处置。",
    "resolve": "问题已处置完毕。",
    "verify": "经核查，已处置到位。",
    "return": "经核实，该位置不属于本街道辖区，申请退单。",
    "assist": "需职能部门协同处置，吹哨报到。",
    "suspend": "需等待相关审批，申请延期。",
    "resume": "审批已完成，恢复办理。",
}


class Centres(Listener):
    def __init__(self, bootstrap: str, names: TopicNames, topology: Topology, sender: Sender,
                 scheduler: Scheduler, stats: SimStats, *, speed: float = 60.0, seed: int = 0,
                 policy: Policy | None = None, disputes: Iterable[Dispute] = ()) -> None:
        self.topics = {names.dispatch(d): d for d in (*topology.districts, CITY_TOPIC_KEY)}
        super().__init__(bootstrap, list(self.topics), stats)
        self.names = names
        self.topology = topology
        self.sender = sender
        self.scheduler = scheduler
        self.speed = max(speed, 1e-9)
        self.rng = random.Random(f"centres-{seed}")
        self.policy = policy or Policy.load()
        self._seen: set[str] = set()
        self._returned: set[str] = set()  # cases a street has returned once
        self._handler: dict[str, dict[str, Any]] = {}  # case → its latest handler order
        # the city centre places triaged cases where the work is: the busier streets
        self.targets = Targets(names, topology, sender, scheduler, stats, self.rng, self.speed)
        self._streets = topology.streets
        self._cum_weights = list(itertools.accumulate(street_weight(topology, s)
                                                      for s in self._streets))
        self.disputes = Disputes(disputes, topology, random.Random(f"disputes-{seed}"))

    def on_message(self, topic: str, value: dict[str, Any]) -> None:
        self.on_order(value, self.topics.get(topic, CITY_TOPIC_KEY))

    # ---- orders ----

    def on_order(self, order: dict[str, Any], topic_key: str) -> None:
        kind = order.get("kind")
        if order.get("directive_id"):  # a directive's task (engine/tools/sim/directives.py)
            if kind == "directive":
                self.targets.on_order(order)
            elif kind == "supervision":
                self.targets.on_supervision(order)
            else:
                self.stats.other_orders[f"directive {kind}"] += 1
            return
        if kind == "supervision":
            self._on_supervision(order)
            return
        if kind != "case":
            self.stats.other_orders[str(kind)] += 1
            return
        if order.get("role", "handler") != "handler":
            self.stats.other_orders["assist"] += 1
            return
        order_id = order.get("order_id") or ""
        if order_id in self._seen:  # a redelivered copy (at-least-once)
            return
        self._seen.add(order_id)
        case_id = order["case_id"]
        self.stats.record_order(case_id, topic_key)
        self._handler[case_id] = order
        target = order["target"]
        located = isinstance(order.get("location"), dict) and "unit" in order["location"]
        key = f"case:{case_id}"
        move = self.disputes.move(order)  # 扯皮: disputed streets, arbiters' rulings
        if move is None and target == self.topology.city and not located:
            self.scheduler.schedule(key, self._real(self.rng.uniform(*TRIAGE)),
                                    lambda: self._assign(order))
            return
        if self.rng.random() < FORGE_SHARE:
            self.scheduler.schedule(f"forged:{case_id}", self._real(self.rng.uniform(*TRIAGE)),
                                    lambda: self._forge(order))
        if move is not None:
            self._play(order, move)
            return
        level = self.topology.level(target) if target in self.topology else None
        if case_id in self._returned and level == "district":
            if self.rng.random() < 0.6 and self.topology.streets_of(target):
                self.scheduler.schedule(key, self._real(self.rng.uniform(*TRIAGE)),
                                        lambda: self._reassign(order))
                return
        elif (level == "street" and not order.get("escalation_level")
              and self.rng.random() < RETURN_SHARE):
            self._returned.add(case_id)
            self.scheduler.schedule(key, self._real(self.rng.uniform(*TRIAGE)),
                                    lambda: self._return(order))
            return
        if (level == "street" and not order.get("escalation_level")
                and self.rng.random() < SILENT_SHARE):
            self.stats.silent += 1  # never signs: the engine's ladder has to act
            return
        delay, late = self._ack_delay(order)
        self.scheduler.schedule(key, self._real(delay), lambda: self._ack(order, late))

    def _play(self, order: dict[str, Any], move: Move) -> None:
        key = f"case:{order['case_id']}"
        if move.action == "work":
            delay, late = self._ack_delay(order)
            self.scheduler.schedule(key, self._real(delay), lambda: self._ack(order, late))
            return
        delay = self._real(self.rng.uniform(*TRIAGE))
        if move.action == "return":
            self._returned.add(order["case_id"])
            self.stats.disputed_returns += 1
            self.scheduler.schedule(key, delay, lambda: self._return(order))
        else:
            to, ruling = move.to or "", move.ruling
            self.scheduler.schedule(key, delay, lambda: self._assign_to(order, to, ruling))

    def _on_supervision(self, order: dict[str, Any]) -> None:
        """督办: the supervising level may act for the late unit (or leave it to go higher)."""
        order_id = order.get("order_id") or ""
        if order_id in self._seen:
            return
        self._seen.add(order_id)
        supervisor = order["target"]
        level = self.topology.level(supervisor) if supervisor in self.topology else "city"
        self.stats.supervision[level] += 1
        handler = self._handler.get(order["case_id"])
        if handler is None or self.rng.random() >= ACTS_ON_SUPERVISION.get(level, 1.0):
            return
        key = f"case:{order['case_id']}"
        stage = order.get("stage")
        delay = self._real(self.rng.uniform(*TRIAGE))
        if stage == "ack":
            self.scheduler.schedule(key, delay, lambda: self._ack_for(handler, supervisor))
        elif stage == "resolve":
            self.scheduler.schedule(key, delay, lambda: self._resolve(handler))
        elif stage == "feedback" and handler.get("source") == "sensed":
            self.scheduler.schedule(key, delay, lambda: self._verify(handler, supervisor))

    async def _ack_for(self, order: dict[str, Any], supervisor: str) -> None:
        """The supervisor signs for the case on the late unit's behalf; the unit then works it."""
        await self._update(order, "ack", supervisor, note="督办：代为签收，限时办理。")
        self.stats.supervised_acks += 1
        self._plan_resolution(order)

    def _ack_delay(self, order: dict[str, Any]) -> tuple[float, bool]:
        """Simulated seconds until 签收, and whether that is after the ack window."""
        window = self.policy.deadline(order.get("category") or "",
                                      order.get("priority") or "normal", "ack").total_seconds()
        if order.get("escalation_level", 0) > 0:  # under supervision: quick, never late
            return self.rng.uniform(ACK_RANGE[0], min(ACK_RANGE[1], 0.5 * window)), False
        if self.rng.random() < LATE_SHARE:
            return window + self.rng.uniform(*LATE_BY), True
        high = max(ACK_RANGE[0], min(ACK_RANGE[1], 0.9 * window))
        return self.rng.uniform(min(ACK_RANGE[0], high), high), False

    def _real(self, simulated: float) -> float:
        return simulated / self.speed

    # ---- actions ----

    async def _update(self, order: dict[str, Any], action: str, actor: str,
                      **fields: Any) -> None:
        case_id = order["case_id"]
        body = {"update_id": f"{order['order_id']}:{action}", "actor": actor, "action": action,
                "at": now_iso(), "case_id": case_id, "note": NOTES.get(action, ""), **fields}
        await self.sender.send(self.names.unit_updates, case_id, body)

    async def _assign(self, order: dict[str, Any]) -> None:
        street = self.rng.choices(self._streets, cum_weights=self._cum_weights)[0]
        district = self.topology.district_of(street) or street
        await self._update(order, "assign", self.topology.city, assign_to=street,
                           note=f"经研判，转{self.topology.name(district)}"
                                f"{self.topology.name(street)}办理。")
        self.stats.assigns += 1

    async def _return(self, order: dict[str, Any]) -> None:
        await self._update(order, "return", order["target"], reason=NOTES["return"])
        self.stats.returns += 1
        self.disputes.returned(order["case_id"], order["target"])

    async def _assign_to(self, order: dict[str, Any], street: str, ruling: bool) -> None:
        """The district passes a returned case on, or an arbiter rules a dispute."""
        name = self.topology.name(street) if street in self.topology else street
        note = f"争议裁定：由{name}负责办理。" if ruling else f"退单审核：转{name}办理。"
        await self._update(order, "assign", order["target"], assign_to=street, note=note)
        if ruling:
            self.stats.rulings += 1
        else:
            self.stats.district_assigns += 1

    async def _reassign(self, order: dict[str, Any]) -> None:
        district = order["target"]
        street = self.rng.choice(self.topology.streets_of(district))
        await self._update(order, "assign", district, assign_to=street,
                           note=f"退单审核：转{self.topology.name(street)}办理。")
        self.stats.district_assigns += 1

    async def _forge(self, order: dict[str, Any]) -> None:
        own = self.topology.district_of(order["target"]) if order["target"] in \
            self.topology else None
        street = self.rng.choice(self._streets)
        while self.topology.district_of(street) == own:
            street = self.rng.choice(self._streets)
        body = {"update_id": f"{order['order_id']}:forged", "actor": street, "action": "ack",
                "at": now_iso(), "case_id": order["case_id"], "note": "越权签收"}
        await self.sender.send(self.names.unit_updates, order["case_id"], body)
        self.stats.forged += 1

    async def _ack(self, order: dict[str, Any], late: bool) -> None:
        await self._update(order, "ack", order["target"])
        self.stats.acks += 1
        self.stats.late_acks += late
        key = f"case:{order['case_id']}"
        district = self.topology.district_of(order["target"]) if order["target"] in \
            self.topology else None
        roll = self.rng.random()
        if district and roll < ASSIST_SHARE and f"{district}-CG" in self.topology:
            await self._update(order, "assist", order["target"],
                               assist_units=[f"{district}-CG"])
            self.stats.assists += 1
        elif roll > 1 - SUSPEND_SHARE:
            pause = self.rng.uniform(*SUSPEND_FOR)
            until = (datetime.now(CHONGQING) + timedelta(seconds=self._real(pause) + 3600))
            await self._update(order, "suspend", order["target"], reason=NOTES["suspend"],
                               until=until.isoformat(timespec="seconds"))
            self.stats.suspensions += 1
            self.scheduler.schedule(key, self._real(pause), lambda: self._resume(order))
            return
        self._plan_resolution(order)

    async def _resume(self, order: dict[str, Any]) -> None:
        await self._update(order, "resume", order["target"])
        self._plan_resolution(order)

    def _plan_resolution(self, order: dict[str, Any]) -> None:
        resolve_in = self.rng.triangular(RESOLVE[0], RESOLVE[2], RESOLVE[1])
        key = f"case:{order['case_id']}"
        share = self.rng.uniform(0.3, 0.7)
        self.scheduler.schedule(key, self._real(resolve_in * share),
                                lambda: self._progress(order, resolve_in * (1 - share)))

    async def _progress(self, order: dict[str, Any], remaining: float) -> None:
        await self._update(order, "progress", order["target"])
        self.stats.progresses += 1
        self.scheduler.schedule(f"case:{order['case_id']}", self._real(remaining),
                                lambda: self._resolve(order))

    async def _resolve(self, order: dict[str, Any]) -> None:
        await self._update(order, "resolve", order["target"])
        self.stats.resolves += 1
        if order.get("source") == "sensed":
            parent = self.topology.parent(order["target"]) if order["target"] in \
                self.topology else None
            if parent is not None:
                self.scheduler.schedule(f"case:{order['case_id']}",
                                        self._real(self.rng.uniform(*VERIFY)),
                                        lambda: self._verify(order, parent))

    async def _verify(self, order: dict[str, Any], parent: str) -> None:
        await self._update(order, "verify", parent)
        self.stats.verifies += 1

