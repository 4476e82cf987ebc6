"""ISO 8601 durations as the policy file writes them, and values shown in a problem line.

Days are kept apart from hours, minutes and seconds: a day's length depends on the clock it
runs on (a working day on ``workdays``), see engine/data/policy.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator

_US_PER = {"H": 3_600_000_000, "M": 60_000_000, "S": 1_000_000}
_DAY_US = 86_400_000_000
_MAX_DAYS = 3660  # ten years: longer is a typo, and would overflow datetime arithmetic


def show_value(v: Any) -> str:
    """A value as the problem line shows it: its TOML type and a short repr."""
    kind = (
        "boolean" if isinstance(v, bool) else
        "integer" if isinstance(v, int) else
        "float" if isinstance(v, float) else
        "string" if isinstance(v, str) else
        "array" if isinstance(v, list | tuple) else
        "table" if isinstance(v, Mapping) else
        "datetime" if isinstance(v, datetime) else
        "date" if isinstance(v, date) else
        "time" if isinstance(v, time) else
        type(v).__name__
    )
    text = ("true" if v else "false") if isinstance(v, bool) else repr(v)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}"


_NUM = r"(\d+(?:[.,]\d+)?)"
_ISO = re.compile(
    rf"P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?"
)


def parse_duration(text: Any) -> tuple[int, int]:
    """An ISO 8601 duration as (whole days, microseconds of hours/minutes/seconds).

    Days are kept apart because their length depends on the clock (see the module docstring).
    Years, months and weeks are refused (no fixed length here: write days), as are fractional
    days, negative durations and anything that is not a string.
    """
    if not isinstance(text, str):
        raise ValueError(
            f"a duration is an ISO 8601 string such as 'PT2H' or 'P5D', got {show_value(text)}")
    if text.startswith("-"):
        raise ValueError(f"a duration cannot be negative, got {text!r}")
    m = _ISO.fullmatch(text)
    if m is None or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"invalid ISO 8601 duration {text!r}")
    years, months, weeks, days, hours, minutes, seconds = m.groups()
    if years or months or weeks:
        raise ValueError(f"years, months and weeks are not used in {text!r}: write days (P30D)")
    if days and not days.isdigit():
        raise ValueError(f"fractional days are not used in {text!r}: write P1DT12H")
    us = Decimal(0)
    for value, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")):
        if value:
            us += Decimal(value.replace(",", ".")) * _US_PER[unit]
    whole = int(us.to_integral_value(ROUND_HALF_EVEN))
    d = int(days or 0)
    if d + whole // _DAY_US > _MAX_DAYS:
        raise ValueError(f"duration {text!r} is longer than ten years")
    return d, whole


def format_duration(days: int, us: int) -> str:
    """The canonical ISO 8601 form: ``P1DT2H30M``, ``PT0.5S``, ``PT0S``."""
    if days == 0 and us == 0:
        return "PT0S"
    out = f"P{days}D" if days else "P"
    if us:
        h, rest = divmod(us, _US_PER["H"])
        m, rest = divmod(rest, _US_PER["M"])
        s, frac = divmod(rest, _US_PER["S"])
        out += "T" + (f"{h}H" if h else "") + (f"{m}M" if m else "")
        if frac:
            out += f"{s}.{frac:06d}".rstrip("0") + "S"
        elif s:
            out += f"{s}S"
    return out


# ---- the policy file's duration fields (engine/data/policy.py) ----


def _stage_duration(v: Any) -> str | None:
    if v is None:
        return None
    days, us = parse_duration(v)
    if days == 0 and us == 0:
        raise ValueError(f"a stage's deadline must be longer than zero, got {v!r}")
    return format_duration(days, us)


def _window(v: Any) -> str:
    return format_duration(*parse_duration(v))


StageDuration = Annotated[str, BeforeValidator(_stage_duration)]
OptionalStageDuration = Annotated[str | None, BeforeValidator(_stage_duration)]
Window = Annotated[str, BeforeValidator(_window)]


def wall_time(text: str) -> timedelta:
    """A normalised duration as wall-clock time (a day is 24 h whatever the clock)."""
    days, us = parse_duration(text)
    return timedelta(days=days, microseconds=us)
