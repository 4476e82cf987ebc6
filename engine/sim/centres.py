"""Simulated governance centres: they work the orders on ``zhida.dispatch.*``.

For each ``kind=case`` handler order the target unit, after a simulated delay, acknowledges
(签收), reports progress and resolves (办结) on ``zhida.unit.updates``; for a sensed case the
level above the holder then verifies (核查). Orders for the city centre's triage queue (a
location the engine could not place) are assigned by the city centre to a street. Orders with
``role=assist`` and reminders/supervision orders are counted, not acted on.

Delays are in simulated time, divided by ``speed`` for the real wait. Acknowledgements come
1–20 simulated minutes after the order, inside the stage's window from the default SLA policy;
about 10 % come late, after the window. Resolution follows 10 minutes to 2 hours later.

One ``Scheduler`` (engine/sim/__init__.py) fires all delayed actions: one pending action per
case, replaced when a new order for the case arrives (reassignment, reopening).
"""

from __future__ import annotations

import contextlib
import itertools
import random
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from engine.policy import Policy
from engine.sim import Scheduler, Sender, SimStats, now_iso, open_consumer
from engine.sim.generator import street_weight
from engine.topology import CITY_TOPIC_KEY, Topology
from topics import TopicNames

MINUTE = 60.0
ACK_RANGE = (1 * MINUTE, 20 * MINUTE)
LATE_SHARE = 0.10
LATE_BY = (1 * MINUTE, 30 * MINUTE)
RESOLVE = (10 * MINUTE, 30 * MINUTE, 120 * MINUTE)  # low, mode, high (triangular)
TRIAGE = (2 * MINUTE, 15 * MINUTE)
VERIFY = (5 * MINUTE, 45 * MINUTE)

NOTES = {
    "ack": "已签收，正在安排处置。",
    "progress": "已派工作人员到场处置。",
    "resolve": "问题已处置完毕。",
    "verify": "经核查，已处置到位。",
}


class Centres:
    def __init__(self, bootstrap: str, names: TopicNames, topology: Topology, sender: Sender,
                 scheduler: Scheduler, stats: SimStats, *, speed: float = 60.0, seed: int = 0,
                 policy: Policy | None = None) -> None:
        self.bootstrap = bootstrap
        self.names = names
        self.topology = topology
        self.sender = sender
        self.scheduler = scheduler
        self.stats = stats
        self.speed = max(speed, 1e-9)
        self.rng = random.Random(f"centres-{seed}")
        self.policy = policy or Policy.load()
        self.topics = {names.dispatch(d): d for d in (*topology.districts, CITY_TOPIC_KEY)}
        self.consumer: AIOKafkaConsumer | None = None
        self._seen: set[str] = set()
        # the city centre places triaged cases where the work is: the busier streets
        self._streets = topology.streets
        self._cum_weights = list(itertools.accumulate(street_weight(topology, s)
                                                      for s in self._streets))

    async def start(self) -> None:
        self.consumer = await open_consumer(self.bootstrap, list(self.topics))

    async def stop(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            self.consumer = None

    async def run(self) -> None:
        assert self.consumer is not None, "start() first"
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for tp, messages in batch.items():
                key = self.topics.get(tp.topic, CITY_TOPIC_KEY)
                for m in messages:
                    try:
                        order = orjson.loads(m.value)
                    except orjson.JSONDecodeError:
                        self.stats.errors += 1
                        continue
                    self.on_order(order, key)

    # ---- orders ----

    def on_order(self, order: dict[str, Any], topic_key: str) -> None:
        kind = order.get("kind")
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
        target = order["target"]
        located = isinstance(order.get("location"), dict) and "unit" in order["location"]
        key = f"case:{case_id}"
        if target == self.topology.city and not located:
            self.scheduler.schedule(key, self._real(self.rng.uniform(*TRIAGE)),
                                    lambda: self._assign(order))
            return
        delay, late = self._ack_delay(order)
        self.scheduler.schedule(key, self._real(delay), lambda: self._ack(order, late))

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

    async def _ack(self, order: dict[str, Any], late: bool) -> None:
        await self._update(order, "ack", order["target"])
        self.stats.acks += 1
        self.stats.late_acks += late
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

