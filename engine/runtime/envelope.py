"""CloudEvents 1.0 binary-mode Kafka headers (``ce_*``) for every message the engine produces."""

from __future__ import annotations

from datetime import datetime

CONTENT_TYPE = b"application/json"
SPEC_VERSION = b"1.0"


def headers(ce_id: str, ce_type: str, source: str, time: datetime) -> list[tuple[str, bytes]]:
    """Deterministic for a given output: a replayed command yields byte-identical headers."""
    return [
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", ce_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", time.isoformat().encode()),
        ("content-type", CONTENT_TYPE),
    ]
