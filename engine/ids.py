"""Deterministic identifiers: the same input always names the same case."""

from __future__ import annotations

import hashlib


def case_id_for(source: str, key: str) -> str:
    """``ZD`` + 20 hex digits of a hash of (source, idempotency key): a redelivered or
    repeated complaint lands on the case it already created, on the same partition."""
    digest = hashlib.blake2b(f"{source}:{key}".encode(), digest_size=10).hexdigest()
    return f"ZD{digest.upper()}"
