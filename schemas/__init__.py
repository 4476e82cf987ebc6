"""Every contract message as a pydantic v2 model, and the orjson codec."""

from schemas.codec import Refused, decode, encode
from schemas.inbound import CitizenFeedback, Complaint, Directive, SensedAlarm, UnitUpdate
from schemas.outbound import CaseEventMessage, CitizenNotification, DeadLetter, DispatchOrder

__all__ = [
    "CaseEventMessage",
    "CitizenFeedback",
    "CitizenNotification",
    "Complaint",
    "DeadLetter",
    "Directive",
    "DispatchOrder",
    "Refused",
    "SensedAlarm",
    "UnitUpdate",
    "decode",
    "encode",
]
