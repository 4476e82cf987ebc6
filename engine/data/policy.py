"""The operator's SLA policy file (TOML, ``--policy``), validated into a frozen pydantic model.

The model mirrors the file (``docs/policy.md`` documents every key and its default)::

    [policy]                      general settings (``Policy.general``)
    [stages.normal] / .urgent     a deadline per stage and priority (ISO 8601 durations)
    [categories.<code>]           per-category overrides of any stage, for both priorities,
    [categories.<code>.urgent]    ... or for one priority only
    [calendar]                    time zone, office hours, operator-listed holidays per year

A key left out takes its default (the values shipped in ``engine/data/policy.toml``); an
unknown key is an error, so a typo never passes silently. A bad file raises ``PolicyError``,
whose ``str()`` is one line naming the file and the key.

Durations count on the policy's clock. On ``24x7`` a day is 24 hours. On ``workdays`` hours,
minutes and seconds are office time and a day (``P5D``) is a *working day*: as much office time
as one working day has (7 h 30 min with the default office hours), so ``P5D`` reads "5 working
days" and lands at the same time of day five working days later.

``digest`` identifies the policy's content, not its bytes: comments, layout, key order, and
writing a default out or leaving it implicit do not change it; any value does. ``dump()`` is
that normalised content and ``restore()`` its inverse, so a case can keep the policy it was
opened under (the engine stores each version by digest).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from engine.data.durations import (
    OptionalStageDuration,
    StageDuration,
    Window,
    parse_duration,
    wall_time,
)
from engine.data.durations import show_value as _show

DATA = Path(__file__).parent / "policy.toml"
STAGES = ("triage", "ack", "resolve", "feedback", "supervise")
PRIORITIES = ("normal", "urgent")
CLOCKS = ("24x7", "workdays")

_DAY_US = 86_400_000_000


class PolicyError(ValueError):
    """A policy file that cannot be used. ``str()`` is one line: file, key, problem."""

    def __init__(self, path: str | Path, key: str | None, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = " ".join(problem.split())  # one line, whatever the cause said
        super().__init__(self.path, key, self.problem)

    def __str__(self) -> str:
        where = f"{self.key}: " if self.key else ""
        return f"policy file {self.path}: {where}{self.problem}"


class _At(ValueError):
    """A validation problem below the field that found it (a year's list, an index)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


# ---- the file's tables ----


class _Table(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_by_name=True,
                              validate_by_alias=True)


class General(_Table):
    """``[policy]``."""

    max_returns: int = Field(default=2, ge=0)
    warn_fraction: float = Field(default=0.8, gt=0, lt=1, allow_inf_nan=False)
    clock: Literal["24x7", "workdays"] = "24x7"
    merge_window: Window = "PT2H"
    border_distance_m: float = Field(default=200.0, ge=0, allow_inf_nan=False)
    # 一事多诉 by coordinates: two points this close (same category, same district) are one
    # problem; a place named by unit or address matches by the unit alone
    merge_radius_m: float = Field(default=100.0, ge=0, allow_inf_nan=False)
    # an alarm storm: more same-district alarms than this within a minute (reported once)
    storm_alarms_per_minute: int = Field(default=120, ge=1)
    # 每月一题 (engine/core/insights.py): this many complaints of one category at one place
    # within the window make a hotspot; 0 turns hotspots off
    hotspot_min_reports: int = Field(default=5, ge=0)
    hotspot_window: Window = "P7D"


class NormalStages(_Table):
    """``[stages.normal]``: the defaults for a normal case."""

    triage: StageDuration = "PT30M"
    ack: StageDuration = "PT2H"
    resolve: StageDuration = "P5D"
    feedback: StageDuration = "P3D"
    supervise: StageDuration = "PT4H"


class UrgentStages(_Table):
    """``[stages.urgent]``: the defaults for an urgent case."""

    triage: StageDuration = "PT10M"
    ack: StageDuration = "PT30M"
    resolve: StageDuration = "PT2H"
    feedback: StageDuration = "P1D"
    supervise: StageDuration = "PT1H"


class Stages(_Table):
    normal: NormalStages = Field(default_factory=NormalStages)
    urgent: UrgentStages = Field(default_factory=UrgentStages)


class Override(_Table):
    """Some stages' deadlines; a stage left out is not overridden."""

    triage: OptionalStageDuration = None
    ack: OptionalStageDuration = None
    resolve: OptionalStageDuration = None
    feedback: OptionalStageDuration = None
    supervise: OptionalStageDuration = None


class CategoryOverride(Override):
    """``[categories.<code>]`` (both priorities), with ``.normal``/``.urgent`` sub-tables."""

    normal: Override | None = None
    urgent: Override | None = None


# ---- [calendar] ----

# 重庆市人民政府办公厅《关于在全市党政群机关和部分事业单位实行朝9晚5作息时间的通知》
# (2002-09-29), winter hours (1 Oct - 30 Apr); summer hours are 08:30-12:30, 14:00-17:30.
DEFAULT_OFFICE_HOURS = ((time(9, 0), time(12, 30)), (time(13, 30), time(17, 30)))
_HOURS = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")
_DAY = r"\d{4}-\d{2}-\d{2}"
_DATES = re.compile(rf"\s*({_DAY})\s*(?:\.\.\s*({_DAY})\s*)?")


def _minutes(t: time) -> int:
    """Minutes after midnight; an interval's end at 00:00 means midnight at the end of the day."""
    return t.hour * 60 + t.minute


def _end_minutes(t: time) -> int:
    return _minutes(t) or 24 * 60


def _parse_hours(raw: Any) -> list[tuple[time, time]]:
    if not isinstance(raw, list):
        raise _At((), f"expected an array of \"HH:MM-HH:MM\" strings, got {_show(raw)}")
    spans: list[tuple[int, int, time, time]] = []
    for i, item in enumerate(raw):
        if isinstance(item, tuple) and len(item) == 2 and all(isinstance(t, time) for t in item):
            start, end = item  # already parsed (a Policy built in code)
        else:
            m = _HOURS.fullmatch(item) if isinstance(item, str) else None
            if m is None:
                raise _At((i,), "expected \"HH:MM-HH:MM\" such as \"09:00-12:30\", "
                          f"got {_show(item)}")
            h1, m1, h2, m2 = (int(g) for g in m.groups())
            if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
                raise _At((i,), f"no such time of day in {item!r}")
            start, end = time(h1, m1), time(h2 % 24, m2)
        a, b = _minutes(start), _end_minutes(end)
        if a >= b:
            raise _At((i,), f"office hours {_span(start, end)!r} must end after they start")
        spans.append((a, b, start, end))
    if not spans:
        raise _At((), "at least one office interval is needed")
    spans.sort()
    for (_, b, s0, e0), (a, _, s1, e1) in pairwise(spans):
        if a < b:
            raise _At((), f"office hours {_span(s0, e0)!r} and {_span(s1, e1)!r} overlap")
    return [(s, e) for _, _, s, e in spans]


def _span(start: time, end: time) -> str:
    close = "24:00" if end == time(0) else end.strftime("%H:%M")
    return f"{start.strftime('%H:%M')}-{close}"


def _dates(item: Any, year: int) -> list[date]:
    if isinstance(item, date) and not isinstance(item, datetime):  # a TOML date literal
        first = last = item
    else:
        m = _DATES.fullmatch(item) if isinstance(item, str) else None
        if m is None:
            raise ValueError("expected \"YYYY-MM-DD\" or a range \"YYYY-MM-DD..YYYY-MM-DD\", "
                             f"got {_show(item)}")
        try:
            first = date.fromisoformat(m.group(1))
            last = date.fromisoformat(m.group(2)) if m.group(2) else first
        except ValueError:
            raise ValueError(f"no such date in {item!r}") from None
        if last < first:
            raise ValueError(f"the range {item!r} ends before it starts")
    for d in (first, last):
        if d.year != year:
            raise ValueError(f"{d.isoformat()} is not in {year}")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _parse_years(raw: Any) -> dict[int, tuple[list[date], list[date]]]:
    if not isinstance(raw, Mapping):
        raise _At((), f"expected tables such as [calendar.years.2027], got {_show(raw)}")
    out: dict[int, tuple[list[date], list[date]]] = {}
    for key, table in raw.items():
        if isinstance(key, int) and not isinstance(key, bool):
            year = key
        elif isinstance(key, str) and re.fullmatch(r"\d{4}", key):
            year = int(key)
        else:
            raise _At((key,), "a year is four digits, such as [calendar.years.2027]")
        if not 1900 <= year <= 2199:
            raise _At((key,), f"year {year} is out of range")
        if isinstance(table, tuple) and len(table) == 2:  # already parsed (built in code)
            table = {"holidays": list(table[0]), "workdays": list(table[1])}
        if not isinstance(table, Mapping):
            raise _At((key,), f"expected a table with holidays and workdays, got {_show(table)}")
        for name in table:
            if name not in ("holidays", "workdays"):
                raise _At((key, name), _unknown(name, ("holidays", "workdays")))
        lists: list[list[date]] = []
        for name in ("holidays", "workdays"):
            items = table.get(name, [])
            if not isinstance(items, list):
                raise _At((key, name), f"expected an array of dates, got {_show(items)}")
            days: set[date] = set()
            for i, item in enumerate(items):
                try:
                    days.update(_dates(item, year))
                except ValueError as e:
                    raise _At((key, name, i), str(e)) from None
            lists.append(sorted(days))
        both = sorted(set(lists[0]) & set(lists[1]))
        if both:
            raise _At((key,), f"{both[0].isoformat()} is listed both as a holiday and a workday")
        if year in out:
            raise _At((key,), f"year {year} is listed twice")
        out[year] = (lists[0], lists[1])
    return dict(sorted(out.items()))


class Calendar(_Table):
    """``[calendar]``: what ``clock = "workdays"`` counts."""

    timezone: str = "Asia/Shanghai"
    office_hours: list[tuple[time, time]] = Field(
        default_factory=lambda: list(DEFAULT_OFFICE_HOURS))
    # year -> (holidays, make-up workdays), each sorted; chinesecalendar covers announced years
    years: dict[int, tuple[list[date], list[date]]] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as "
                             "'Asia/Shanghai')") from None
        return v

    @field_validator("office_hours", mode="before")
    @classmethod
    def _hours(cls, v: Any) -> list[tuple[time, time]]:
        return _parse_hours(v)

    @field_validator("years", mode="before")
    @classmethod
    def _years(cls, v: Any) -> dict[int, tuple[list[date], list[date]]]:
        return _parse_years(v)

    @field_serializer("office_hours")
    def _dump_hours(self, v: list[tuple[time, time]]) -> list[str]:
        return [_span(s, e) for s, e in v]

    @field_serializer("years")
    def _dump_years(self, v: dict[int, tuple[list[date], list[date]]]) -> dict[str, Any]:
        return {str(y): {"holidays": [d.isoformat() for d in h],
                         "workdays": [d.isoformat() for d in w]} for y, (h, w) in v.items()}

    def working_day(self) -> timedelta:
        """The office time of one working day: what ``P1D`` means on the ``workdays`` clock."""
        return timedelta(minutes=sum(_end_minutes(e) - _minutes(s) for s, e in self.office_hours))


