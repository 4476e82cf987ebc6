"""The ticker: fires the SLA timers that fell due as commands to the case's own writer.

(Directive tasks' timers share the index and the ticker: their firing is a
``DirectiveExpire`` keyed by the directive, naming the target.)

Deadlines are data: each case's one armed timer lives in the durable index (``t:`` keys in
the case writer's store, engine/runtime/store.py), written with the state. Every ``TICK_S`` the
ticker reads, for each partition this worker owns, the keys due up to now, in due order, and
sends an ``Expire`` command for each to ``zhida.case.commands`` keyed by the case. The writer
decides it like any other command (engine/core/sla.py): a stale or repeated firing is ignored,
so "once" comes from the state, not from the ticker, and a crash can only fire again.

Bounded: at most ``MAX_IN_FLIGHT`` firings wait for the writer at a time, so a burst of
deadlines due together (Zeebe once blocked a partition with 20k) is fed to the writer as it
takes them, interleaved with intake, never all at once. Deadlines that passed while no worker
ran are sent as soon as the partitions are recovered, before their streams resume
(``Ticker.recovered``), so they reach the writer ahead of the intake the downtime left.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from engine.core.model import Command, DirectiveExpire, Expire
from engine.runtime import logs
from engine.runtime.app import Engine
from schemas.codec import encode

log = logs.get("zhida.timers")

TICK_S = 0.1
MAX_IN_FLIGHT = 1000
RESEND_AFTER_S = 30.0


class Ticker:
    def __init__(self, engine: Engine, tick: float = TICK_S, max_in_flight: int = MAX_IN_FLIGHT,
                 resend_after: float = RESEND_AFTER_S) -> None:
        self.engine = engine
        self.tick = tick
        self.max_in_flight = max_in_flight
        self.resend_after = resend_after
        self.in_flight: dict[bytes, float] = {}  # index key → when it was sent
        self.partitions: list[int] = []

    def on_assignment(self, partitions: list[int]) -> None:
        self.partitions = list(partitions)
        self.in_flight.clear()
        self.engine.store.on_assignment()

    async def recovered(self) -> int:
        """Fire what fell due while these partitions had no worker, before their streams
        resume: the ``Expire`` commands then reach ``case.commands`` ahead of the intake
        backlog the downtime left, so the oldest deadlines are not decided last."""
        started = time.perf_counter()
        try:
            sent = await self.fire_due()
        except asyncio.CancelledError:
            raise
        except Exception:  # the ticker's next tick tries again
            log.exception("ticker_failed")
            return 0
        log.info("timers_recovered", partitions=self.partitions, sent=sent,
                 seconds=round(time.perf_counter() - started, 3))
        return sent

    def cleared(self, key: bytes) -> None:
        """The writer removed an index entry: its firing is no longer waiting."""
        self.in_flight.pop(key, None)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)  # the ticker's period, not a synchronisation
            if not self.engine.ready:
                continue
            try:
                await self.fire_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let a bad entry stop every deadline
                log.exception("ticker_failed")

    async def fire_due(self) -> int:
        engine = self.engine
        now = engine.clock()
        mono = time.monotonic()
        # a firing not applied after resend_after is sent again (its command may be lost)
        for key in [k for k, t in self.in_flight.items() if mono - t >= self.resend_after]:
            del self.in_flight[key]
        oldest = None
        sent = 0
        for p in self.partitions:
            room = self.max_in_flight - len(self.in_flight)
            due, first = engine.store.due_timers(p, now, limit=max(room, 0),
                                                 skip=self.in_flight)
            if first is not None:
                oldest = first if oldest is None else min(oldest, first)
            for key, case_id, timer in due:
                body: Expire | DirectiveExpire
                if timer.target is not None:  # a directive task's (case_id: the directive)
                    body = DirectiveExpire(target=timer.target, timer=timer.kind,
                                           stage=timer.stage, instant=timer.at)
                else:
                    body = Expire(timer=timer.kind, stage=timer.stage, instant=timer.at)
                cmd = Command(aggregate=case_id, at=now, body=body)
                await engine.outputs.send_command(case_id, encode(cmd))
                self.in_flight[key] = mono
                sent += 1
        engine.metrics.timer_oldest_due.set(
            max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0)
        engine.metrics.calendar_fallback.set(len(engine.world.fallback_years(now.date())))
        return sent


def register(engine: Engine) -> Ticker:
    ticker = Ticker(engine)
    engine.on_assignment.append(ticker.on_assignment)
    engine.ticker = ticker

    @engine.app.task
    async def sla_ticker(*_: Any) -> None:
        await ticker.run()

    return ticker
