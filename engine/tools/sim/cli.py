"""``zhida simulate``: synthetic input at a rate, simulated centres and citizens, live progress.

``run_simulation`` is the core, also used by ``zhida demo`` (engine/tools/demo.py):

1. positions the centres' consumer (every ``zhida.dispatch.*`` topic), the citizens'
   consumer (``zhida.citizen.notifications``) and the insights watch (``zhida.insights``,
   ``zhida.case.events``) at the end of their topics;
2. produces ``rate`` regular inputs per second for ``duration`` seconds (complaints ~80 %,
   keyed by ``complaint_id``; alarms ~20 %, keyed by ``sensor_id``; storms and the plan's
   recurring places on top, engine/tools/sim/recurring.py), noting the time each was sent;
3. lets centres and citizens work for up to ``drain`` more seconds (less once every input has
   been dispatched and nothing is left to do);
4. returns the counters, with the intake→dispatch latency of every input whose first order
   came back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from engine.data.catalogue import Catalogue
from engine.data.topology import CITY_TOPIC_KEY, Topology
from engine.runtime.settings import Settings
from engine.tools.sim import CHONGQING, Scheduler, Sender, SimStats, client_kwargs
from engine.tools.sim.centres import Centres
from engine.tools.sim.citizens import Citizens
from engine.tools.sim.directives import Desk
from engine.tools.sim.generator import Generator, Input
from engine.tools.sim.watch import InsightWatch
from topics import TopicNames

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
SETTLED_FOR = 2.0  # seconds with nothing pending before the drain may end early

Progress = Callable[[SimStats], None]


async def run_simulation(bootstrap: str, prefix: str = "zhida.", rate: float = 20.0,
                         duration: float = 30.0, seed: int = 12345, drain: float = 20.0,
                         speed: float = 60.0, progress: Progress | None = None, *,
                         topology: Topology | None = None,
                         catalogue: Catalogue | None = None,
                         directives: bool = True, keys_dir: Path | None = None) -> SimStats:
    topo = topology or Topology.load()
    cat = catalogue or Catalogue.load()
    names = TopicNames(prefix)
    stats = SimStats()
    await _ensure_topics(bootstrap, prefix, topo)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **client_kwargs())
    await producer.start()
    scheduler = Scheduler(stats)
    sender = Sender(producer, stats, keys_dir,
                    frozenset({names.unit_updates, names.directives}), seed)
    generator = Generator(seed, topo, cat)  # its plan names the disputed streets
    centres = Centres(bootstrap, names, topo, sender, scheduler, stats, speed=speed, seed=seed,
                      disputes=generator.plan.disputes)
    citizens = Citizens(bootstrap, names, sender, scheduler, stats, speed=speed, seed=seed)
    desk = Desk(bootstrap, names, topo, sender, scheduler, stats, speed=speed, seed=seed)
    watch = InsightWatch(bootstrap, names, stats)
    tasks: list[asyncio.Task[None]] = []
    try:
        await centres.start()
        await citizens.start()
        await desk.start()
        await watch.start()
        stats.started = time.monotonic()
        tasks = [asyncio.create_task(scheduler.run(), name="sim-scheduler"),
                 asyncio.create_task(centres.run(), name="sim-centres"),
                 asyncio.create_task(citizens.run(), name="sim-citizens"),
                 asyncio.create_task(desk.run(), name="sim-directives"),
                 asyncio.create_task(watch.run(), name="sim-insights")]
        if directives:
            desk.plan(duration)
        if progress is not None:
            tasks.append(asyncio.create_task(_report(progress, stats), name="sim-progress"))
        await _produce(generator, sender, names, stats, rate, duration, tasks)
        await producer.flush()
        await _drain(scheduler, stats, drain, tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await centres.stop()
        await citizens.stop()
        await desk.stop()
        await watch.stop()
        with contextlib.suppress(Exception):
            await producer.stop()
    if progress is not None:
        progress(stats)
    return stats


async def _ensure_topics(bootstrap: str, prefix: str, topo: Topology) -> None:
    """Create the contract's topics if the worker has not (yet): they are idempotent."""
    wanted = TopicNames(prefix).all(topo.districts)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    if any(t not in existing for t in wanted):
        from engine.runtime.kafka.admin import ensure_topics
        from engine.runtime.settings import Settings

        await ensure_topics(Settings.from_env(bootstrap=bootstrap, prefix=prefix), topo.districts)


def _check(tasks: list[asyncio.Task[None]]) -> None:
    """A background part that died takes the simulation down with its error."""
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            raise RuntimeError(f"{t.get_name()} failed") from t.exception()


