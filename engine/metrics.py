"""Prometheus metrics. Labels are bounded sets (topic, reason, type, state): never a case id."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.case_events = Counter("zhida_case_events_total", "Case events emitted", ["type"],
                                   registry=r)
        self.orders = Counter("zhida_dispatch_orders_total", "Orders sent to dispatch topics",
                              ["kind"], registry=r)
        self.notifications = Counter("zhida_citizen_notifications_total",
                                     "Notifications for complainants", ["kind"], registry=r)
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
        self.ready = Gauge("zhida_ready", "1 once the worker consumes its partitions",
                           registry=r)

    def case_moved(self, before: str | None, after: str) -> None:
        if before == after:
            return
        if before is not None:
            self.cases.labels(before).dec()
        self.cases.labels(after).inc()
