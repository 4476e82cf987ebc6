"""A ``Live`` run for replay's tests (tests/core/test_replay.py): the single writer and its
ticker over one partition, as engine/runtime/writer.py and engine/runtime/timers.py do it,
recording every command decided; and the builders of the commands its stories send."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from engine.core import Accepted, World, apply, decide, file_after, insights, merge, react
from engine.core import directive as dv
from engine.core.decide import Bounce
from engine.core.figures import Days, tally
from engine.core.figures import merge as merge_counters
from engine.core.ids import case_id_for
from engine.core.model import (
    DIRECTIVE_KINDS,
    GROUP_KINDS,
    CaseEvent,
    CaseFile,
    CaseState,
    Command,
    Complainant,
    DirectiveExpire,
    Expire,
    GroupOpen,
    IssueDirective,
    OpenCase,
)
from engine.core.sla import next_timer
from schemas.codec import encode
from schemas.inbound import Directive
from tests.support.helpers import (
    CITY,
    DISTRICT,
    STREET,
    T0,
    update_cmd,
)

TZ = ZoneInfo("Asia/Shanghai")  # the policies' calendar zone (the default)

def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Live:
    """The single writer and its ticker over one partition: every command decided is on
    ``log`` in the order decided; events as decided (``events``) and as published
    (``messages``); the writer's figure records kept with ``figures.tally``."""

    def __init__(self, world: World, lag: timedelta = timedelta(seconds=2)) -> None:
        self.world = world
        self.lag = lag  # the ticker fires a timer this long after its instant
        self.log: list[Command] = []
        self.states: dict[str, CaseState] = {}
        self.files: dict[str, CaseFile] = {}
        self.groups: dict[str, merge.GroupState] = {}
        self.events: dict[str, list[CaseEvent]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.days: Days = {}
        self.now: dict[str, dict[str, int]] = {}
        self.outcomes: Counter[str] = Counter()
        self.directives: dict[str, dv.DirectiveState] = {}
        self.tasks: dict[tuple[str, str], dv.Task] = {}
        self.directive_events: dict[str, list[dv.DirectiveEvent]] = {}

    def input(self, cmd: Command) -> None:
        """An input taken at ``cmd.at``: the ticker's firings due by then go first."""
        self.tick(cmd.at)
        self.write(cmd)

    def routed(self, report: OpenCase, at: datetime) -> Command:
        """A report to its merge group (or straight to its case when it has none)."""
        key = merge.group_of(self.world, report)
        own = case_id_for(report.source, report.key)
        if key is None:
            return Command(aggregate=own, at=at, body=report)
        return Command(aggregate=key, at=at, body=GroupOpen(open=report, case_id=own))

    def tick(self, now: datetime) -> None:
        """engine/runtime/timers.py: each armed timer whose instant + lag has come, in due
        order (then case or directive id and target, as the index sorts), as an ``Expire``
        (a ``DirectiveExpire`` for a directive task's) stamped with its firing."""
        while True:
            due = [(t.at, cid, "", t) for cid, s in self.states.items()
                   if (t := next_timer(s)) is not None and t.at + self.lag <= now]
            due += [(t.at, did, target, t) for (did, target), task in self.tasks.items()
                    if (t := dv.next_timer(task)) is not None and t.at + self.lag <= now]
            if not due:
                return
            at, cid, target, t = min(due, key=lambda d: d[:3])
            body: Expire | DirectiveExpire = (
                DirectiveExpire(target=target, timer=t.kind, stage=t.stage, instant=at)
                if target else Expire(timer=t.kind, stage=t.stage, instant=at))
            self.write(Command(aggregate=cid, at=at + self.lag, body=body))

    def write(self, cmd: Command) -> None:
        self.log.append(cmd)
        kind = cmd.body.kind
        if kind in DIRECTIVE_KINDS:
            self.directive(cmd)
            return
        if kind in GROUP_KINDS:  # engine/runtime/writer.py ``_group``
            routed = insights.decide_group(self.groups.get(cmd.aggregate), cmd, self.world)
            if routed is None:
                return
            self.groups[cmd.aggregate] = routed.group
            fwd = routed.forward
            if fwd is not None:
                if isinstance(fwd.body, OpenCase):  # the case tells its group when it closes
                    fwd = fwd.model_copy(update={"body": fwd.body.model_copy(
                        update={"group": cmd.aggregate})})
                self.write(fwd)
            for issued in routed.commands:
                self.write(issued)
            return
        before = self.states.get(cmd.aggregate)
        d = decide(before, cmd, self.world)
        self.outcomes[type(d).__name__] += 1
        if isinstance(d, Bounce):  # forwarded on the log: the report opens its own case
            self.write(d.command)
            return
        if not isinstance(d, Accepted):
            return
        after = self.states[cmd.aggregate] = apply(before, cmd, d.events)
        self.events.setdefault(cmd.aggregate, []).extend(d.events)
        file = self.files[cmd.aggregate] = file_after(self.files.get(cmd.aggregate), d.events, cmd)
        self.messages.setdefault(cmd.aggregate, []).extend(
            orjson.loads(encode(o.value)) for o in react(after, file, d.events,
                                                         self.world.topology)
            if o.channel == "case_events")
        delta = tally(before, after, d.events, TZ)
        for (unit, day), c in delta.days.items():
            merge_counters(self.days.setdefault(day, {}), {unit: c})
        merge_counters(self.now, delta.now)
        for notice in insights.group_notices(before, after, d.events, cmd.at):
            self.write(notice)  # closed, reopened, ruled (engine/core/insights.py)


    def directive(self, cmd: Command) -> None:
        """engine/runtime/writer.py ``_directive``: the directive and the one task named."""
        did = cmd.aggregate
        d = self.directives.get(did)
        target = dv.target_of(cmd)
        task = self.tasks.get((did, target)) if target is not None and d is not None else None
        decision = dv.decide(d, task, cmd, self.world)
        self.outcomes[type(decision).__name__] += 1
        if isinstance(decision, dv.Changed):
            self.directives[did] = decision.directive
            for t in decision.tasks:
                self.tasks[(did, t.target)] = t
            self.directive_events.setdefault(did, []).extend(decision.events)


def complaint(n: int, unit: str = STREET, category: str = "road_damage") -> OpenCase:
    return OpenCase(source="complaint", key=f"k{n}", category=category, priority="normal",
                    location={"unit": unit}, summary="路面塌陷", reported_at=T0,
                    complainant=Complainant(complaint_id=f"k{n}", channel="hotline"))


def cid(n: int) -> str:
    return case_id_for("complaint", f"k{n}")


def upd(action: str, actor: str, case: str, minutes: float, **fields: Any) -> Command:
    return update_cmd(action, actor, case, at=m(minutes), **fields)


def directive_commands(at: datetime) -> list[Command]:
    d = Directive.model_validate({
        "directive_id": "D1", "issuer": CITY, "title": "防汛检查", "body": "立即排查",
        "targets": {"level": "district"}, "ack_within": "PT1H", "issued_at": at.isoformat()})
    return [Command(aggregate="D1", at=at, body=IssueDirective(directive=d)),
            Command(aggregate="D1", at=at, body=DirectiveExpire(
                target=DISTRICT, timer="due", stage="ack", instant=at))]
