"""Deterministic identifiers; the rules live in the pure core (engine/core/ids.py)."""

from engine.core.ids import case_id_for

__all__ = ["case_id_for"]
