"""Working-time arithmetic against known cases and a slow, obviously-correct reference."""

from __future__ import annotations

import time as clock
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.calendar import (
    AroundTheClock,
    WorkdayCalendar,
    WorkingTime,
    build_calendar,
)

SH = ZoneInfo("Asia/Shanghai")
OFFICE = [(time(9), time(12)), (time(13, 30), time(17, 30))]
H = timedelta(hours=1)
M = timedelta(minutes=1)
DAY = 7 * H  # one working day of OFFICE

# Hypothetical operator lists for 2027 (not yet announced when written): a test fixture only.
OPS_2027 = (
    [date(2027, 1, 1), *(date(2027, 2, d) for d in range(5, 14))],
    [date(2027, 2, 20)],  # a Saturday worked
)


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


# --- the reference: walk local days, classify each one independently, sum overlaps ---


class Reference:
    """Slow and plain: a day at a time, chinese_calendar.is_workday where it answers."""

    def __init__(self, tz: str, office, holidays=(), workdays=()) -> None:
        self.zone = ZoneInfo(tz)
        self.office = office
        self.holidays = set(holidays)
        self.workdays = set(workdays)

    def working(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            return day.weekday() < 5

    def intervals(self, day: date):
        if not self.working(day):
            return []
        out = []
        for o, c in self.office:
            s = datetime.combine(day, o, tzinfo=self.zone).astimezone(UTC)
            e = datetime.combine(day, c, tzinfo=self.zone).astimezone(UTC)
            out.append((s, e))
        return out

    def between(self, a: datetime, b: datetime) -> timedelta:
        a, b = a.astimezone(UTC), b.astimezone(UTC)  # same-zone datetime arithmetic is wall time
        total = timedelta(0)
        day = a.astimezone(self.zone).date() - timedelta(days=1)
        while day <= b.astimezone(self.zone).date():
            for s, e in self.intervals(day):
                lo, hi = max(s, a), min(e, b)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total

    def add(self, start: datetime, duration: timedelta) -> datetime:
        if duration == timedelta(0):
            return start.astimezone(UTC)
        start = start.astimezone(UTC)
        left = duration
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        while True:
            for s, e in self.intervals(day):
                lo = max(s, start)
                if e <= lo:
                    continue
                if left <= e - lo:
                    return lo + left
                left -= e - lo
            day += timedelta(days=1)


def calendar_and_reference(
    first: int, last: int, tz: str = "Asia/Shanghai", office=OFFICE, holidays=(), workdays=()
):
    cal = WorkdayCalendar(
        tz=tz,
        office_hours=office,
        first_year=first,
        last_year=last,
        extra_holidays=holidays,
        extra_workdays=workdays,
    )
    # The reference knows nothing about the built range: outside it the calendar must match
    # a weekends-only world, so the reference gets the package only inside the range.
    ref = Reference(tz, office, holidays, workdays)
    inner = ref.working

    def working(day: date) -> bool:
        return inner(day) if first <= day.year <= last else day.weekday() < 5

    ref.working = working  # type: ignore[method-assign]
    return cal, ref


PAIRS = {
    "shanghai-2024-2029-ops2027": calendar_and_reference(
        2024, 2029, holidays=OPS_2027[0], workdays=OPS_2027[1]
    ),
    "shanghai-2026-only": calendar_and_reference(2026, 2026),
    "berlin-dst-2025-2027": calendar_and_reference(
        2025, 2027, tz="Europe/Berlin", office=[(time(8), time(12, 15)), (time(13), time(16))]
    ),
}

# --- strategies: instants biased to office boundaries and holiday edges, in mixed zones ---

ZONES = st.sampled_from([UTC, SH, ZoneInfo("Europe/Berlin"), timezone(timedelta(hours=-5))])
EDGE_DAYS = [
    date(2025, 12, 31),
    date(2026, 1, 4),
    date(2026, 2, 13),
    date(2026, 2, 14),
    date(2026, 2, 23),
    date(2026, 2, 28),
    date(2026, 9, 19),
    date(2026, 9, 20),
    date(2026, 9, 24),
    date(2026, 9, 30),
    date(2026, 10, 9),
    date(2026, 10, 10),
    date(2026, 12, 31),
    date(2027, 2, 4),
    date(2027, 2, 20),
    date(2027, 3, 28),
    date(2027, 10, 31),
]
EDGE_TIMES = [
    time(0),
    time(8, 59, 59, 999999),
    time(9),
    time(11, 59),
    time(12),
    time(12, 30),
    time(13, 30),
    time(17, 29, 59),
    time(17, 30),
    time(18),
    time(23, 59, 59),
]

edge_instants = st.builds(
    lambda d, t, shift: datetime.combine(d, t, tzinfo=SH) + timedelta(days=shift),
    st.sampled_from(EDGE_DAYS),
    st.sampled_from(EDGE_TIMES),
    st.integers(-2, 2),
)
any_instants = st.datetimes(datetime(2025, 10, 1), datetime(2027, 12, 31), timezones=ZONES)
instants = st.one_of(edge_instants, any_instants)
durations = st.one_of(
    st.just(timedelta(0)),
    st.sampled_from([M, H, 3 * H, 4 * H, timedelta(hours=6, minutes=30), timedelta(days=1)]),
    st.integers(1, 60 * 24 * 12).map(lambda m: m * M),
    st.timedeltas(timedelta(0), timedelta(days=10)),
)
pairs = st.sampled_from(sorted(PAIRS))

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- known cases ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cal() -> WorkdayCalendar:
    return build_calendar(
        "workdays", tz="Asia/Shanghai", office_hours=OFFICE, years={}, today=date(2026, 11, 25)
    )


def test_package_data_matches_the_dates_used_here() -> None:
    # National Day 2026 is 10-01..07 (10-08 is a Thursday at work), Mid-Autumn 09-25..27,
    # make-up Sundays/Saturdays 09-20 and 10-10; Spring Festival 02-15..23, make-up 02-14, 02-28.
    assert all(not chinese_calendar.is_workday(date(2026, 10, d)) for d in range(1, 8))
    assert chinese_calendar.is_workday(date(2026, 10, 8))
    assert chinese_calendar.is_workday(date(2026, 10, 10))
    assert chinese_calendar.is_workday(date(2026, 9, 20))
    assert not chinese_calendar.is_workday(date(2026, 9, 25))
    assert all(not chinese_calendar.is_workday(date(2026, 2, d)) for d in range(15, 24))
    assert chinese_calendar.is_workday(date(2026, 2, 14))
    assert chinese_calendar.is_workday(date(2026, 2, 28))
    assert chinese_calendar.is_workday(date(2026, 1, 4))


def test_friday_afternoon_complaint_is_due_monday_morning(cal) -> None:
    # Friday 16:00 + 2 working hours: 1.5 h until 17:30, then 0.5 h from Monday 09:00.
    due = cal.add(sh(2026, 3, 13, 16), 2 * H)
    assert due == sh(2026, 3, 16, 9, 30)
    assert due.tzinfo is UTC
    assert cal.between(sh(2026, 3, 13, 16), due) == 2 * H


@pytest.mark.parametrize(
    ("start", "duration", "due"),
    [
        (sh(2026, 3, 14, 10), 1 * H, sh(2026, 3, 16, 10)),  # Saturday: counts from Monday 09:00
        (sh(2026, 3, 16, 7), 0 * H, sh(2026, 3, 16, 7)),  # zero: the start itself
        (sh(2026, 3, 16, 7), 1 * M, sh(2026, 3, 16, 9, 1)),  # before opening
        (sh(2026, 3, 16, 9), 3 * H, sh(2026, 3, 16, 12)),  # ends at closing, not reopening
        (sh(2026, 3, 16, 11, 30), 1 * H, sh(2026, 3, 16, 14)),  # over lunch
        (sh(2026, 3, 16, 12, 45), 1 * H, sh(2026, 3, 16, 14, 30)),  # starts in lunch
        (sh(2026, 3, 16, 9), 7 * H, sh(2026, 3, 16, 17, 30)),  # a day is 7 h
        (sh(2026, 3, 16, 9), 8 * H, sh(2026, 3, 17, 10)),
        (sh(2026, 3, 16, 9), 5 * DAY, sh(2026, 3, 20, 17, 30)),  # a week
        (sh(2026, 9, 30, 17), 1 * H, sh(2026, 10, 8, 9, 30)),  # National Day 10-01..07
        (sh(2026, 10, 9, 17), 1 * H, sh(2026, 10, 10, 9, 30)),  # make-up Saturday 10-10
        (sh(2026, 9, 18, 17), 1 * H, sh(2026, 9, 20, 9, 30)),  # make-up Sunday 09-20
        (sh(2026, 9, 24, 17), 1 * H, sh(2026, 9, 28, 9, 30)),  # Mid-Autumn 09-25..27
        (sh(2026, 2, 13, 17), 1 * H, sh(2026, 2, 14, 9, 30)),  # make-up Saturday before 春节
        (sh(2026, 2, 14, 17), 1 * H, sh(2026, 2, 24, 9, 30)),  # 春节 02-15..23
        (sh(2026, 1, 3, 17), 1 * H, sh(2026, 1, 4, 10)),  # holiday start, make-up Sunday 01-04
        (sh(2025, 12, 31, 17), 1 * H, sh(2026, 1, 4, 9, 30)),  # New Year 01-01..03
        (sh(2026, 12, 31, 17), 1 * H, sh(2027, 1, 1, 9, 30)),  # 2027 uncovered: Friday works
    ],
)
def test_known_deadlines(cal, start, duration, due) -> None:
    assert cal.add(start, duration) == due
    assert cal.between(start, due) == duration


def test_between_known_spans(cal) -> None:
    assert cal.between(sh(2026, 3, 16), sh(2026, 3, 23)) == 5 * DAY
    assert cal.between(sh(2026, 10, 1), sh(2026, 10, 8)) == timedelta(0)  # National Day
    assert cal.between(sh(2026, 10, 10), sh(2026, 10, 11)) == DAY
    assert cal.between(sh(2026, 3, 17), sh(2026, 3, 16)) == timedelta(0)
    assert cal.between(sh(2026, 3, 16, 12), sh(2026, 3, 16, 13, 30)) == timedelta(0)


def test_coverage_and_operator_lists() -> None:
    bare = WorkdayCalendar(office_hours=OFFICE, first_year=2025, last_year=2028)
    assert bare.uncovered_years == {2027, 2028}
    listed = WorkdayCalendar(
        office_hours=OFFICE,
        first_year=2025,
        last_year=2028,
        extra_holidays=OPS_2027[0],
        extra_workdays=OPS_2027[1],
    )
    assert listed.uncovered_years == {2028}
    declared = WorkdayCalendar(
        office_hours=OFFICE, first_year=2025, last_year=2028, listed_years=[2028]
    )
    assert declared.uncovered_years == {2027}
    old = WorkdayCalendar(office_hours=OFFICE, first_year=2001, last_year=2005)
    assert old.uncovered_years == {2001, 2002, 2003}
    # 2027 without lists: weekends only; with lists: the lists.
    assert bare.is_working_day(date(2027, 2, 8))
    assert not listed.is_working_day(date(2027, 2, 8))
    assert not bare.is_working_day(date(2027, 2, 20))
    assert listed.is_working_day(date(2027, 2, 20))
    assert bare.add(sh(2026, 12, 31, 17), H) == sh(2027, 1, 1, 9, 30)
    assert listed.add(sh(2026, 12, 31, 17), H) == sh(2027, 1, 4, 9, 30)
    assert listed.add(sh(2027, 2, 4, 17), H) == sh(2027, 2, 15, 9, 30)
    # Operators win over the package, date by date, in either direction.
    fixed = WorkdayCalendar(
        office_hours=OFFICE,
        first_year=2026,
        last_year=2026,
        extra_holidays=[date(2026, 10, 10)],
        extra_workdays=[date(2026, 10, 1)],
    )
    assert not fixed.is_working_day(date(2026, 10, 10))
    assert fixed.is_working_day(date(2026, 10, 1))
    assert fixed.is_working_day(date(2026, 9, 20))  # the package still holds elsewhere
    both = WorkdayCalendar(
        office_hours=OFFICE,
        first_year=2026,
        last_year=2026,
        extra_holidays=[date(2026, 3, 14)],
        extra_workdays=[date(2026, 3, 14)],
    )
    assert both.is_working_day(date(2026, 3, 14))  # a listed make-up day wins


def test_build_calendar() -> None:
    clock24 = build_calendar(
        "24x7", tz="Asia/Shanghai", office_hours=OFFICE, years={}, today=date(2026, 11, 25)
    )
    assert isinstance(clock24, AroundTheClock) and clock24.kind == "24x7"
    wd = build_calendar(
        "workdays",
        tz="Asia/Shanghai",
        office_hours=OFFICE,
        years={2027: OPS_2027, 2028: ([], [])},
        today=date(2026, 11, 25),
    )
    assert isinstance(wd, WorkdayCalendar) and wd.kind == "workdays"
    assert (wd.first_year, wd.last_year) == (2024, 2029)
    assert wd.uncovered_years == {2029}  # 2028 declared (empty lists) counts as covered
    assert not wd.is_working_day(date(2027, 2, 8))
    narrow = build_calendar(
        "workdays",
        tz="Asia/Shanghai",
        office_hours=OFFICE,
        years={},
        today=date(2026, 1, 1),
        span=(0, 0),
    )
    assert (narrow.first_year, narrow.last_year) == (2026, 2026)
    with pytest.raises(ValueError, match="clock"):
        build_calendar(
            "9x5", tz="Asia/Shanghai", office_hours=OFFICE, years={}, today=date(2026, 1, 1)
        )


def test_bad_inputs_are_refused(cal) -> None:
    with pytest.raises(ValueError, match="aware"):
        cal.add(datetime(2026, 3, 16, 9), H)
    with pytest.raises(ValueError, match="aware"):
        cal.between(sh(2026, 3, 16), datetime(2026, 3, 17))
    with pytest.raises(ValueError, match="aware"):
        AroundTheClock().add(datetime(2026, 3, 16, 9), H)
    with pytest.raises(ValueError, match="negative"):
        cal.add(sh(2026, 3, 16, 9), -H)
    for office in ([], [(time(12), time(9))], [(time(9), time(12)), (time(11), time(13))]):
        with pytest.raises(ValueError):
            WorkdayCalendar(office_hours=office, first_year=2026, last_year=2026)
    with pytest.raises(ValueError):
        WorkdayCalendar(office_hours=OFFICE, first_year=2027, last_year=2026)


def test_beyond_the_range_never_raises_and_counts_weekdays(cal) -> None:
    # Far after and far before the built 2024..2029: weekends only, closed form, no loop.
    assert cal.add(sh(2040, 3, 16, 9), 3 * H) == sh(2040, 3, 16, 12)  # a Friday
    assert cal.add(sh(2040, 3, 16, 17), H) == sh(2040, 3, 19, 9, 30)
    assert cal.add(sh(2010, 1, 1, 17), H) == sh(2010, 1, 4, 9, 30)  # 2010-01-01 a Friday
    later = cal.add(sh(2026, 3, 16, 9), 260 * 20 * DAY)  # 20 years of work
    assert later.year >= 2045
    assert cal.between(sh(2026, 3, 16, 9), later) == 260 * 20 * DAY
    start = cal.add(sh(2029, 12, 31, 17), timedelta(0))
    assert cal.add(start, H) == sh(2030, 1, 1, 9, 30)  # the continuation has no holidays
    assert cal.between(sh(2023, 12, 29, 17), sh(2024, 1, 2, 9, 30)) == H  # 2024-01-01 off
    big = cal.add(sh(2026, 3, 16, 9), timedelta(days=365 * 300))
    assert big.year > 2300


def test_chinesecalendar_later_years_do_not_raise() -> None:
    cal = WorkdayCalendar(office_hours=OFFICE, first_year=2026, last_year=2040)
    assert set(range(2027, 2041)) <= cal.uncovered_years
    assert cal.add(sh(2035, 6, 1, 9), 10 * H) > sh(2035, 6, 1, 9)


def test_around_the_clock() -> None:
    c = AroundTheClock()
    a = sh(2026, 10, 1, 3)
    assert c.add(a, 2 * H) == sh(2026, 10, 1, 5) and c.add(a, H).tzinfo is UTC
    assert c.between(a, sh(2026, 10, 2, 3)) == timedelta(days=1)
    assert c.between(sh(2026, 10, 2), a) == timedelta(0)
    assert c.shift(sh(2026, 10, 2), a, a + 5 * H) == sh(2026, 10, 2, 5)
    assert c.at_fraction(a, a + 10 * H, 0.8) == a + 8 * H


def test_shift_known_cases(cal) -> None:
    due = sh(2026, 3, 17, 10)  # Tuesday 10:00
    # Paused Monday 16:00 (2.5 working hours left), resumed Thursday 09:00: Thursday 11:30.
    assert cal.shift(due, sh(2026, 3, 16, 16), sh(2026, 3, 19, 9)) == sh(2026, 3, 19, 11, 30)
    # A pause over a weekend moves nothing.
    fri = sh(2026, 3, 23, 10)
    assert cal.shift(fri, sh(2026, 3, 20, 18), sh(2026, 3, 23, 8)) == fri
    # Paused after the due: already late, unchanged.
    assert cal.shift(due, sh(2026, 3, 17, 11), sh(2026, 3, 20, 9)) == due
    # A pause across National Day costs no working time.
    d = sh(2026, 10, 8, 10)
    assert cal.shift(d, sh(2026, 9, 30, 18), sh(2026, 10, 8, 9)) == d
    # A due outside office hours is never pulled earlier.
    late = sh(2026, 3, 16, 19)
    assert cal.shift(late, sh(2026, 3, 16, 17, 45), sh(2026, 3, 16, 18)) == late


def test_at_fraction(cal) -> None:
    start, due = sh(2026, 3, 13, 16), sh(2026, 3, 16, 9, 30)  # 2 working hours
    assert cal.at_fraction(start, due, 0.5) == sh(2026, 3, 13, 17)
    assert cal.at_fraction(start, due, 0.8) == sh(2026, 3, 16, 9, 6)
    assert cal.at_fraction(start, due, 1.0) == due
    assert cal.at_fraction(start, due, 0.0) == start
    with pytest.raises(ValueError):
        cal.at_fraction(start, due, 1.5)


def test_fast_enough(cal) -> None:
    # Generous bounds: a day loop per call or a rebuild per call would blow through them.
    t0 = clock.perf_counter()
    WorkdayCalendar(office_hours=OFFICE, first_year=2024, last_year=2029)
    assert clock.perf_counter() - t0 < 1.0
    start, step = sh(2026, 1, 5, 8), timedelta(minutes=7)
    t0 = clock.perf_counter()
    for i in range(20_000):
        cal.add(start + i * step, timedelta(days=3, minutes=i % 600))
    assert (clock.perf_counter() - t0) / 20_000 < 50e-6


# --- properties ----------------------------------------------------------------------------


@FAST
@given(pairs, instants, durations)
def test_add_agrees_with_reference(name, start, duration) -> None:
    cal, ref = PAIRS[name]
    got = cal.add(start, duration)
    assert got == ref.add(start, duration)
    assert got.tzinfo is UTC


@FAST
@given(pairs, instants, instants)
def test_between_agrees_with_reference(name, a, b) -> None:
    cal, ref = PAIRS[name]
    got = cal.between(a, b)
    assert got == (ref.between(a, b) if b > a else timedelta(0))
    assert got >= timedelta(0)


@FAST
@given(pairs, instants, durations)
def test_between_inverts_add(name, start, duration) -> None:
    cal, _ = PAIRS[name]
    due = cal.add(start, duration)
    assert due >= start
    assert cal.between(start, due) == duration
    if duration > timedelta(0):
        # Counting starts at the next opening: nothing before it, and the due is the
        # earliest instant with that much work (a microsecond earlier falls short).
        assert cal.between(start, due - timedelta(microseconds=1)) < duration
        assert cal.add(start, duration) == cal.add(cal.add(start, timedelta(0)), duration)


@FAST
@given(pairs, instants, instants)
def test_add_of_between_is_the_earliest_equal_instant(name, a, b) -> None:
    cal, _ = PAIRS[name]
    a, b = min(a, b), max(a, b)
    back = cal.add(a, cal.between(a, b))
    assert a <= back <= b
    assert cal.between(back, b) == timedelta(0)


@FAST
@given(pairs, instants, instants, durations, durations)
def test_monotone(name, a1, a2, d1, d2) -> None:
    cal, _ = PAIRS[name]
    a1, a2 = min(a1, a2), max(a1, a2)
    d1, d2 = min(d1, d2), max(d1, d2)
    assert cal.add(a1, d1) <= cal.add(a2, d1)
    assert cal.add(a1, d1) <= cal.add(a1, d2)
    assert cal.between(a1, a2) <= cal.between(a1, a2 + d2)


@FAST
@given(pairs, instants, durations, durations)
def test_add_is_additive(name, a, d1, d2) -> None:
    cal, _ = PAIRS[name]
    assert cal.add(cal.add(a, d1), d2) == cal.add(a, d1 + d2)


@FAST
@given(pairs, instants, instants, instants)
def test_between_is_additive(name, a, b, c) -> None:
    cal, _ = PAIRS[name]
    a, b, c = sorted([a, b, c])
    assert cal.between(a, b) + cal.between(b, c) == cal.between(a, c)


@FAST
@given(pairs, instants, durations, instants, durations)
def test_shift_keeps_the_remaining_working_time(name, start, d, paused_from, pause) -> None:
    cal, ref = PAIRS[name]
    due = cal.add(start, d)
    resumed_at = paused_from + pause
    moved = cal.shift(due, paused_from, resumed_at)
    assert moved >= due
    if paused_from >= due or pause == timedelta(0):
        assert moved == due
        return
    # The work left when paused is left again when resumed, and the due moved by exactly the
    # working time inside the pause.
    assert cal.between(resumed_at, moved) == cal.between(paused_from, due)
    assert moved == max(due, ref.add(resumed_at, ref.between(paused_from, due)))
    if d > timedelta(0):
        assert cal.between(due, moved) == cal.between(paused_from, resumed_at)


@FAST
@given(pairs, instants, durations, st.floats(0, 1))
def test_at_fraction_is_a_fraction_of_working_time(name, start, d, fraction) -> None:
    cal, _ = PAIRS[name]
    due = cal.add(start, d)
    warn = cal.at_fraction(start, due, fraction)
    assert start.astimezone(UTC) <= warn <= due
    assert cal.between(start, warn) == d * fraction


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([AroundTheClock(), PAIRS["shanghai-2026-only"][0]]), instants, durations)
def test_protocol_contract(cal: WorkingTime, start, d) -> None:
    assert cal.kind in {"24x7", "workdays"}
    # Compare in UTC: == across zones is False for an ambiguous (DST fold) wall time.
    assert cal.add(start, timedelta(0)) == start.astimezone(UTC)
    assert cal.between(start, cal.add(start, d)) == d
