"""The engine: the worker's parts by name, and its life across rebalances.

``Engine`` holds the collaborators every agent needs and nothing else: the faust App and its
topics (``faust_app.py``), the case table and its store (``store.py``), what is produced
(``outputs.py``), the metrics, the directive status cache and the signing keys. Handlers (one
module per inbound stream) register their agents on it; they hold no state of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import faust

from engine.core import World
from engine.core.model import CaseState
from engine.data.topology import CITY_TOPIC_KEY
from engine.runtime import logs
from engine.runtime.clock import Clock, system_clock
from engine.runtime.directive_status import StatusCache
from engine.runtime.faust_app import advertised_host, build_app, case_table, configure_transport
from engine.runtime.metrics import Metrics
from engine.runtime.outputs import Outputs, Record
from engine.runtime.settings import Settings
from engine.runtime.signing import KeySet
from engine.runtime.store import CaseStore
from topics import SPECS, TopicNames

if TYPE_CHECKING:  # the ticker holds the engine: the engine holds it by type only
    from engine.runtime.timers import Ticker

__all__ = ["Engine", "Record", "advertised_host"]

log = logs.get("zhida.engine")


class Engine:
    def __init__(self, settings: Settings, world: World, clock: Clock = system_clock,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.world = world
        self.clock = clock
        self.metrics = metrics or Metrics()
        configure_transport(settings)
        self.app: faust.App = build_app(settings)
        self.names = TopicNames(settings.prefix)
        self.topics: dict[str, faust.TopicT] = {
            spec.key: self.app.topic(self.names.prefix + spec.suffix,
                                     partitions=settings.partitions)
            for spec in SPECS
        }
        self.dispatch: dict[str, faust.TopicT] = {
            d: self.app.topic(self.names.dispatch(d), partitions=settings.partitions)
            for d in [*world.topology.districts, CITY_TOPIC_KEY]
        }
        self.cases = case_table(self.app, settings)
        self.store = CaseStore(self.cases, settings.partitions)
        self.outputs = Outputs(self.app, self.names, self.topics, self.dispatch,
                               settings.source, clock, self.metrics)
        self.statuses = StatusCache()  # GET /directives/{id} answers (the writer patches it)
        self.keyset: KeySet | None = None  # when the worker has --keys
        # the worker's life across rebalances: called with the partitions of case.commands
        # once they are recovered
        self.ready = False
        self.on_assignment: list[Callable[[list[int]], object]] = []
        self.partitions: list[int] = []  # of case.commands, held by this worker
        self.ticker: Ticker | None = None  # once registered (engine/runtime/timers.py)
        self.app.on_rebalance_complete.connect(self._on_rebalance_complete)

    async def _on_rebalance_complete(self, *_: Any, **__: Any) -> None:
        """Tables are recovered: figures come from each partition's marks, not a scan."""
        commands = self.names.case_commands
        partitions = sorted(tp.partition for tp in self.app.consumer.assignment()
                            if tp.topic == commands)
        self.partitions = partitions
        self.statuses.forget()
        for callback in self.on_assignment:
            callback(partitions)
        if self.ticker is not None:  # faust resumes the streams after this returns
            await self.ticker.recovered()
        self.ready = True
        self.metrics.ready.set(1)
        log.info("ready", partitions=partitions)

    def load(self, case_id: str) -> CaseState | None:
        return self.store.state(case_id)
