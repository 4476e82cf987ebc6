"""Inbound decoding: the contract's dead-letter reasons, defaults, extra fields kept."""

from datetime import UTC, datetime

import orjson
import pytest

from engine.core.ids import case_id_for
from engine.core.model import Origin
from engine.data.catalogue import Catalogue
from engine.runtime.logs import mask_name, mask_phone, mask_pii
from handlers import citizen_feedback, complaints, sensed, unit_updates
from schemas.codec import Refused, decode
from schemas.inbound import UnitUpdate

CAT = Catalogue.load()
NOW = datetime(2026, 11, 23, tzinfo=UTC)
ORIGIN = Origin(topic="t")


def raw(**body: object) -> bytes:
    return orjson.dumps(body)


COMPLAINT = {"complaint_id": "c-1", "channel": "app", "category": "water_supply",
             "description": "停水", "location": {"unit": "500103001"},
             "reported_at": "2026-11-23T09:00:00+08:00", "shift": "night"}


def test_complaint_takes_catalogue_priority_and_keeps_extra_fields() -> None:
    cmd = complaints.to_command(CAT, raw(**COMPLAINT), ORIGIN, NOW)
    assert cmd.aggregate == case_id_for("complaint", "c-1")
    assert cmd.body.priority == "urgent"
    assert cmd.body.complainant.complaint_id == "c-1"
    assert decode(type(cmd), orjson.dumps(cmd.model_dump(mode="json"))) == cmd
    from schemas.inbound import Complaint
    assert decode(Complaint, raw(**COMPLAINT)).model_extra == {"shift": "night"}


def test_sensed_severity_sets_priority() -> None:
    alarm = {"event_id": "e1", "sensor_id": "s1", "kind": "traffic_congestion",
             "severity": "critical", "location": {"lat": 29.5, "lon": 106.5},
             "observed_at": "2026-11-23T09:00:00+08:00", "value": 12, "unit": "km/h"}
    assert sensed.to_command(CAT, raw(**alarm), ORIGIN, NOW).body.priority == "urgent"
    alarm["severity"] = "info"
    cmd = sensed.to_command(CAT, raw(**alarm), ORIGIN, NOW)
    assert cmd.body.priority == "normal" and "12km/h" in cmd.body.summary


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\xff", "decode"), (b"{", "decode"), (b"[1]", "schema"), (None, "decode"),
    (raw(**{**COMPLAINT, "channel": "fax"}), "schema"),
    (raw(**{**COMPLAINT, "reported_at": "2026-11-23T09:00:00"}), "schema"),  # no offset
    (raw(**{**COMPLAINT, "location": {"where": "?"}}), "schema"),
    (b'{"a":"' + b"x" * 300_000 + b'"}', "oversize"),
])
def test_refusals(payload: bytes | None, reason: str) -> None:
    with pytest.raises(Refused) as e:
        complaints.to_command(CAT, payload, ORIGIN, NOW)
    assert e.value.reason == reason and e.value.detail


def test_update_fields_per_action() -> None:
    base = {"update_id": "u", "actor": "500103001", "at": "2026-11-23T09:00:00+08:00",
            "case_id": "ZD1"}
    for action, missing in (("return", "reason"), ("assign", "assign_to"),
                            ("assist", "assist_units"), ("suspend", "reason")):
        with pytest.raises(Refused) as e:
            unit_updates.to_command(raw(**base, action=action), ORIGIN, NOW)
        assert e.value.reason == "schema" and missing in e.value.detail
    with pytest.raises(Refused):
        decode(UnitUpdate, raw(**{**base, "directive_id": "d"}, action="ack"))  # both ids
    cmd = unit_updates.to_command(raw(**{k: v for k, v in base.items() if k != "case_id"},
                                      directive_id="D1", action="ack"), ORIGIN, NOW)
    assert cmd.aggregate == "D1" and cmd.body.kind == "directive_update"
    assert cmd.body.target == "500103001"  # the actor's own task
    cmd = unit_updates.to_command(raw(**{**{k: v for k, v in base.items() if k != "case_id"},
                                         "actor": "500103"},
                                      directive_id="D1", action="ack",
                                      target="500103001"), ORIGIN, NOW)
    assert cmd.body.target == "500103001"  # an ancestor acting for its street
    with pytest.raises(Refused) as e:
        unit_updates.to_command(raw(**{k: v for k, v in base.items() if k != "case_id"},
                                    directive_id="D1", action="ack", target=7), ORIGIN, NOW)
    assert e.value.reason == "schema"


def test_feedback() -> None:
    cmd = citizen_feedback.to_command(raw(feedback_id="f", case_id="ZD1", rating="satisfied",
                                          at="2026-11-23T09:00:00+08:00"), ORIGIN, NOW)
    assert cmd.aggregate == "ZD1" and cmd.key == "feedback:f"


def test_personal_data_is_masked_in_logs() -> None:
    assert mask_phone("call 13800138000 now") == "call 138****8000 now"
    assert mask_name("张三丰") == "张**"
    out = mask_pii(None, "info", {"event": "x", "citizen": {"phone": "1"},
                                  "detail": "phone 13912345678"})
    assert out["citizen"] == "***" and "1391234" not in out["detail"]
