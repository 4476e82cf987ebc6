"""Prometheus metrics. Labels are bounded sets (topic, reason, type, state): never a case id.

Every label value the engine can use is set to 0 at start, so a rate or an alert over a
series works before the first event of its kind (docs/operations.md lists the metrics; a unit
test holds the list and the registry together).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from engine.core.model import EventType, StateName
from schemas.outbound import (
    CitizenNotification,
    DeadLetterReason,
    DirectiveEventMessage,
    DispatchOrder,
    InsightMessage,
)
from topics import SPECS

if TYPE_CHECKING:
    from datetime import datetime

    from engine.core.decide import Accepted
    from engine.core.model import CaseState, Command
    from engine.core.react import Output

# the bounded label values, all exported as 0 from the start
INPUT_TOPICS: tuple[str, ...] = tuple(s.key for s in SPECS if s.direction == "in")
CONSUMED_TOPICS: tuple[str, ...] = tuple(s.key for s in SPECS if s.direction != "out")
# the consumers with a contiguity guard: one per inbound handler, and the case writer
GUARDED_CONSUMERS: tuple[str, ...] = (*(f"intake_{t}" for t in INPUT_TOPICS), "case_commands")
DUPLICATE_KINDS: tuple[str, ...] = ("open", "update", "rate", "join", "directive_issue",
                                     "directive_update")
TIMER_KINDS: tuple[str, ...] = ("warn", "due", "supervise", "resume")
DEADLETTER_REASONS: tuple[str, ...] = get_args(DeadLetterReason)
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
CASE_STATES: tuple[str, ...] = get_args(StateName)


def _literal(model: Any, field: str) -> tuple[str, ...]:
    return get_args(model.model_fields[field].annotation)


ORDER_KINDS = _literal(DispatchOrder, "kind")
NOTICE_KINDS = _literal(CitizenNotification, "kind")
INSIGHT_KINDS = tuple(_literal(m, "kind")[0] for m in get_args(
    InsightMessage.model_fields["root"].annotation))
DIRECTIVE_EVENT_TYPES = _literal(DirectiveEventMessage, "type")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.inputs = Counter("zhida_inputs_total", "Messages taken from inbound topics",
                              ["topic"], registry=r)
        self.duplicates = Counter("zhida_duplicates_total",
                                  "Inputs dropped because their idempotency key was seen",
                                  ["kind"], registry=r)
        self.deadletters = Counter("zhida_deadletters_total",
                                   "Inputs refused to the dead letter topic", ["reason"],
                                   registry=r)
        self.deadletter_failures = Counter(
            "zhida_deadletter_failures_total",
            "Dead letters the brokers did not take after retries: the consumer stops at the "
            "input (kept uncommitted) and /readyz says so (engine/runtime/deadletter.py)",
            ["consumer"], registry=r)
        self.case_events = Counter("zhida_case_events_total", "Case events emitted", ["type"],
                                   registry=r)
        self.directive_events = Counter(
            "zhida_directive_events_total", "Directive and task events emitted", ["type"],
            registry=r)
        self.merges = Counter(
            "zhida_merges_total",
            "Reports through a merge group: joined an open case (一事多诉, repeated alarms), "
            "opened their own, or bounced off a case that had closed", ["outcome"],
            registry=r)
        self.placements = Counter(
            "zhida_placements_total",
            "New cases by how their location was given (unit, point, address) and where it "
            "put them: placed, boundary (near a district line: the common ancestor) or "
            "triage", ["method", "outcome"], registry=r)
        self.storms = Counter(
            "zhida_alarm_storms_total",
            "Alarm storms: a district's alarms above the policy's storm_alarms_per_minute "
            "(counted once per storm)", registry=r)
        self.orders = Counter("zhida_dispatch_orders_total", "Orders sent to dispatch topics",
                              ["kind"], registry=r)
        self.notifications = Counter("zhida_citizen_notifications_total",
                                     "Notifications for complainants", ["kind"], registry=r)
        self.insights = Counter("zhida_insights_total",
                                "Insights published: hotspots, disputes, rulings, revocations",
                                ["kind"], registry=r)
        self.ignored = Counter("zhida_commands_ignored_total",
                               "Internal commands with nothing left to do (stale timers)",
                               registry=r)
        self.internal_errors = Counter(
            "zhida_internal_errors_total",
            "Commands the core failed on (a bug); the input went to the dead letters",
            registry=r)
        self.cases = Gauge("zhida_cases", "Cases by state held by this worker", ["state"],
                           registry=r)
        self.decide_seconds = Histogram(
            "zhida_command_seconds", "Time to decide and apply one case command",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
            registry=r)
        self.intake_to_dispatch = Histogram(
            "zhida_intake_to_dispatch_seconds",
            "From an input taken at intake to its first dispatch order produced",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r)
        self.ready = Gauge(
            "zhida_ready",
            "1 while /readyz answers 200: recovered, brokers reachable, consumer not stalled",
            registry=r)
        # engine/runtime/health.py
        self.brokers_reachable = Gauge(
            "zhida_brokers_reachable", "1 while the brokers answer the worker's health probe",
            registry=r)
        self.consumer_lag = Gauge(
            "zhida_consumer_lag_messages",
            "Records on this worker's assigned partitions not yet processed, by topic",
            ["topic"], registry=r)
        # the case writer's crash recovery (engine/runtime/writer.py, engine/runtime/kafka/guard.py)
        self.replays = Counter(
            "zhida_command_replays_total",
            "Commands redelivered after a crash and found already applied (nothing resent)",
            registry=r)
        self.produce_retries = Counter(
            "zhida_produce_retries_total",
            "Batches of outputs or state records resent because the brokers did not take them",
            registry=r)
        self.offset_holes = Counter(
            "zhida_offset_holes_total",
            "Records the consumer passed over, caught and re-read by seeking back",
            ["consumer"], registry=r)
        # SLA timers (engine/core/sla.py, engine/runtime/timers.py)
        self.timers_armed = Gauge(
            "zhida_timers_armed",
            "Cases and directive tasks on this worker's partitions with an armed SLA timer",
            registry=r)
        self.timer_firings = Counter(
            "zhida_timer_firings_total",
            "SLA timers applied, by kind (warn: 催办, due/supervise: 督办, resume)",
            ["kind"], registry=r)
        self.timer_lateness = Histogram(
            "zhida_timer_lateness_seconds",
            "From a timer's instant to the writer applying it",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r)
        self.timer_oldest_due = Gauge(
            "zhida_timer_oldest_due_seconds",
            "Age of the oldest timer due but not yet applied (0: none waiting)", registry=r)
        self.calendar_fallback = Gauge(
            "zhida_calendar_fallback_years",
            "Years deadlines run into soon (this one; the next within 60 days) with no holiday "
            "data: the working-day clock counts them as weekends only",
            registry=r)

        self._start_at_zero()
        # the standard process_* and python_* series (the prometheus_client default registry
        # has them; this registry is the engine's own)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=r)

    def _start_at_zero(self) -> None:
        for method in ("unit", "point", "address"):
            for outcome in ("placed", "boundary", "triage"):
                self.placements.labels(method, outcome)
        for counter, values in ((self.inputs, INPUT_TOPICS),
                                (self.duplicates, DUPLICATE_KINDS),
                                (self.deadletters, DEADLETTER_REASONS),
                                (self.case_events, EVENT_TYPES),
                                (self.directive_events, DIRECTIVE_EVENT_TYPES),
                                (self.merges, ("joined", "opened", "bounced")),
                                (self.orders, ORDER_KINDS),
                                (self.notifications, NOTICE_KINDS),
                                (self.insights, INSIGHT_KINDS),
                                (self.cases, CASE_STATES),
                                (self.consumer_lag, CONSUMED_TOPICS),
                                (self.offset_holes, GUARDED_CONSUMERS),
                                (self.deadletter_failures, GUARDED_CONSUMERS),
                                (self.timer_firings, TIMER_KINDS)):
            for value in values:
                counter.labels(value)

    def count_outputs(self, outputs: Iterable[Output]) -> None:
        """Count produced dispatch orders, notifications and insights by ``kind``.

        Call once per output actually produced (after the send). Case events are counted
        from the decision's events (``zhida_case_events_total``), not here.
        """
        for out in outputs:
            if out.channel == "dispatch":
                self.orders.labels(out.value.kind).inc()  # type: ignore[attr-defined]
            elif out.channel == "notifications":
                self.notifications.labels(out.value.kind).inc()  # type: ignore[attr-defined]
            elif out.channel == "insights":
                self.insights.labels(out.value.kind).inc()  # type: ignore[attr-defined]

    def case_moved(self, before: str | None, after: str) -> None:
        if before == after:
            return
        if before is not None:
            self.cases.labels(before).dec()
        self.cases.labels(after).inc()

    def set_case_gauges(self, totals: dict[str, int]) -> None:
        for name in CASE_STATES:
            self.cases.labels(name).set(totals.get(name, 0))

    def count_case(self, cmd: Command, before: CaseState | None, decision: Accepted,
                   now: datetime) -> None:
        """Count a decision's events, placements and intake→dispatch time of a new case."""
        for e in decision.events:
            self.case_events.labels(e.type).inc()
            if e.type == "created" and e.opened is not None:
                loc = e.opened.location
                method = "unit" if "unit" in loc else "point" if "lat" in loc else "address"
                outcome = ("boundary" if e.boundary else "triage"
                           if any(x.type == "triaged" for x in decision.events) else "placed")
                self.placements.labels(method, outcome).inc()
            if e.type in ("dispatched", "triaged") and before is None:
                # from the input's own timestamp (producer time) when it has one
                since = cmd.origin.timestamp if cmd.origin and cmd.origin.timestamp else None
                lag = now.timestamp() - since if since else (now - cmd.at).total_seconds()
                self.intake_to_dispatch.observe(max(lag, 0.0))
