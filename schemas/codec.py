"""orjson codec: bytes <-> pydantic models, with the contract's dead-letter reasons."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

MAX_MESSAGE_BYTES = 256 * 1024


class Refused(Exception):
    """Input the engine will not take; ``reason`` is a dead-letter reason of the contract."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode(model: type[M], raw: bytes | None, max_bytes: int = MAX_MESSAGE_BYTES) -> M:
    if raw is None:
        raise Refused("decode", "empty message (no value)")
    if len(raw) > max_bytes:
        raise Refused("oversize", f"{len(raw)} bytes, limit {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise Refused("decode", f"not UTF-8 JSON: {e}") from None
    if not isinstance(data, dict):
        raise Refused("schema", f"body must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise Refused("schema", _summarise(e)) from None


def clip(text: str, limit: int) -> str:
    """``text`` cut to its first ``limit`` characters, with a visible marker when cut:
    details and logs name what was wrong, they do not repeat a hostile input."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (+{len(text) - limit} chars)"


def _summarise(e: ValidationError) -> str:
    """The first errors, each part bounded: a location can hold a key of the input (an extra
    member of a mapping) and a message a value of it, both as long as the input allows."""
    parts = []
    for err in e.errors(include_url=False)[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "body"
        parts.append(f"{clip(loc, 100)}: {clip(str(err['msg']), 200)}")
    more = e.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def encode(model: BaseModel) -> bytes:
    return orjson.dumps(model.model_dump(mode="python"), default=_default)


def _default(obj: object) -> object:
    """What orjson lacks: durations (a directive's ``ack_within``) as seconds, which
    pydantic reads back as the same ``timedelta``."""
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


def dumps(obj: object) -> bytes:
    return orjson.dumps(obj)