async def _produce(generator: Generator, sender: Sender, names: TopicNames, stats: SimStats,
                   rate: float, duration: float, tasks: list[asyncio.Task[None]]) -> None:
    total = round(rate * duration) if rate > 0 and duration > 0 else 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    while i < total:
        _check(tasks)
        wait = start + i / rate - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)  # pacing the input rate
        while i < total and start + i / rate <= loop.time():
            items = generator.tick(datetime.now(CHONGQING))
            for item in items:
                await _send(item, sender, names, stats)
            storm = [x for x in items if x.storm]
            if storm:
                district = generator.topology.district_of(storm[0].unit or "") or "?"
                stats.storms.append((district, len(storm)))
            i += 1


async def _send(item: Input, sender: Sender, names: TopicNames, stats: SimStats) -> None:
    stats.record_sent(item.case_id)
    await sender.send(getattr(names, item.topic), item.key, item.value)
    stats.sent += 1
    if item.source == "complaint":
        stats.complaints += 1
    else:
        stats.alarms += 1


async def _drain(scheduler: Scheduler, stats: SimStats, drain: float,
                 tasks: list[asyncio.Task[None]]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(drain, 0.0)
    quiet_since: float | None = None
    while loop.time() < deadline:
        _check(tasks)
        now = loop.time()
        if len(scheduler) == 0 and stats.undispatched == 0:
            quiet_since = quiet_since if quiet_since is not None else now
            if now - quiet_since >= SETTLED_FOR:
                return
        else:
            quiet_since = None
        await asyncio.sleep(min(0.2, max(deadline - now, 0.0)))


async def _report(progress: Progress, stats: SimStats) -> None:
    while True:
        await asyncio.sleep(1.0)
        progress(stats)


class ProgressLine:
    """One progress line, rewritten in place (``\\r``) on a terminal, else a line a second."""

    def __init__(self, stream: TextIO | None = None, inline: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.inline = self.stream.isatty() if inline is None else inline
        self._width = 0

    def __call__(self, stats: SimStats) -> None:
        text = stats.line()
        if self.inline:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = max(self._width, len(text))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.inline and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def summary_lines(stats: SimStats, topology: Topology, rate: float, duration: float
                  ) -> list[str]:
    storms = ", ".join(f"{n} alarms in {topology.name(d)}" for d, n in stats.storms)
    ratings = stats.ratings
    busiest = ", ".join(f"{topology.name(d)} {n}" for d, n in stats.busiest(5))
    return [
        f"sent         {stats.sent} inputs in {duration:g} s at {rate:g}/s: "
        f"{stats.complaints} complaints, {stats.alarms} alarms"
        + (f" (storms: {storms})" if storms else ""),
        f"orders       {stats.orders} case orders; {stats.dispatched} of {stats.sent} inputs "
        f"dispatched; {stats.orders_by_topic.get(CITY_TOPIC_KEY, 0)} to the city topic, "
        f"{stats.assigns} assigned from triage",
        f"centres      {stats.acks} acks ({stats.late_acks} late), {stats.progresses} progress, "
        f"{stats.resolves} resolves, {stats.verifies} verifies",
        f"citizens     {stats.rated} ratings: {ratings['satisfied']} satisfied, "
        f"{ratings['basically_satisfied']} basically satisfied, {ratings['unsatisfied']} "
        f"unsatisfied; {stats.unanswered} never answer",
        f"insights     {stats.insights['hotspot']} hotspots, {stats.insights['dispute']} "
        f"disputes ({stats.disputed_returns} planned 退单), {stats.insights['ruling']} rulings "
        f"({stats.rulings} sent), {stats.precedent_cases} cases routed by precedent",
        f"busiest      {busiest or 'n/a'}",
        f"latency      intake→dispatch p50 {fmt_ms(stats.percentile(50))}, "
        f"p99 {fmt_ms(stats.percentile(99))} (n={len(stats.latencies_ms)})",
    ] + ([f"errors       {stats.errors}"] if stats.errors else []) + ([
        f"note         {stats.undispatched} inputs got no order: was the worker running? An "
        "engine that has seen this --seed before drops its ids as duplicates; try another seed"
    ] if stats.undispatched else [])


def main(args: argparse.Namespace) -> int:
    settings = Settings.from_env()  # ZHIDA_BOOTSTRAP, ZHIDA_PREFIX
    bootstrap = getattr(args, "bootstrap", None) or settings.bootstrap
    prefix = settings.prefix
    topo = Topology.load()
    line = ProgressLine()
    print(f"simulating against {bootstrap} (prefix {prefix!r}): {args.rate:g}/s for "
          f"{args.duration:g} s, drain {args.drain:g} s, speed x{args.speed:g}, seed {args.seed}",
          file=sys.stderr, flush=True)
    try:
        stats = asyncio.run(run_simulation(
            bootstrap, prefix, args.rate, args.duration, args.seed, args.drain, args.speed,
            line, topology=topo))
    except KeyboardInterrupt:
        line.finish()
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        line.finish()
        print(f"simulation failed: {e!r} (is a broker at {bootstrap}?)", file=sys.stderr)
        return 1
    line.finish()
    for text in summary_lines(stats, topo, args.rate, args.duration):
        print(text)
    return 0
