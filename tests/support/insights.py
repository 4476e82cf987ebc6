"""The insights' rules driven as the writer drives them (engine/core/insights.py), for the
core's tests and the precedents tool's."""

from __future__ import annotations

from datetime import timedelta

from engine.core import Accepted, World, apply, decide, file_after, insights, react
from engine.core.decide import Bounce
from engine.core.ids import case_id_for
from engine.core.merge import GroupState, group_of
from engine.core.model import CaseFile, CaseState, Command, Complainant, GroupOpen, OpenCase
from schemas.inbound import Citizen
from tests.support.helpers import DISTRICT, OTHER_STREET, STREET, T0, update_cmd

WINDOW = timedelta(days=7)
POINT = {"lat": 29.5570, "lon": 106.5770}  # in 渝中区


def complaint(n: int, *, location: dict | None = None, category: str = "road_damage",
              phone: str | None = None, at=T0) -> OpenCase:
    citizen = Citizen(name="张三", phone=phone) if phone else None
    return OpenCase(source="complaint", key=f"k{n}", category=category, priority="normal",
                    location=location or {"unit": STREET}, summary="路面塌陷", reported_at=at,
                    complainant=Complainant(complaint_id=f"k{n}", channel="hotline",
                                            citizen=citizen))


def near(metres_north: float) -> dict:
    return {"lat": POINT["lat"] + metres_north / 111_000, "lon": POINT["lon"]}


class Town:
    """Groups and cases driven through the core as the writer drives them: the group's
    decision, its forward, the case's decision and the notices the case sends its group."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.groups: dict[str, GroupState] = {}
        self.cases: dict[str, CaseState] = {}
        self.files: dict[str, CaseFile] = {}
        self.outputs: list = []
        self.records: dict[str, object] = {}

    def report(self, report: OpenCase, at=T0) -> str:
        key = group_of(self.world, report)
        assert key is not None
        own = case_id_for(report.source, report.key)
        cmd = Command(aggregate=key, at=at, body=GroupOpen(open=report, case_id=own))
        fwd = self.group(cmd)
        assert fwd is not None
        return self.case(fwd)

    def group(self, cmd: Command) -> Command | None:
        d = insights.decide_group(self.groups.get(cmd.aggregate), cmd, self.world)
        if d is None:
            return None
        self.groups[cmd.aggregate] = d.group
        self.outputs += d.outputs
        self.records.update({r.insight_id: r for r in d.records})
        fwd = d.forward
        if fwd is not None and isinstance(fwd.body, OpenCase):
            fwd = fwd.model_copy(update={"body": fwd.body.model_copy(
                update={"group": cmd.aggregate})})
        return fwd

    def case(self, cmd: Command) -> str:
        state = self.cases.get(cmd.aggregate)
        d = decide(state, cmd, self.world)
        if isinstance(d, Bounce):
            return self.case(d.command)
        if isinstance(d, Accepted):
            new = apply(state, cmd, d.events)
            self.files[cmd.aggregate] = file_after(self.files.get(cmd.aggregate), d.events, cmd)
            self.cases[cmd.aggregate] = new
            self.outputs += react(new, self.files[cmd.aggregate], d.events,
                                  self.world.topology)
            for notice in insights.group_notices(state, new, d.events, cmd.at):
                self.group(notice)
        return cmd.aggregate

    def insights(self, kind: str) -> list:
        return [o.value for o in self.outputs if o.channel == "insights" and o.value.kind == kind]

    def events(self, type_: str) -> list:
        return [o.value for o in self.outputs if o.channel == "case_events"
                and o.value.type == type_]


def disputed(t: Town) -> str:
    """A case returned by 七星岗 and then by 解放碑, after the district assigned it there."""
    cid = t.report(complaint(1))
    t.case(update_cmd("return", STREET, cid, reason="不归我们管"))
    t.case(update_cmd("assign", DISTRICT, cid, assign_to=OTHER_STREET))
    t.case(update_cmd("return", OTHER_STREET, cid, reason="也不归我们"))
    return cid
