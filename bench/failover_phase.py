"""bench/failover.py's phase: a fresh broker and group, N open cases, a kill of each worker
in turn with what followed it (from the clock and the survivors' logs), the final checks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.failover_load import Orders, Trickle, build
from bench.harness import Failed, fresh_broker, loadavg, progress
from bench.workers import Group, Member
from engine.runtime.settings import Settings

DEFAULT_SESSION = Settings().session_timeout
DEFAULT_REBALANCE = Settings().rebalance_timeout


def _rebalances(events: list[dict[str, Any]]) -> int:
    return sum(1 for e in events if str(e.get("event", "")).startswith("generation id"))


ROW = re.compile(r"^\|\s*\S+\s*\|\s*(\d+)\s*\|\s*(-?\d+)\s*\|$")


def _logtable(text: str) -> dict[int, int]:
    """partition -> offset from one of faust's recovery log tables (one changelog topic)."""
    out = {}
    for line in text.splitlines():
        m = ROW.match(line.strip())
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


def behind(events: list[dict[str, Any]]) -> int:
    """Changelog records a worker had to read before its active partitions were ready:
    per partition, the largest (last offset - offset its local store had applied) over the
    recoveries in ``events`` (faust logs both tables before the engine's bulk load)."""
    worst: dict[int, int] = {}
    high: dict[int, int] = {}
    for e in events:
        text = str(e.get("event", ""))
        if "Highwater for active changelog partitions" in text:
            high = _logtable(text)
        elif "active offsets at start of reading" in text:
            for p, start in _logtable(text).items():
                if p in high:
                    worst[p] = max(worst.get(p, 0), high[p] - start)
    return sum(worst.values())


async def one_kill(group: Group, victim: Member, trickle: Trickle, orders: Orders,
                   timeout: float) -> dict[str, Any]:
    """SIGKILL ``victim``; (a) first new case on its partitions, (b) survivors whole, then
    restart it and (c) its time to ready, and all three whole again."""
    body = await victim.city()
    held = sorted(body.get("partitions") or []) if body else []
    if not held:
        raise Failed(f"{victim.name} holds no partition: nothing to fail over")
    survivors = [m for m in group.members if m is not victim]
    out: dict[str, Any] = {"victim": victim.name, "held": held, "load": loadavg()}
    wall = time.time()
    t_kill = time.perf_counter()
    victim.kill()
    first: dict[int, float] = {}  # partition -> seconds from the kill to its first new order
    t_whole: float | None = None
    while time.perf_counter() - t_kill < timeout:
        for cid, at in list(orders.seen.items()):
            t_sent, p = trickle.sent[cid]
            if t_sent >= t_kill and p in held and p not in first:
                first[p] = at - t_kill
        if t_whole is None and await group.whole(survivors):
            t_whole = time.perf_counter() - t_kill
        if t_whole is not None and len(first) == len(held):
            break
        await asyncio.sleep(0.2)
    out["first_s"] = round(min(first.values()), 2) if first else None
    out["all_held_s"] = round(max(first.values()), 2) if len(first) == len(held) else None
    out["whole_s"] = round(t_whole, 2) if t_whole is not None else None
    events = [e for m in survivors for e in m.log_events(wall)]
    out["rebalances"] = _rebalances(events)
    bulk = [e for e in events if e.get("event") == "bulk_restore"]
    out["bulk_records"] = sum(int(e.get("records") or 0) for e in bulk)
    out["bulk_seconds"] = round(sum(float(e.get("seconds") or 0) for e in bulk), 1)
    out["behind"] = sum(behind(m.log_events(wall)) for m in survivors)
    readies = [e["at"] - wall for e in events if e.get("event") == "ready"]
    out["survivor_ready_s"] = round(max(readies), 2) if readies else None
    # the victim again, on its data dir
    t_launch = time.perf_counter()
    victim.launch()
    out["restart_ready_s"] = round(await victim.ready(120.0), 2)
    t = time.perf_counter()
    while time.perf_counter() - t < timeout and not await group.whole(group.members):
        await asyncio.sleep(0.2)
    out["all_whole_after_restart_s"] = round(time.perf_counter() - t_launch, 2)
    restarted = victim.log_events(wall)
    rb = [e for e in restarted if e.get("event") == "bulk_restore"]
    out["restart_bulk_records"] = sum(int(e.get("records") or 0) for e in rb)
    out["restart_behind"] = behind(restarted)
    progress(f"  kill {victim.name} (held {held}, load {out['load']}): first new case "
             f"{out['first_s']} s, all held {out['all_held_s']} s, survivors whole "
             f"{out['whole_s']} s; survivors {out['behind']:,} changelog records behind "
             f"({out['bulk_records']:,} read in bulk); "
             f"restart to /readyz {out['restart_ready_s']} s")
    return out


# ---------------------------------------------------------------- a phase

