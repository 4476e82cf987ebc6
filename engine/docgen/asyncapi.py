"""The integration contract as an AsyncAPI 3.0 document (``docs/asyncapi.json``), generated.

Built from what the engine itself runs on, so it cannot drift from it: the topic
declarations (``topics.SPECS``; the dispatch topics per district from the shipped
topology), the pydantic models of every body (the same ones ``docs/schemas/*.json`` come
from, ``engine/docgen/schemas.py``) and the CloudEvents headers ``engine/runtime/envelope.py``
writes.
``python -m engine.docgen`` writes it with the other generated docs;
``tests/contract/test_asyncapi.py`` checks it against the official AsyncAPI 3.0.0 JSON Schema
and that it is fresh.

Convention: operations are named from the engine's side. ``receive`` = the engine consumes
the channel (the contract's "topics in": other systems send there); ``send`` = the engine
produces it ("topics out": other systems receive from there). The internal command stream
(``case.commands``) is not part of the contract and is left out.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from engine.data.topology import CITY_TOPIC_KEY, Topology
from engine.docgen.schemas import DOCS, ROOT, SCHEMAS, open_schema
from topics import DISPATCH_SUFFIX, SPECS, TopicSpec

PATH = DOCS / "asyncapi.json"
PREFIX = "zhida."  # the default; ZHIDA_PREFIX changes every address alike
KAFKA_BINDING = "0.5.0"
SCHEMA_REF = "#/components/schemas/{model}"

CONVENTION = (
    "Operations are named from the engine's side: `receive` = the engine consumes the channel "
    "(the contract's topics in: other systems send to it), `send` = the engine produces it "
    "(topics out: other systems receive from it).")

# ce_type of each produced message: its prefix and the model field whose values follow it
_CE_TYPES: dict[str, tuple[str, str | None]] = {
    "case.events": ("zhida.case.", "type"),
    "directive.events": ("zhida.directive.", "type"),
    "dispatch": ("zhida.dispatch.", "kind"),
    "citizen.notifications": ("zhida.citizen.", "kind"),
    "insights": ("zhida.insight.", "kind"),
    "deadletter": ("zhida.deadletter", None),
}
# what each message is, for people reading the document (the models say the fields)
_SUMMARIES: dict[str, str] = {
    "intake.complaints": "A citizen's complaint (hotline, app, web, grid, media); "
                         "`complaint_id` is the idempotency key.",
    "intake.sensed": "A sensor alarm; `event_id` is the idempotency key. Repeats of an open "
                     "case's alarm and alarms of the same kind in the same street join it.",
    "intake.directives": "A directive (政令) to fan out: one task per target unit. Issued by "
                         "the city centre, or by a district centre to units inside it.",
    "unit.updates": "A unit's action on a case (ack, return, progress, assist, resolve, "
                    "suspend, resume, verify, assign) or on a directive task (ack, report); "
                    "exactly one of `case_id` / `directive_id`. Per action: `reason` (return, "
                    "suspend), `until` (suspend), `assist_units` (assist), `assign_to` "
                    "(assign). `update_id` is the idempotency key.",
    "citizen.feedback": "A citizen's rating of a resolved case; `feedback_id` is the "
                        "idempotency key.",
    "case.events": "Every state change of every case, ordered per case: `seq` is 1, 2, 3 … "
                   "per case with no gaps. No personal data.",
    "directive.events": "Every change of a directive and of its per-target tasks; `seq` is "
                        "gap-free per directive.",
    "dispatch": "Work for a unit of the district: `kind` case, directive, reminder (催办, "
                "yellow) or supervision (督办, red). Citizen contact only on `kind=case` "
                "orders of complaint cases.",
    "citizen.notifications": "What to tell a complainant: received, resolved (asking for a "
                             "rating), closed, reopened.",
    "insights": "What the case flow teaches (docs/insights.md): a `hotspot` (每月一题: "
                "complaints of one category at one place reached `hotspot_min_reports` within "
                "`hotspot_window`), a `dispute` (扯皮: a second unit returned a case; its lowest "
                "common ancestor arbitrates), the arbiter's `ruling` (a precedent for the "
                "place) and a `revoked` precedent. No personal data.",
    "deadletter": "Input the engine refused, with the reason, a human-readable detail, where "
                  "it came from and the original value (`original` as text when it is valid "
                  "UTF-8, else `original_base64`).",
}


def _version() -> str:
    """The package version from pyproject.toml (the repository is what the file documents)."""
    try:
        return str(tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
                   ["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        from importlib.metadata import version

        return version("zhida")


def _camel(text: str) -> str:
    parts = text.replace(".", "_").split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def _title(text: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in _camel(text).split("_"))


def _channels_of() -> list[tuple[str, TopicSpec | None]]:
    """(schema key, spec) of every contract channel, in the declarations' order; dispatch
    (one address per district: a parameter) last. A contract topic without a model fails
    here, so a new topic cannot be left out of the document."""
    out: list[tuple[str, TopicSpec | None]] = []
    for spec in SPECS:
        if spec.direction == "internal":
            continue
        if spec.suffix not in SCHEMAS:
            raise KeyError(f"topic {spec.suffix} has no model in engine/docgen/schemas.py SCHEMAS")
        out.append((spec.suffix, spec))
    out.append(("dispatch", None))
    return out


def _ce_type_schema(key: str, model: type[BaseModel]) -> dict[str, Any]:
    prefix, field = _CE_TYPES[key]
    if field is None:
        return {"type": "string", "const": prefix}
    values: list[str] = []
    if field in model.model_fields:
        args = [a for a in get_args(model.model_fields[field].annotation) if isinstance(a, str)]
    else:  # a union of kinds (zhida.insights): each member's literal
        members = get_args(model.model_fields["root"].annotation)
        args = [a for m in members for a in get_args(m.model_fields[field].annotation)]
    if not args and key == "case.events":  # `type` is a str in the message: the core's names
        from engine.core.model import EventType

        args = list(get_args(EventType))
    values = [prefix + a for a in args]
    escaped = prefix.replace(".", "\\.")
    return {"type": "string", "pattern": f"^{escaped}[a-z_]+$",
            "description": f"`{prefix}<{field}>`; more values may be added",
            "examples": values}


def _headers(key: str, model: type[BaseModel], direction: str) -> dict[str, Any]:
    if direction == "in":
        signed = key in ("unit.updates", "intake.directives")
        return {"$ref": "#/components/schemas/"
                + ("SignedInboundHeaders" if signed else "InboundHeaders")}
    return {"allOf": [{"$ref": "#/components/schemas/CloudEventsHeaders"},
                      {"type": "object",
                       "properties": {"ce_type": _ce_type_schema(key, model)}}]}


def _header_schemas() -> dict[str, Any]:
    ce = {
        "ce_specversion": {"type": "string", "const": "1.0",
                           "description": "CloudEvents spec version"},
        "ce_id": {"type": "string", "minLength": 1,
                  "description": "deterministic per output (e.g. `<case_id>/<seq>`): a "
                                 "message re-sent after a crash has the same id, so a "
                                 "consumer can drop it"},
        "ce_source": {"type": "string", "minLength": 1,
                      "description": "the producing engine, `/zhida/engine` by default"},
        "ce_type": {"type": "string", "minLength": 1,
                    "description": "what happened, e.g. `zhida.case.dispatched`"},
        "ce_time": {"type": "string", "format": "date-time",
                    "description": "RFC 3339 time of the event"},
        "content-type": {"type": "string", "const": "application/json"},
    }
    inbound = {k: {kk: vv for kk, vv in v.items() if kk != "const" or k == "content-type"}
               for k, v in ce.items()}
    return {
        "CloudEventsHeaders": {
            "type": "object",
            "description": "CloudEvents 1.0 binary-mode Kafka headers, on every message the "
                           "engine produces (header values are UTF-8 bytes).",
            "required": list(ce),
            "properties": ce,
        },
        "InboundHeaders": {
            "type": "object",
            "description": "Inbound messages may carry CloudEvents headers or not: the body "
                           "alone is enough.",
            "properties": inbound,
        },
        "SignedInboundHeaders": {
            "type": "object",
            "description": "As InboundHeaders; when the worker runs with a key set "
                           "(`--keys`), `zhida-signature` is required and checked.",
            "properties": {
                **inbound,
                "zhida-signature": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9_-]+\\.\\.[A-Za-z0-9_-]+$",
                    "description": "JWS with detached payload (RFC 7515 Appendix F): "
                                   "BASE64URL(protected header)..BASE64URL(signature), "
                                   "protected header {\"alg\": \"EdDSA\", \"kid\": "
                                   "\"<unit code>[#<version>]\"}, signed over the message "
                                   "value's exact bytes; the kid's unit must be the "
                                   "message's `actor` (updates) or `issuer` (directives)",
                },
            },
        },
    }


def document(districts: list[str] | None = None, names: dict[str, str] | None = None
             ) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document as a dict (see the module's docstring)."""
    topo = Topology.load() if districts is None else None
    districts = districts if districts is not None else topo.districts  # type: ignore[union-attr]
    names = names if names is not None else (
        {d: topo.name(d) for d in districts} if topo else {})
    channels_of = _channels_of()
    models = [(SCHEMAS[key][0], "validation" if SCHEMAS[key][1] == "in" else "serialization")
              for key, _ in channels_of]
    refs, defs = models_json_schema(models, ref_template=SCHEMA_REF)
    schemas: dict[str, Any] = {name: open_schema(s) for name, s in
                               sorted(defs.get("$defs", {}).items())}
    schemas.update(_header_schemas())

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for (key, spec), mode in zip(channels_of, models, strict=True):
        model, direction = SCHEMAS[key]
        channel_id = _camel(spec.key) if spec else "dispatch"
        message_id = model.__name__
        keyed_by = spec.keyed_by if spec else "target unit code"
        messages[message_id] = {
            "name": message_id,
            "title": f"{PREFIX}{key}" + (".{district}" if spec is None else ""),
            "summary": _SUMMARIES[key],
            "contentType": "application/json",
            "headers": _headers(key, model, direction),
            "payload": refs[mode],
            "bindings": {"kafka": {
                "key": {"type": "string", "description": f"the record key: {keyed_by}"},
                "bindingVersion": KAFKA_BINDING}},
        }
        address = f"{PREFIX}{key}" if spec else f"{PREFIX}{DISPATCH_SUFFIX}{{district}}"
        channel: dict[str, Any] = {
            "address": address,
            "title": address,
            "description": (f"{spec.doc}. Key: {spec.keyed_by}." if spec else
                            "One topic per district, and `zhida.dispatch.city` for "
                            "city-level units (the city centre and its departments). Key: "
                            "the target unit code."),
            "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
        }
        if spec is None:
            codes = [*districts, CITY_TOPIC_KEY]
            listed = ", ".join(f"{d} {names.get(d, '')}".strip() for d in districts)
            channel["parameters"] = {"district": {
                "enum": codes,
                "description": "the district's official division code, or `city`: "
                               + listed,
                "examples": [codes[0], CITY_TOPIC_KEY],
            }}
        channels[channel_id] = channel
        action = "receive" if direction == "in" else "send"
        operations[f"{action}{_title(channel_id)}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": ("the engine consumes " if action == "receive" else
                        "the engine produces ") + address,
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_id}"}],
        }

    return {
        "asyncapi": "3.0.0",
        "id": "urn:zhida:integration-contract",
        "info": {
            "title": "Zhida (智达) integration contract",
            "version": _version(),
            "description": (
                "What other systems see of the Zhida dispatch engine (CONTRACT.md, v1), "
                "generated from its topic declarations and pydantic models by "
                "`python -m engine.docgen`; do not edit. " + CONVENTION + " Topic names "
                f"carry a configurable prefix (`{PREFIX}` by default, `ZHIDA_PREFIX`). "
                "Bodies are UTF-8 JSON objects; times are RFC 3339 with an offset, "
                "durations ISO 8601. Unknown extra fields are kept, not rejected, and "
                "consumers must accept fields they do not know: more fields are welcome, "
                "so no schema here forbids them. Duplicates (a repeated idempotency key) "
                "are dropped and counted, not dead-lettered."),
            "license": {"name": "Apache-2.0",
                        "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The default bootstrap (`ZHIDA_BOOTSTRAP`): the embedded "
                               "broker of `zhida broker` / `zhida demo`; a deployment's "
                               "brokers take its place.",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def text() -> str:
    return json.dumps(document(), ensure_ascii=False, indent=2) + "\n"


def files() -> dict[Path, str]:
    """For engine/docgen/generate.py: the generated file and its text."""
    return {PATH: text()}
