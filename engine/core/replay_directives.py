"""Directives in ``zhida replay`` (engine/core/replay.py): recorded directive commands decided
again, and the directive figures per issuing unit.

How, as the single writer does it (engine/runtime/writer.py ``_directive``): the directive's
state and the one task a command names (``directive.target_of``) are loaded, ``directive.
decide`` runs, and a ``Changed`` replaces the directive and the tasks it rewrote (every task
on issue). With recorded firings the live ``DirectiveExpire`` commands are decided where they
are on the log; with a candidate they are dropped and each task's armed timer
(``directive.next_timer``) is fired by the replay's one simulated clock, beside the cases'.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.core import directive as dv
from engine.core import sla
from engine.core.decide import Duplicate, Ignored, Rejected
from engine.core.model import Command, DirectiveExpire, IssueDirective
from engine.core.world import World

# arm(directive id, target, the task's timer now, or None when it has none)
Arm = Callable[[str, str, sla.Timer | None], None]


@dataclass(slots=True)
class Directives:
    """The directives' share of a replay: their states, tasks, events and armed timers."""

    world: World
    recorded: bool
    keep_events: bool
    counts: Counter[str]  # the replay's outcome counters (decided, duplicates, ignored...)
    rejected: Counter[str]
    opening_world: Callable[[str], World]  # the world under an older policy version
    issued_under: Mapping[str, str]  # directive id → the digest it was issued under (exact)
    arm: Arm
    states: dict[str, dv.DirectiveState] = field(default_factory=dict, init=False)
    tasks: dict[tuple[str, str], dv.Task] = field(default_factory=dict, init=False)
    events: dict[str, list[dv.DirectiveEvent]] = field(default_factory=dict, init=False)
    # reminders (warned events) by directive id
    warned: Counter[str] = field(default_factory=Counter, init=False)

    def _decided(self, cmd: Command) -> tuple[dv.Decision, dv.Task | None]:
        did = cmd.aggregate
        d = self.states.get(did)
        target = dv.target_of(cmd)
        task = self.tasks.get((did, target)) if target is not None and d is not None else None
        world = self.world
        if d is None and isinstance(cmd.body, IssueDirective):
            digest = self.issued_under.get(did) if self.recorded else None
            if digest:
                world = self.opening_world(digest)
        return dv.decide(d, task, cmd, world), task

    def changes(self, cmd: Command) -> bool:
        """Whether the command would change its directive (after ``until``: it stops it)."""
        return isinstance(self._decided(cmd)[0], dv.Changed)

    def decide(self, cmd: Command) -> None:
        self.counts["decided"] += 1
        decision, _ = self._decided(cmd)
        if isinstance(decision, dv.Changed):
            did = cmd.aggregate
            self.states[did] = decision.directive
            for t in decision.tasks:
                self.tasks[(did, t.target)] = t
                if not self.recorded:
                    self.arm(did, t.target, dv.next_timer(t))
            if self.keep_events:
                self.events.setdefault(did, []).extend(decision.events)
            self.warned[did] += sum(e.type == "warned" for e in decision.events)
        elif isinstance(decision, Duplicate):
            self.counts["duplicates"] += 1
        elif isinstance(decision, Ignored):
            self.counts["ignored"] += 1
        else:
            assert isinstance(decision, Rejected)
            self.rejected[decision.reason] += 1

    def armed(self, did: str, target: str) -> sla.Timer | None:
        task = self.tasks.get((did, target))
        return dv.next_timer(task) if task is not None else None

    def fire(self, did: str, t: sla.Timer) -> None:
        """The ticker's firing of a task's timer (engine/runtime/timers.py), at its instant."""
        assert t.target is not None
        self.counts["fired"] += 1
        self.decide(Command.model_construct(
            aggregate=did, at=t.at, origin=None,
            body=DirectiveExpire.model_construct(target=t.target, timer=t.kind,
                                                 stage=t.stage, instant=t.at)))


def directive_figures(states: Mapping[str, dv.DirectiveState], world: World,
                      units: Iterable[str], reminders: Mapping[str, int] | None = None
                      ) -> dict[str, dict[str, Any]]:
    """Per unit code: ``directive.issuer_figures`` (GET /units/{code}/stats's "directives")
    of the directives issued by the unit or a unit below it, plus "reminders" (warned
    events, from ``reminders`` by directive id; None without it). KeyError for a code not
    in the topology."""
    topo = world.topology
    out: dict[str, dict[str, Any]] = {}
    for code in units:
        if code not in topo:
            raise KeyError(code)
        mine = [d for d in states.values()
                if d.issuer == code or (d.issuer in topo and topo.is_ancestor(code, d.issuer))]
        f = dv.issuer_figures(mine)
        f["reminders"] = (None if reminders is None
                          else sum(reminders.get(d.directive_id, 0) for d in mine))
        out[code] = f
    return out