async def phase(args: argparse.Namespace, workdir: Path, n: int, standby: int,
                group_timing: tuple[float, float] | None, label: str) -> dict[str, Any]:
    """A fresh broker and group: build N, quiet, ``--kills`` kills in turn, checks.
    ``group_timing``: (session, rebalance) timeouts in seconds instead of the engine's."""
    tag = f"fo{os.getpid() % 10000}{label}"
    env = {"ZHIDA_STANDBY_REPLICAS": str(standby),  # refused by default: measured only
           "ZHIDA_STANDBY_REPLICAS_UNSAFE": "1" if standby else "0"}
    session, rebalance = group_timing or (DEFAULT_SESSION, DEFAULT_REBALANCE)
    if group_timing is not None:
        env["ZHIDA_SESSION_TIMEOUT"] = str(session)
        env["ZHIDA_REBALANCE_TIMEOUT"] = str(rebalance)
    out: dict[str, Any] = {"n": n, "standby": standby, "session": session,
                           "rebalance": rebalance, "ok": False, "kills": [],
                           "load_start": loadavg()}
    progress(f"phase {label}: N={n:,}, standby replicas {standby}, session {session:g} s, "
             f"rebalance {rebalance:g} s, load {out['load_start']}")
    with fresh_broker(workdir, label) as broker:
        group = Group(broker.bootstrap, workdir, tag, 3, args.partitions, env)
        try:
            await measure(args, group, n, out)
        except Failed as e:
            out["error"] = str(e)[:2000]
            progress(f"  FAILED: {e}")
        finally:
            group.stop()
    out["load_end"] = loadavg()
    return out


async def measure(args: argparse.Namespace, group: Group, n: int, out: dict[str, Any]) -> None:
    """Into ``out``: the group started, N built, quiet, ``--kills`` kills, the checks."""
    producer = AIOKafkaProducer(bootstrap_servers=group.bootstrap, linger_ms=5,
                                max_batch_size=256 * 1024)
    trickle_producer = AIOKafkaProducer(bootstrap_servers=group.bootstrap, linger_ms=0)
    trickle = Trickle(group, trickle_producer, args.rate)
    orders: Orders | None = None
    try:
        await producer.start()
        await trickle_producer.start()
        out["start_s"] = [round(x, 2) for x in await group.start()]
        wall = time.time()
        out["build"] = await build(group, producer, n, args.window) if n else None
        if out["build"]:
            progress(f"  built {n:,} open cases at {out['build']['rate']:,.0f}/s")
        out["quiet_after_build_s"] = round(await group.quiet(args.quiet_timeout), 1)
        # rebalances while building under load: none is caused by a membership change
        # (every start had finished), so each is a member that missed its session
        out["build_rebalances"] = sum(_rebalances(
            [e for e in m.log_events(wall) if e["at"] > wall + 1.0]) for m in group.members)
        orders = Orders(group, trickle)
        await orders.start()
        trickle.start()
        for k in range(args.kills):
            await group.quiet(args.quiet_timeout)
            victim = group.members[k % len(group.members)]
            out["kills"].append(await one_kill(group, victim, trickle, orders, args.timeout))
        await trickle.stop()
        out["checks"] = await final_checks(group, trickle, orders, n)
        out["ok"] = out["checks"]["ok"]
    finally:
        with contextlib.suppress(Exception):
            await trickle.stop()
        if orders is not None:
            await orders.stop()
        for p in (producer, trickle_producer):
            with contextlib.suppress(Exception):
                await p.stop()


async def final_checks(group: Group, trickle: Trickle, orders: Orders, n: int,
                       timeout: float = 60.0) -> dict[str, Any]:
    """Every trickle complaint dispatched; every worker's city ``received`` = N + trickle."""
    t = time.perf_counter()
    while time.perf_counter() - t < timeout and len(orders.seen) < len(trickle.sent):
        await asyncio.sleep(0.5)
    want = n + len(trickle.sent)
    received: list[Any] = []
    while time.perf_counter() - t < timeout:
        answers = await asyncio.gather(*(m.city() for m in group.members))
        received = [_received(a) for a in answers]
        if all(r == want for r in received):
            break
        await asyncio.sleep(1.0)
    out = {"trickle_sent": len(trickle.sent), "trickle_dispatched": len(orders.seen),
           "expected_received": want, "received": received}
    out["ok"] = out["trickle_dispatched"] == out["trickle_sent"] and all(
        r == want for r in received)
    progress(f"  checks: {out}")
    return out


def _received(body: dict[str, Any] | None) -> int | None:
    """The city's ``received`` figure from a stats answer (None if absent)."""
    if not body:
        return None
    for holder in (body, body.get("figures") or {}, body.get("counters") or {}):
        v = holder.get("received") if isinstance(holder, dict) else None
        if isinstance(v, (int, float)):
            return int(v)
        if isinstance(v, dict) and isinstance(v.get("count"), (int, float)):
            return int(v["count"])
    return None
