"""The transition table of a case: which action, from which states, by whom, to which states.

This table is the single statement of the closed loop's rules. ``decide`` enforces it and
``docs/lifecycle.md`` is generated from it (``python -m engine.core.diagram``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["holder", "co_handler", "ancestor", "citizen", "engine", "intake"]

OPEN_STATES = frozenset({"triage", "dispatched", "acknowledged", "suspended", "resolved"})


@dataclass(frozen=True)
class Transition:
    action: str
    sources: frozenset[str]  # states the action is valid in
    who: frozenset[Role]  # who may take it
    targets: tuple[str, ...]  # "same": unchanged; "previous": before suspension
    events: tuple[str, ...]  # event types it emits, in order
    case_sources: frozenset[str] = frozenset({"complaint", "sensed"})
    note: str = ""


def _t(action: str, sources: str, who: str, targets: str, events: str, case_sources: str = "",
       note: str = "") -> Transition:
    return Transition(
        action=action,
        sources=frozenset(sources.split()),
        who=frozenset(who.split()),  # type: ignore[arg-type]
        targets=tuple(targets.split()),
        events=tuple(events.split()),
        case_sources=frozenset(case_sources.split() or ("complaint", "sensed")),
        note=note,
    )


TRANSITIONS: dict[str, Transition] = {
    t.action: t
    for t in [
        _t("open", "new", "intake", "dispatched triage", "created dispatched triaged",
           note="routed to the lowest owning unit; unplaceable locations go to city triage"),
        _t("ack", "triage dispatched", "holder ancestor", "acknowledged", "acknowledged",
           note="签收; in triage the city centre handles it itself"),
        _t("progress", "acknowledged", "holder co_handler ancestor", "same", "progress"),
        _t("return", "dispatched acknowledged", "holder", "dispatched", "returned",
           note="退单 to the parent; at the policy's cap the parent must handle it (首接负责)"),
        _t("assign", "triage dispatched acknowledged", "holder ancestor", "dispatched",
           "assigned", note="only to units below the assigner; not by a holder bound by 首接负责"),
        _t("assist", "dispatched acknowledged", "holder ancestor", "same",
           "assisted", note="吹哨报到: units join as co-handlers"),
        _t("suspend", "dispatched acknowledged", "holder ancestor", "suspended", "suspended",
           note="approved extension: the SLA clock pauses"),
        _t("resume", "suspended", "holder ancestor", "previous", "resumed",
           note="back to the state before suspension; the deadline moves by the pause"),
        _t("resolve", "acknowledged", "holder ancestor", "resolved", "resolved"),
        _t("verify", "resolved", "ancestor", "closed", "verified closed", case_sources="sensed",
           note="a sensed case closes when the level above verifies it (the city its own)"),
        _t("rate", "resolved", "citizen", "closed dispatched same", "rated closed reopened",
           case_sources="complaint",
           note="the worst rating counts: unsatisfied reopens it at once, supervision +1; "
           "otherwise it closes once every complainant (一事多诉) has rated"),
        _t("expire_feedback", "resolved", "engine", "closed", "closed", case_sources="complaint",
           note="no more ratings in time: closed with the worst rating given, or unrated; "
           "never satisfied by default"),
        _t("join", "triage dispatched acknowledged suspended resolved", "intake", "same",
           "merged", note="一事多诉 / a repeated alarm joins the open case (merge.py); a "
           "critical alarm makes it urgent; a closed case sends the report to its own case"),
        _t("expire_warn", "triage dispatched acknowledged resolved", "engine", "same",
           "warned", note="催办 at the policy's warn_fraction of the stage: a reminder order "
           "to the holder (a sensed case's verifier); not for a complaint's feedback"),
        _t("expire_due", "triage dispatched acknowledged resolved", "engine", "same",
           "escalated", note="督办: the stage is late: a supervision order to the late unit's "
           "parent, escalation_level + 1, the policy's supervise deadline; at the city: top"),
        _t("expire_supervise", "triage dispatched acknowledged resolved", "engine", "same",
           "escalated", note="the supervisor's deadline passed too: one more level up, to the "
           "city centre; the stage's completion ends the supervision"),
        _t("expire_resume", "suspended", "engine", "previous", "resumed",
           note="a suspension with until resumes itself then; deadlines move by the pause"),
    ]
}
