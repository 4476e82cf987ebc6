"""Working time: when a deadline of N working hours/days falls due, and how much is left.

Chinese governance centres count SLA time in office hours on working days, and working days
are not simply Monday to Friday: the State Council moves holidays (放假) and makes some
weekends working days (调休上班) each year. `chinesecalendar` carries the announced years,
operators list the years it does not know yet (2027's days arrive before the package does),
and a year known to neither falls back to weekends only, reported in `uncovered_years` so the
caller can warn loudly instead of silently guessing.

The module is pure: no clock reads, no I/O beyond importing the package's tables. Deadline
arithmetic runs on every command, so a calendar precomputes the working intervals of its whole
range once, as integer UTC epoch *microseconds* (integers make `between(a, add(a, d)) == d`
exact, which floats of epoch seconds do not), with prefix sums of their lengths; `add` and
`between` are then two bisections, not a walk over days. Outside the built range the calendar
continues with weekends-only days in closed form: no loop, and nothing raises short of a
deadline past datetime.max.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from chinese_calendar import constants as _cc

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000

# The package's own coverage rule (utils._validate_date): min..max year of its holiday table.
PACKAGE_YEARS = range(min(_cc.holidays).year, max(_cc.holidays).year + 1)
_PKG_HOLIDAYS: frozenset[date] = frozenset(_cc.holidays)
_PKG_WORKDAYS: frozenset[date] = frozenset(_cc.workdays)


def _aware(dt: datetime, name: str) -> None:
    if dt.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {dt.isoformat()}")


def _to_us(dt: datetime) -> int:
    return (dt - EPOCH) // _US


def _from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


class WorkingTime(Protocol):
    """How deadlines count time: around the clock, or office hours on working days."""

    kind: str

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant when `duration` of working time has elapsed from `start` (UTC)."""
        ...

    def between(self, a: datetime, b: datetime) -> timedelta:
        """Working time in [a, b); zero if b <= a."""
        ...

    def shift(self, due: datetime, paused_from: datetime, resumed_at: datetime) -> datetime:
        """`due` moved by the working time inside a suspension: a paused clock stops.

        The working time left at the pause is granted again from the resumption. A pause that
        starts at or after `due` (already late) or is empty leaves `due` unchanged, and the
        result is never earlier than `due` (a due outside office hours is not pulled back).
        """
        for name, dt in (("due", due), ("paused_from", paused_from), ("resumed_at", resumed_at)):
            _aware(dt, name)
        # Compare in UTC: datetimes sharing a tzinfo compare by wall clock, wrong across DST.
        due, paused_from = due.astimezone(UTC), paused_from.astimezone(UTC)
        resumed_at = resumed_at.astimezone(UTC)
        if paused_from >= due or resumed_at <= paused_from:
            return due
        return max(self.add(resumed_at, self.between(paused_from, due)), due)

    def at_fraction(self, start: datetime, due: datetime, fraction: float) -> datetime:
        """The instant `fraction` of the working time from `start` to `due` has elapsed.

        The reminder (催办) point: warning at 80 % of a stage's time means 80 % of its
        working time, not of its wall-clock span.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be within [0, 1], got {fraction}")
        return self.add(start, self.between(start, due) * fraction)


class AroundTheClock(WorkingTime):
    """24x7: every instant counts (emergencies, utilities, or a policy that wants wall time)."""

    kind = "24x7"

    def add(self, start: datetime, duration: timedelta) -> datetime:
        _aware(start, "start")
        # Convert first: adding to a zoned datetime is wall-clock arithmetic (wrong over DST).
        return start.astimezone(UTC) + duration

    def between(self, a: datetime, b: datetime) -> timedelta:
        _aware(a, "a")
        _aware(b, "b")
        return max(b.astimezone(UTC) - a.astimezone(UTC), timedelta(0))

    def __repr__(self) -> str:
        return "AroundTheClock()"


def _office_us(office_hours: Sequence[tuple[time, time]]) -> tuple[tuple[int, int], ...]:
    """Office hours as (open, close) microseconds after local midnight, validated."""
    spans: list[tuple[int, int]] = []
    for opening, closing in office_hours:
        if opening.tzinfo is not None or closing.tzinfo is not None:
            raise ValueError("office hours are local wall-clock times: give naive times")
        o = ((opening.hour * 60 + opening.minute) * 60 + opening.second) * 1_000_000
        o += opening.microsecond
        c = ((closing.hour * 60 + closing.minute) * 60 + closing.second) * 1_000_000
        c += closing.microsecond
        if closing == time(0):
            c = _DAY_US  # (x, 00:00) means "until midnight"
        if c <= o:
            raise ValueError(f"office interval {opening}-{closing} is empty or reversed")
        if spans and o < spans[-1][1]:
            raise ValueError("office intervals must be sorted and must not overlap")
        spans.append((o, c))
    if not spans:
        raise ValueError("a workdays calendar needs at least one office interval")
    return tuple(spans)


class WorkdayCalendar(WorkingTime):
    """Office hours on Chinese working days, precomputed over [first_year, last_year].

    A day is a working day if an operator lists it as a make-up workday, else not if an
    operator lists it as a holiday; else, in a year the package covers, if the package lists it
    as a make-up workday, else not if the package lists it as a holiday; else if it is Monday
    to Friday. Operators therefore win over the package date by date, and a make-up workday
    wins over a holiday listed for the same date. Beyond the range: Monday to Friday.
    """

    kind = "workdays"

    def __init__(
        self,
        *,
        tz: str = "Asia/Shanghai",
        office_hours: Sequence[tuple[time, time]],
        first_year: int,
        last_year: int,
        extra_holidays: Iterable[date] = (),
        extra_workdays: Iterable[date] = (),
        listed_years: Iterable[int] = (),
    ) -> None:
        """`listed_years`: years the operator declared even with empty lists (still covered)."""
        if last_year < first_year:
            raise ValueError(f"last_year {last_year} is before first_year {first_year}")
        self.tz = tz
        self.zone = ZoneInfo(tz)
        self.first_year = first_year
        self.last_year = last_year
        self.office = _office_us(office_hours)
        self._daily = sum(c - o for o, c in self.office)
        self.extra_holidays: frozenset[date] = frozenset(extra_holidays)
        self.extra_workdays: frozenset[date] = frozenset(extra_workdays)
        listed = (
            set(listed_years)
            | {d.year for d in self.extra_holidays}
            | {d.year for d in self.extra_workdays}
        )
        years = range(first_year, last_year + 1)
        self.uncovered_years: frozenset[int] = frozenset(
            y for y in years if y not in PACKAGE_YEARS and y not in listed
        )
        self._build()

    def is_working_day(self, day: date) -> bool:
        """The day classification (see the class docstring); weekends-only outside the range."""
        if not self.first_year <= day.year <= self.last_year:
            return day.weekday() < 5
        return self._classify(day)

    def _classify(self, day: date) -> bool:
        if day in self.extra_workdays:
            return True
        if day in self.extra_holidays:
            return False
        if day.year in PACKAGE_YEARS:
            if day in _PKG_WORKDAYS:
                return True
            if day in _PKG_HOLIDAYS:
                return False
        return day.weekday() < 5

    def _local_us(self, day: date, offset_us: int) -> int:
        """UTC epoch µs of local wall time `offset_us` after midnight of `day`."""
        local = datetime.combine(day, time(0), tzinfo=self.zone) + timedelta(microseconds=offset_us)
        # Wall-clock addition in zoneinfo keeps the tzinfo; the offset is resolved per instant.
        return _to_us(local)

    def _build(self) -> None:
        first = date(self.first_year, 1, 1)
        end = date(self.last_year + 1, 1, 1)
        starts: list[int] = []
        ends: list[int] = []
        cum: list[int] = []  # working µs before interval i
        cum_end: list[int] = []  # working µs up to the end of interval i
        total = 0
        for ordinal in range(first.toordinal(), end.toordinal()):
            day = date.fromordinal(ordinal)
            if not self._classify(day):
                continue
            for o, c in self.office:
                s, e = self._local_us(day, o), self._local_us(day, c)
                if e <= s:  # a DST jump swallowed the interval
                    continue
                starts.append(s)
                ends.append(e)
                cum.append(total)
                total += e - s
                cum_end.append(total)
        self._starts, self._ends, self._cum, self._cum_end = starts, ends, cum, cum_end
        self._total = total
        self._range_start = self._local_us(first, 0)
        self._range_end = self._local_us(end, 0)
        self._f_start = self._weekly_work(self._naive_us_of_day(first))
        self._f_end = self._weekly_work(self._naive_us_of_day(end))

    # --- weekends-only continuation, in local wall-clock µs since 0001-01-01 (a Monday) ---

    @staticmethod
    def _naive_us_of_day(day: date) -> int:
        return (day.toordinal() - 1) * _DAY_US

    def _naive_of(self, us: int) -> int:
        local = _from_us(us).astimezone(self.zone)
        return self._naive_us_of_day(local.date()) + (
            ((local.hour * 60 + local.minute) * 60 + local.second) * 1_000_000 + local.microsecond
        )

    def _utc_of_naive(self, naive: int) -> int:
        days, offset = divmod(naive, _DAY_US)
        return self._local_us(date.fromordinal(days + 1), offset)

    def _weekly_work(self, naive: int) -> int:
        """Working µs from 0001-01-01 00:00 to `naive` if every Monday-Friday were working."""
        days, offset = divmod(naive, _DAY_US)
        weeks, dow = divmod(days, 7)
        work = weeks * 5 * self._daily + min(dow, 5) * self._daily
        if dow < 5:
            for o, c in self.office:
                if offset <= o:
                    break
                work += min(offset, c) - o
        return work

    def _weekly_inverse(self, work: int) -> int:
        """The earliest naive instant at which `_weekly_work` reaches `work` (> 0)."""
        q = (work - 1) // self._daily  # index of the working day where it is reached
        weeks, k = divmod(q, 5)
        rest = work - q * self._daily  # 1 .. daily
        for o, c in self.office:
            if rest <= c - o:
                return (weeks * 7 + k) * _DAY_US + o + rest
            rest -= c - o
        raise AssertionError("unreachable: rest <= daily")

    # --- the working-time coordinate W(t): working µs from the range start to t ---

    def _work_at(self, t: int) -> int:
        if t < self._range_start:
            return self._weekly_work(self._naive_of(t)) - self._f_start
        if t >= self._range_end:
            return self._total + self._weekly_work(self._naive_of(t)) - self._f_end
        i = bisect_right(self._starts, t) - 1
        if i < 0:
            return 0
        return self._cum[i] + min(t, self._ends[i]) - self._starts[i]

    def _instant_of(self, work: int) -> int:
        """The earliest instant t with W(t) == work."""
        if work > self._total:
            return self._utc_of_naive(self._weekly_inverse(self._f_end + work - self._total))
        if work <= 0:
            return self._utc_of_naive(self._weekly_inverse(self._f_start + work))
        j = bisect_left(self._cum_end, work)
        return self._starts[j] + work - self._cum[j]

    def add_us(self, start: int, duration: int) -> int:
        """`add` on UTC epoch microseconds: the hot path for timer indexes."""
        if duration <= 0:
            if duration < 0:
                raise ValueError("a working-time duration cannot be negative")
            return start
        # _work_at and _instant_of inlined for the in-range case: this runs per command.
        starts = self._starts
        if self._range_start <= start < self._range_end:
            i = bisect_right(starts, start) - 1
            work = (
                duration
                if i < 0
                else (self._cum[i] + min(start, self._ends[i]) - starts[i] + duration)
            )
        else:
            work = self._work_at(start) + duration
        if 0 < work <= self._total:
            j = bisect_left(self._cum_end, work)
            return starts[j] + work - self._cum[j]
        return self._instant_of(work)

    def between_us(self, a: int, b: int) -> int:
        """`between` on UTC epoch microseconds."""
        if b <= a:
            return 0
        return self._work_at(b) - self._work_at(a)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """Counting starts at the next opening when `start` is outside office hours.

        A deadline that ends exactly at a closing time is that closing time (12:00, not the
        13:30 reopening). `add(start, 0)` is `start` itself.
        """
        _aware(start, "start")
        return _from_us(self.add_us(_to_us(start), duration // _US))

    def between(self, a: datetime, b: datetime) -> timedelta:
        _aware(a, "a")
        _aware(b, "b")
        return timedelta(microseconds=self.between_us(_to_us(a), _to_us(b)))

    def __repr__(self) -> str:
        return (
            f"WorkdayCalendar(tz={self.tz!r}, years={self.first_year}..{self.last_year}, "
            f"uncovered={sorted(self.uncovered_years)})"
        )


def build_calendar(
    clock: str,
    *,
    tz: str,
    office_hours: Sequence[tuple[time, time]],
    years: dict[int, tuple[list[date], list[date]]],
    today: date,
    span: tuple[int, int] = (-2, 3),
) -> WorkingTime:
    """The policy's clock: `years` maps a year to its operator-listed (holidays, make-up days).

    The range is relative to `today` (passed in: the core never reads a clock) so that
    running cases from past years and deadlines well into next years stay in the fast path.
    """
    if clock == "24x7":
        return AroundTheClock()
    if clock != "workdays":
        raise ValueError(f"clock must be '24x7' or 'workdays', got {clock!r}")
    return WorkdayCalendar(
        tz=tz,
        office_hours=office_hours,
        first_year=today.year + span[0],
        last_year=today.year + span[1],
        extra_holidays=[d for holidays, _ in years.values() for d in holidays],
        extra_workdays=[d for _, workdays in years.values() for d in workdays],
        listed_years=years.keys(),
    )
