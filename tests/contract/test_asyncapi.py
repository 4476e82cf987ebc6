"""docs/asyncapi.json: valid AsyncAPI 3.0.0, fresh, complete, and its schemas open.

Validated offline against the official JSON Schema of AsyncAPI 3.0.0, vendored from the npm
package ``@asyncapi/specs`` 6.11.1 (``schemas/3.0.0.json``, Apache-2.0; see
tests/contract/data/asyncapi-3.0.0.NOTICE.md).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from engine.data.topology import Topology
from engine.docgen import asyncapi
from engine.docgen.generate import DOCS
from topics import SPECS

SPEC = Path(__file__).parent / "data" / "asyncapi-3.0.0.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SPEC.read_text(encoding="utf-8"))
    assert schema["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads((DOCS / "asyncapi.json").read_text(encoding="utf-8"))


def test_the_document_is_fresh() -> None:
    assert (DOCS / "asyncapi.json").read_text(encoding="utf-8") == asyncapi.text(), \
        "run `make docs` (python -m engine.docgen)"


def test_valid_against_the_asyncapi_3_schema(validator: jsonschema.Draft7Validator,
                                              doc: dict[str, Any]) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(doc)]
    assert not errors, errors[:5]


def test_the_validator_does_refuse_a_broken_document(validator: jsonschema.Draft7Validator,
                                                     doc: dict[str, Any]) -> None:
    """The check above is only worth something if the schema bites here, offline."""
    for breaking in ("publish", None):
        broken = copy.deepcopy(doc)
        op = next(iter(broken["operations"].values()))
        if breaking is None:
            del broken["info"]["version"]
        else:
            op["action"] = breaking  # AsyncAPI 2's verb, not a 3.0 action
        assert not validator.is_valid(broken)


def _pointers(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _pointers(v)]
    if isinstance(node, list):
        return [r for v in node for r in _pointers(v)]
    return []


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    for ref in _pointers(doc):
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]


def test_every_contract_topic_is_a_channel_with_its_key(doc: dict[str, Any]) -> None:
    by_address = {c["address"]: name for name, c in doc["channels"].items()}
    actions = {o["channel"]["$ref"].rsplit("/", 1)[1]: o["action"]
               for o in doc["operations"].values()}
    for spec in SPECS:
        address = "zhida." + spec.suffix
        if spec.direction == "internal":
            assert address not in by_address
            continue
        name = by_address[address]
        [ref] = doc["channels"][name]["messages"].values()
        message = doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
        assert spec.keyed_by in message["bindings"]["kafka"]["key"]["description"]
        assert actions[name] == {"in": "receive", "out": "send"}[spec.direction]
    dispatch = doc["channels"][by_address["zhida.dispatch.{district}"]]
    assert actions["dispatch"] == "send"
    codes = dispatch["parameters"]["district"]["enum"]
    assert codes == [*Topology.load().districts, "city"] and len(codes) == 39


def test_produced_messages_carry_the_cloudevents_headers(doc: dict[str, Any]) -> None:
    headers = doc["components"]["schemas"]["CloudEventsHeaders"]
    assert set(headers["required"]) == {"ce_specversion", "ce_id", "ce_source", "ce_type",
                                        "ce_time", "content-type"}
    for message in doc["components"]["messages"].values():
        refs = _pointers(message["headers"])
        if message["title"].startswith("zhida.intake") or message["title"] in (
                "zhida.unit.updates", "zhida.citizen.feedback"):
            assert refs[0].endswith("InboundHeaders"), message["title"]
        else:
            assert refs[0].endswith("/CloudEventsHeaders"), message["title"]
    signed = doc["components"]["schemas"]["SignedInboundHeaders"]["properties"]
    assert "zhida-signature" in signed


def _payload_validator(doc: dict[str, Any], name: str) -> jsonschema.Validator:
    root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(root, format_checker=jsonschema.FormatChecker())


def test_payload_schemas_accept_more_fields_and_refuse_missing_ones(doc: dict[str, Any]
                                                                     ) -> None:
    """The contract: "more fields are welcome" (in and out); required ones stay required."""
    assert '"additionalProperties": false' not in json.dumps(doc)
    complaint = {"complaint_id": "k-1", "channel": "hotline", "category": "road_damage",
                 "description": "路面塌陷", "location": {"unit": "500103001"},
                 "reported_at": "2026-11-23T09:00:00+08:00", "x_new_field": 1}
    check = _payload_validator(doc, "Complaint")
    assert check.is_valid(complaint)
    assert not check.is_valid({k: v for k, v in complaint.items() if k != "complaint_id"})
    event = {"event_id": "ZD1/1", "case_id": "ZD1", "seq": 1, "type": "created",
             "state": "received", "unit": "500103001", "at": "2026-11-23T09:00:00+08:00",
             "a_field_added_later": True}
    assert _payload_validator(doc, "CaseEventMessage").is_valid(event)


def test_published_json_schemas_allow_extra_fields() -> None:
    for path in sorted((DOCS / "schemas").glob("*.json")):
        assert '"additionalProperties": false' not in path.read_text(encoding="utf-8"), path


def test_info_states_version_and_convention(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["version"] == asyncapi._version()
    assert "`receive` = the engine consumes" in doc["info"]["description"]