# ---- the policy ----


class Insights(_Table):
    """``[insights]``: what the engine does with an insight itself (docs/insights.md)."""

    # 未诉先办: a hotspot raised issues a directive from the place's district to its street
    directive_on_hotspot: bool = False
    directive_ack_within: Window = "P1D"


class Policy(_Table):
    """The whole file. Frozen; ``deadline`` is a dict lookup (it runs on every command)."""

    general: General = Field(default_factory=General, alias="policy")
    stages: Stages = Field(default_factory=Stages)
    insights: Insights = Field(default_factory=Insights)
    categories: dict[str, CategoryOverride] = Field(default_factory=dict)
    calendar: Calendar = Field(default_factory=Calendar)

    # Derived once in model_post_init and kept in the instance __dict__ under underscore names
    # (dict(model) and model_dump skip them): plain attribute reads, several times faster than
    # pydantic's private attributes, which go through __getattr__; deadline() and digest run
    # on every command. _base: (priority, stage) -> length; _table: (category, priority,
    # stage) -> length, for overridden categories only; _dump, _digest, _source.

    def model_post_init(self, context: Any, /) -> None:
        day = (_DAY_US if self.general.clock == "24x7"
               else self.calendar.working_day() // timedelta(microseconds=1))

        def length(iso: str) -> timedelta:
            days, us = parse_duration(iso)
            return timedelta(microseconds=days * day + us)

        base = {(p, s): length(getattr(getattr(self.stages, p), s))
                for p in PRIORITIES for s in STAGES}
        table: dict[tuple[str, str, str], timedelta] = {}
        for code, o in self.categories.items():
            for p in PRIORITIES:
                sub = getattr(o, p)
                for s in STAGES:
                    v = (getattr(sub, s) if sub is not None else None) or getattr(o, s)
                    if v is not None:
                        table[(code, p, s)] = length(v)
        dump = orjson.dumps(self._normalised(), option=orjson.OPT_SORT_KEYS)
        self.__dict__.update(_base=base, _table=table, _dump=dump,
                             _digest=hashlib.sha256(dump).hexdigest()[:12],
                             _source="built-in defaults")

    def _normalised(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        categories = {}
        for code, o in data["categories"].items():
            o = {k: v for k, v in o.items() if v != {}}  # an empty sub-table overrides nothing
            if o:
                categories[code] = o
        data["categories"] = categories
        return data

    # ---- loading ----

    @classmethod
    def load(cls, path: Path | str | None = None) -> Policy:
        """The policy in ``path`` (default: the shipped ``engine/data/policy.toml``)."""
        p = Path(path) if path else DATA
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicyError(p, None, "no such file") from None
        except UnicodeDecodeError as e:
            raise PolicyError(p, None, f"not UTF-8 text (byte {e.start})") from None
        except OSError as e:
            raise PolicyError(p, None, f"cannot read: {e.strerror or e}") from None
        return cls.parse(text, source=str(p))

    @classmethod
    def parse(cls, text: str, source: str = "<text>") -> Policy:
        """The policy in TOML ``text``; ``source`` names it in errors and ``version_label``."""
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise PolicyError(source, None, _toml_problem(e)) from None
        return cls._build(raw, source)

    @classmethod
    def restore(cls, raw: bytes | str) -> Policy:
        """A policy version from its ``dump()`` (kept in the engine's store by digest)."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise PolicyError("<stored version>", None, f"not a policy dump: {e}") from None
        return cls._build(data, "<stored version>")

    @classmethod
    def _build(cls, raw: Any, source: str) -> Policy:
        try:
            policy = cls.model_validate(raw)
        except ValidationError as e:
            raise PolicyError(source, *_problem(e)) from None
        policy.__dict__["_source"] = source
        return policy

    # ---- what the engine asks ----

    @property
    def max_returns(self) -> int:
        return self.general.max_returns

    @property
    def warn_fraction(self) -> float:
        return self.general.warn_fraction

    @property
    def clock(self) -> Literal["24x7", "workdays"]:
        return self.general.clock

    @property
    def merge_window(self) -> timedelta:
        """Wall-clock time (a day is 24 h on either clock); zero turns merging off."""
        return wall_time(self.general.merge_window)

    @property
    def border_distance_m(self) -> float:
        return self.general.border_distance_m

    @property
    def merge_radius_m(self) -> float:
        return self.general.merge_radius_m

    @property
    def hotspot_min_reports(self) -> int:
        return self.general.hotspot_min_reports

    @property
    def hotspot_window(self) -> timedelta:
        """Wall-clock time, as the merge window."""
        return wall_time(self.general.hotspot_window)

    @property
    def directive_on_hotspot(self) -> timedelta | None:
        """How long the street has to acknowledge a 未诉先办 directive; None: none issued."""
        if not self.insights.directive_on_hotspot:
            return None
        return wall_time(self.insights.directive_ack_within) or None

    @property
    def storm_alarms_per_minute(self) -> int:
        return self.general.storm_alarms_per_minute

    def deadline(self, category: str, priority: str, stage: str) -> timedelta:
        """How long ``stage`` may take, as time on the policy's clock (see the module doc)."""
        t = self._table.get((category, priority, stage))
        if t is not None:
            return t
        try:
            return self._base[(priority, stage)]
        except KeyError:
            raise KeyError(f"no deadline for priority {priority!r}, stage {stage!r}") from None

    @property
    def digest(self) -> str:
        """12 hex digits of SHA-256 over the normalised content (``dump()``)."""
        return self._digest

    @property
    def source(self) -> str:
        return self._source

    def version_label(self) -> str:
        return f"policy {self._digest} ({self._source}, clock {self.general.clock})"

    def dump(self) -> bytes:
        """The normalised content: sorted JSON of every value, defaults included."""
        return self._dump

    def categories_missing_from(self, codes: Iterable[str]) -> list[str]:
        """Overridden category codes that are not in ``codes`` (a catalogue's)."""
        known = set(codes)
        return sorted(c for c in self.categories if c not in known)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and other._digest == self._digest

    def __hash__(self) -> int:
        return hash(self._digest)


# ---- one-line problems ----


def _toml_problem(e: tomllib.TOMLDecodeError) -> str:
    """tomllib's message with its position first: 'invalid TOML at line 3, column 7: ...'."""
    msg = str(e)
    m = re.fullmatch(r"(.*) \(at (?:line (\d+), column (\d+)|(end of document))\)", msg, re.S)
    if m is None:
        return f"invalid TOML: {msg}"
    what, line, column, end = m.groups()
    where = "the end of the file" if end else f"line {line}, column {column}"
    return f"invalid TOML at {where}: {what[:1].lower()}{what[1:]}"


def _known(parent: tuple[str | int, ...]) -> tuple[str, ...]:
    """The keys a table at ``parent`` may have, for 'did you mean'."""
    match parent:
        case ():
            return ("policy", "stages", "categories", "calendar")
        case ("policy",):
            return tuple(General.model_fields)
        case ("stages",):
            return PRIORITIES
        case ("stages", _) | ("categories", _, _):
            return STAGES
        case ("categories", _):
            return STAGES + PRIORITIES
        case ("calendar",):
            return tuple(Calendar.model_fields)
    return ()


def _unknown(name: object, known: Iterable[str]) -> str:
    known = tuple(known)
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    return f"unknown key (known: {', '.join(known)})" if known else "unknown key"


_EXPECTED = {
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "model_type": "expected a table",
    "dict_type": "expected a table",
    "list_type": "expected an array",
    "finite_number": "expected a finite number",
}


def _problem(e: ValidationError) -> tuple[str, str]:
    """The first problem as (dotted key, message); a count of the others follows it."""
    errors = e.errors(include_url=False)
    first = errors[0]
    loc: tuple[str | int, ...] = tuple(first["loc"])
    kind = first["type"]
    err = (first.get("ctx") or {}).get("error")
    if isinstance(err, _At):
        loc += err.loc
        msg = err.message
    elif kind == "value_error" and err is not None:
        msg = str(err)
    elif kind == "extra_forbidden":
        msg = _unknown(loc[-1], _known(loc[:-1]))
    elif kind in _EXPECTED:
        msg = f"{_EXPECTED[kind]}, got {_show(first['input'])}"
    else:
        msg = first["msg"].replace("Input should be", "must be")
        msg = f"{msg}, got {_show(first['input'])}"
    if len(errors) > 1:
        n = len(errors) - 1
        msg += f" (and {n} more problem{'s' if n > 1 else ''})"
    return _key(loc), msg


def _key(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else orjson.dumps(part).decode()
            out += f".{text}" if out else text
    return out or "(top level)"
