"""react: what the world must be told about a case's new events.

Every output carries a deterministic id (case, seq, kind, target), used as its CloudEvents
``ce_id``, so a command replayed after a crash re-sends identical messages a consumer can drop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from engine.core import ids
from engine.core.model import SUMMARY_CHARS, CaseEvent, CaseFile, CaseState, Complainant
from engine.data.topology import Topology
from schemas.outbound import (
    CaseEventMessage,
    CitizenNotification,
    DispatchOrder,
    DisputeInsight,
    RulingInsight,
)

Channel = Literal["case_events", "dispatch", "notifications", "directive_events", "insights"]

HOLDER_CHANGES = frozenset({"dispatched", "triaged", "returned", "assigned", "reopened"})

_NOTICES = {
    "created": ("received", "您的诉求已受理，正在派发处理。"),
    "resolved": ("resolved", "您的诉求已办结，请对办理结果进行评价。"),
    "reopened": ("reopened", "您对办理结果不满意，诉求已重新派发并提级督办。"),
    "closed": ("closed", "您的诉求已办结归档，感谢您的监督。"),
}


@dataclass(frozen=True, slots=True)
class Output:
    channel: Channel
    key: str
    value: BaseModel
    ce_id: str
    ce_type: str
    district: str | None = None  # for dispatch: the topic suffix (district code or "city")


def react(case: CaseState, file: CaseFile, events: list[CaseEvent], topology: Topology
          ) -> list[Output]:
    """``case`` is the state after all ``events``; outputs come in event order."""
    out: list[Output] = []
    for e in events:
        out.append(_event_message(case, e))
        if e.type in HOLDER_CHANGES:
            out.append(_order(case, file, e, e.unit, "handler", topology))
        elif e.type == "warned" and e.late_unit:  # 催办: to whoever must act now
            out.append(_order(case, file, e, e.late_unit, "handler", topology, "reminder"))
        elif e.type == "escalated" and e.supervisor:  # 督办: to the level above the late unit
            out.append(_order(case, file, e, e.supervisor, "handler", topology, "supervision"))
        elif e.type == "assisted":
            out.extend(_order(case, file, e, u, "assist", topology)
                       for u in e.assist_units or ())
        if e.dispute is not None:  # 扯皮 and its ruling (engine/core/insights.py)
            out.append(_insight(case, e))
        if case.source == "complaint" and e.type in _NOTICES:
            out.extend(_notices(case, file, e))
        elif case.source == "complaint" and e.type == "merged" and e.complainants \
                and file.complainants:  # the complainant who just joined: received
            out.extend(_notices(case, file, e, only=file.complainants[-1:]))
    return out


def _event_message(case: CaseState, e: CaseEvent) -> Output:
    msg = CaseEventMessage(
        event_id=ids.case_event_id(case.case_id, e.seq), case_id=case.case_id, seq=e.seq,
        type=e.type,
        state=e.state, unit=e.unit, at=e.at, due=e.due, stage=e.stage, actor=e.actor,
        category=case.category, priority=case.priority, source=case.source,
        escalation_level=e.escalation_level, returns=e.returns, outcome=e.outcome,
        rating=e.rating, reason=e.reason,
        assist_units=list(e.assist_units) if e.assist_units else None,
        first_responsible=e.first_responsible, late_unit=e.late_unit, supervisor=e.supervisor,
        supervise_due=e.supervise_due, top=e.top,
        boundary=True if case.boundary or e.boundary else None,
        complainants=e.complainants, alarms=e.alarms, precedent=e.precedent,
        dispute=e.dispute,
    )
    return Output("case_events", case.case_id, msg, msg.event_id, f"zhida.case.{e.type}")


def _order(case: CaseState, file: CaseFile, e: CaseEvent, target: str, role: str,
           topology: Topology, kind: str = "case") -> Output:
    order_id = ids.case_order_id(case.case_id, e.seq, kind, target)
    citizen = None
    if (kind == "case" and case.source == "complaint" and file.complainants
            and file.complainants[0].citizen):
        citizen = file.complainants[0].citizen.model_dump(exclude_none=True)
    order = DispatchOrder(
        order_id=order_id, kind=kind, target=target, case_id=case.case_id,
        stage=e.stage or "ack", due=e.supervise_due if kind == "supervision" else e.due,
        escalation_level=e.escalation_level,
        summary=file.summary[:SUMMARY_CHARS], category=case.category, priority=case.priority,
        location=file.location, role=role, source=case.source, citizen=citizen,
        late_unit=e.late_unit if kind == "supervision" else None, issued_at=e.at,
        dispute=True if e.type == "returned" and e.dispute and kind == "case" else None,
    )
    return Output("dispatch", target, order, order_id, f"zhida.dispatch.{kind}",
                  district=topology.dispatch_key(target))


def _notices(case: CaseState, file: CaseFile, e: CaseEvent,
             only: tuple[Complainant, ...] | None = None) -> list[Output]:
    kind, text = _NOTICES["created" if e.type == "merged" else e.type]
    if e.type == "merged":
        text = "您反映的问题已有其他市民反映，已并入同一诉求一并办理。"
    out = []
    for c in file.complainants if only is None else only:
        nid = ids.notice_id(case.case_id, e.seq, c.complaint_id)
        note = CitizenNotification(
            notification_id=nid, case_id=case.case_id, complaint_id=c.complaint_id,
            channel=c.channel, kind=kind, ask_rating=e.type == "resolved", state=e.state,
            outcome=e.outcome, message=text, at=e.at,
        )
        out.append(Output("notifications", case.case_id, note, nid, f"zhida.citizen.{kind}"))
    return out


def _insight(case: CaseState, e: CaseEvent) -> Output:
    """A dispute (on the ``returned`` that made it) or its ruling (on the ``assigned``)."""
    assert e.dispute is not None
    value: DisputeInsight | RulingInsight
    if e.ruling is not None:
        value = RulingInsight(insight_id=e.ruling, at=e.at, case_id=case.case_id,
                              category=case.category, place=e.place, unit=e.unit,
                              dispute_id=e.dispute)
    else:
        value = DisputeInsight(insight_id=e.dispute, at=e.at, case_id=case.case_id,
                               category=case.category, place=e.place,
                               units=list(e.units or ()), arbiter=e.unit)
    return Output("insights", value.insight_id, value, value.insight_id,
                  f"zhida.insight.{value.kind}")
