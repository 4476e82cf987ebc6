"""The operator's policy file: defaults, overrides, digest, one-line errors, calendar."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from datetime import date, time, timedelta
from pathlib import Path
from time import time_ns

import pydantic
import pytest

from engine.data.catalogue import Catalogue
from engine.data.durations import format_duration, parse_duration
from engine.data.policy import (
    DATA,
    PRIORITIES,
    STAGES,
    Policy,
    PolicyError,
)

ROOT = Path(__file__).resolve().parents[2]
H = timedelta(hours=1)
M = timedelta(minutes=1)


def load(tmp_path: Path, text: str, name: str = "policy.toml") -> Policy:
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return Policy.load(f)


# ---- defaults ----


def test_shipped_defaults_load() -> None:
    p = Policy.load()
    assert p.source == str(DATA)
    assert (p.max_returns, p.warn_fraction, p.clock) == (2, 0.8, "24x7")
    assert (p.merge_window, p.border_distance_m) == (2 * H, 200.0)
    assert p.deadline("road_damage", "normal", "triage") == 30 * M
    assert p.deadline("road_damage", "normal", "ack") == 2 * H
    assert p.deadline("road_damage", "normal", "resolve") == timedelta(days=5)
    assert p.deadline("road_damage", "normal", "supervise") == 4 * H
    assert p.deadline("road_damage", "urgent", "resolve") == 2 * H
    assert p.deadline("water_supply", "urgent", "resolve") == timedelta(days=1)
    assert p.deadline("illegal_construction", "normal", "resolve") == timedelta(days=15)
    assert p.deadline("smoke", "urgent", "ack") == 10 * M
    assert p.calendar.timezone == "Asia/Shanghai"
    assert p.calendar.office_hours == [(time(9), time(12, 30)), (time(13, 30), time(17, 30))]
    assert p.calendar.years == {}
    assert set(STAGES) == {"triage", "ack", "resolve", "feedback", "supervise"}
    assert Policy.load(None) == Policy.load("") == p


def test_a_key_left_out_takes_the_shipped_value() -> None:
    """The code's defaults are the shipped file's values (categories are overrides, not
    defaults: an operator's file lists all it wants)."""
    shipped = Policy.load()
    assert Policy(categories=shipped.categories) == shipped
    assert Policy.parse("").dump() == Policy().dump()


def test_every_overridden_category_is_in_the_catalogue() -> None:
    catalogue = Catalogue.load()
    assert Policy.load().categories_missing_from(catalogue.by_code) == []
    assert Policy.parse("[categories.nope]\nack = 'PT1H'\n").categories_missing_from(
        catalogue.by_code) == ["nope"]


def test_shipped_file_keys_say_where_their_numbers_come_from() -> None:
    """Every value line in the shipped file's [policy] and [stages.*] carries a comment."""
    section = ""
    for line in DATA.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            section = line
        elif "=" in line and not line.lstrip().startswith("#") and (
                section == "[policy]" or section.startswith("[stages.")):
            assert "#" in line, f"{section} {line!r} has no source or ASSUMPTION comment"


# ---- overrides ----


def test_overrides_per_stage_priority_and_category(tmp_path: Path) -> None:
    p = load(tmp_path, """
[policy]
max_returns = 0
warn_fraction = 0.5
merge_window = "PT0S"
border_distance_m = 50.5
[stages.normal]
ack = "PT1H"
[categories.smoke]
ack = "PT5M"
[categories.smoke.urgent]
ack = "PT1M"
resolve = "PT20M"
[categories.noise.normal]
resolve = "P2D"
""")
    assert (p.max_returns, p.warn_fraction, p.border_distance_m) == (0, 0.5, 50.5)
    assert p.merge_window == timedelta(0)  # merging off
    assert p.deadline("road_damage", "normal", "ack") == H
    assert p.deadline("road_damage", "normal", "resolve") == timedelta(days=5)  # untouched
    assert p.deadline("road_damage", "urgent", "ack") == 30 * M  # the other table untouched
    assert p.deadline("smoke", "normal", "ack") == 5 * M  # both priorities
    assert p.deadline("smoke", "urgent", "ack") == M  # the priority's sub-table wins
    assert p.deadline("smoke", "urgent", "resolve") == 20 * M
    assert p.deadline("smoke", "normal", "resolve") == timedelta(days=5)
    assert p.deadline("noise", "normal", "resolve") == timedelta(days=2)
    assert p.deadline("noise", "urgent", "resolve") == 2 * H
    with pytest.raises(KeyError, match="priority 'low'"):
        p.deadline("noise", "low", "ack")


def test_on_the_workdays_clock_a_day_is_a_working_day(tmp_path: Path) -> None:
    p = load(tmp_path, """
[policy]
clock = "workdays"
merge_window = "P1D"
[stages.normal]
resolve = "P5D"
ack = "PT2H"
feedback = "P1DT2H"
[calendar]
office_hours = ["13:00-17:00", "08:00-12:00"]
""")
    assert p.calendar.working_day() == 8 * H
    assert p.deadline("x", "normal", "resolve") == 40 * H  # 5 working days of office time
    assert p.deadline("x", "normal", "ack") == 2 * H
    assert p.deadline("x", "normal", "feedback") == 10 * H
    assert p.merge_window == 24 * H  # a grouping window is wall time on either clock
    assert Policy.load().deadline("x", "normal", "resolve") == timedelta(days=5)  # 24x7


def test_frozen_hashable_and_cheap_to_query() -> None:
    p = Policy.load()
    with pytest.raises(pydantic.ValidationError):
        p.general = p.general  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        p.general.max_returns = 9  # type: ignore[misc]
    assert {p: 1}[Policy.load()] == 1
    start = time_ns()
    for _ in range(100_000):  # per command: two dict lookups, no validation (~0.1 µs each)
        p.deadline("smoke", "urgent", "ack")
        p.deadline("road_damage", "normal", "resolve")
    assert time_ns() - start < 1_000_000_000


def test_the_demo_can_scale_the_shipped_policy(tmp_path: Path) -> None:
    from engine.tools.demo import scaled_policy

    p = Policy.load(scaled_policy(600.0, tmp_path / "fast.toml"))
    assert p.deadline("road_damage", "normal", "ack") == timedelta(seconds=12)
    assert p.deadline("smoke", "urgent", "ack") == timedelta(seconds=1)


# ---- digest and stored versions ----

BASE = """
[policy]
warn_fraction = 0.75
[stages.normal]
ack = "PT2H"
resolve = "P5D"
[categories.smoke]
ack = "PT10M"
[calendar.years.2027]
holidays = ["2027-01-01..2027-01-03"]
"""


@pytest.mark.parametrize("same", [
    "# a comment\n" + BASE.replace("\n", "   # why\n"),
    BASE.replace("[stages.normal]\nack = \"PT2H\"\nresolve = \"P5D\"",
                 "[stages.normal]\nresolve = \"P5D\"\nack = \"PT2H\""),
    BASE.replace('ack = "PT2H"', 'ack = "PT120M"'),
    BASE.replace('resolve = "P5D"', 'resolve = "P5DT0H"'),
    BASE.replace('ack = "PT10M"', 'ack = "PT600S"'),
    BASE.replace("[policy]\n", "[policy]\nmax_returns = 2\nclock = '24x7'\n"),
    BASE.replace('"2027-01-01..2027-01-03"', '"2027-01-03", 2027-01-01, "2027-01-02"'),
    BASE + "[categories.noise]\n",  # an empty override changes nothing
    BASE.replace("[stages.normal]", "[stages.urgent]\n[stages.normal]"),
    "\n\n".join(BASE.splitlines()),
])
def test_digest_ignores_comments_layout_and_spelling(tmp_path: Path, same: str) -> None:
    a, b = Policy.parse(BASE), load(tmp_path, same)
    assert a.digest == b.digest and a.dump() == b.dump()
    assert len(a.digest) == 12 and int(a.digest, 16) >= 0


@pytest.mark.parametrize(("old", "new"), [
    ("warn_fraction = 0.75", "warn_fraction = 0.7"),
    ('ack = "PT2H"', 'ack = "PT2H1S"'),
    ('ack = "PT10M"', 'resolve = "PT10M"'),
    ("[categories.smoke]", "[categories.waterlogging]"),
    ("[categories.smoke]", "[categories.smoke.urgent]"),
    ('"2027-01-01..2027-01-03"', '"2027-01-01..2027-01-04"'),
    ("[policy]", "[policy]\nclock = 'workdays'"),
    ("[policy]", "[policy]\nmerge_window = 'PT0S'"),
    ("[policy]", "[calendar]\noffice_hours = ['09:00-12:00']\n[policy]"),
    ('resolve = "P5D"', 'resolve = "PT120H"'),  # 5 days ≠ 120 h on the workdays clock
])
def test_digest_changes_with_any_value(old: str, new: str) -> None:
    assert old in BASE
    assert Policy.parse(BASE).digest != Policy.parse(BASE.replace(old, new)).digest


def test_a_stored_version_restores_to_the_same_policy() -> None:
    p = Policy.parse(BASE + "[categories.noise.urgent]\nresolve = 'PT3H'\n"
                     "[calendar]\noffice_hours = ['09:00-12:00', '18:00-24:00']\n")
    r = Policy.restore(p.dump())
    assert r == p and r.dump() == p.dump() and r.digest == p.digest
    assert r.deadline("noise", "urgent", "resolve") == 3 * H
    assert r.calendar.office_hours == p.calendar.office_hours
    assert r.calendar.years == p.calendar.years
    assert p.digest in p.version_label() and "<text>" in p.version_label()
    assert "stored" in r.version_label()
    with pytest.raises(PolicyError, match="not a policy dump"):
        Policy.restore(b"{")


# ---- durations ----


@pytest.mark.parametrize(("text", "canonical"), [
    ("PT2H", "PT2H"), ("PT120M", "PT2H"), ("PT1.5H", "PT1H30M"), ("P5D", "P5D"),
    ("P1DT2H", "P1DT2H"), ("PT0.5S", "PT0.5S"), ("PT7,25S", "PT7.25S"), ("PT0S", "PT0S"),
    ("P0D", "PT0S"), ("PT90S", "PT1M30S"), ("PT0.001S", "PT0.001S"), ("P2DT36H", "P2DT36H"),
])
def test_iso_durations_normalise(text: str, canonical: str) -> None:
    assert format_duration(*parse_duration(text)) == canonical


@pytest.mark.parametrize(("value", "problem"), [
    ("PT2X", "invalid ISO 8601 duration 'PT2X'"), ("P", "invalid"), ("PT", "invalid"),
    ("P1DT", "invalid"), ("2H", "invalid"), ("pt2h", "invalid"), ("", "invalid"),
    ("PT2H ", "invalid"), ("P1Y", "write days"), ("P1M", "write days"), ("P2W", "write days"),
    ("P1.5D", "fractional days"), ("-PT1H", "negative"), ("P9999D", "ten years"),
    (7200, "ISO 8601 string"), (1.5, "ISO 8601 string"), (True, "ISO 8601 string"),
])
def test_bad_durations_are_refused(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        parse_duration(value)


# ---- errors: one line, naming the file and the key ----

ERRORS = [
    ('[stages.normal]\nack = "PT2X"\n', "stages.normal.ack", "invalid ISO 8601 duration 'PT2X'"),
    ("[stages.normal]\nack = 7200\n", "stages.normal.ack", "ISO 8601 string"),
    ('[stages.urgent]\nresolve = "PT0S"\n', "stages.urgent.resolve", "longer than zero"),
    ('[stages.urgent]\nresolv = "P1D"\n', "stages.urgent.resolv", "did you mean 'resolve'"),
    ('[stages.low]\nack = "P1D"\n', "stages.low", "unknown key"),
    ("[policy]\nwarn_fractoin = 0.5\n", "policy.warn_fractoin", "did you mean 'warn_fraction'"),
    ("[policy]\nwarn_fraction = 1\n", "policy.warn_fraction", "less than 1"),
    ("[policy]\nwarn_fraction = 0\n", "policy.warn_fraction", "greater than 0"),
    ('[policy]\nwarn_fraction = "0.8"\n', "policy.warn_fraction", "expected a number"),
    ("[policy]\nmax_returns = -1\n", "policy.max_returns", "greater than or equal to 0"),
    ('[policy]\nmax_returns = "2"\n', "policy.max_returns", "expected an integer, got string"),
    ("[policy]\nmax_returns = 2.0\n", "policy.max_returns", "expected an integer"),
    ("[policy]\nmax_returns = true\n", "policy.max_returns", "got boolean true"),
    ('[policy]\nclock = "weekdays"\n', "policy.clock", "'24x7' or 'workdays'"),
    ('[policy]\nmerge_window = "-PT1H"\n', "policy.merge_window", "negative"),
    ("[policy]\nborder_distance_m = -5\n", "policy.border_distance_m", "greater than or equal"),
    ("[policy]\nborder_distance_m = nan\n", "policy.border_distance_m", "finite"),
    ("policy = 3\n", "policy", "expected a table, got integer 3"),
    ("[polcy]\nclock = '24x7'\n", "polcy", "did you mean 'policy'"),
    ("[categories.smoke]\nack = 'PT1X'\n", "categories.smoke.ack", "invalid ISO 8601"),
    ("[categories.smoke]\nack = 'PT1H'\nfoo = 1\n", "categories.smoke.foo", "unknown key"),
    ("[categories.smoke.urgnt]\nack = 'PT1H'\n", "categories.smoke.urgnt", "'urgent'"),
    ("[categories.smoke.urgent]\nack = 'P'\n", "categories.smoke.urgent.ack", "invalid"),
    ("[categories.'a b']\nack = 'P'\n", 'categories."a b".ack', "invalid"),
    ("[calendar]\ntimezone = 'Mars/Olympus'\n", "calendar.timezone", "unknown time zone"),
    ("[calendar]\ntimezone = 8\n", "calendar.timezone", "expected a string"),
    ("[calendar]\ncountry = 'CN'\n", "calendar.country", "unknown key"),
    ("[calendar]\noffice_hours = '09:00-17:00'\n", "calendar.office_hours", "an array"),
    ("[calendar]\noffice_hours = []\n", "calendar.office_hours", "at least one"),
    ("[calendar]\noffice_hours = ['9am-5pm']\n", "calendar.office_hours[0]", "HH:MM-HH:MM"),
    ("[calendar]\noffice_hours = ['09:00-12:00', '12:00-12:00']\n",
     "calendar.office_hours[1]", "must end after they start"),
    ("[calendar]\noffice_hours = ['17:00-09:00']\n", "calendar.office_hours[0]", "must end after"),
    ("[calendar]\noffice_hours = ['09:00-25:00']\n", "calendar.office_hours[0]", "no such time"),
    ("[calendar]\noffice_hours = ['13:00-18:00', '09:00-13:30']\n", "calendar.office_hours",
     "'09:00-13:30' and '13:00-18:00' overlap"),
    ("[calendar.years.2027]\nholidays = ['2027-02-30']\n", "calendar.years.2027.holidays[0]",
     "no such date in '2027-02-30'"),
    ("[calendar.years.2027]\nholidays = ['2027-01-01', '27-1-2']\n",
     "calendar.years.2027.holidays[1]", "YYYY-MM-DD"),
    ("[calendar.years.2027]\nworkdays = ['2026-12-31']\n", "calendar.years.2027.workdays[0]",
     "2026-12-31 is not in 2027"),
    ("[calendar.years.2027]\nholidays = ['2027-12-30..2028-01-02']\n",
     "calendar.years.2027.holidays[0]", "2028-01-02 is not in 2027"),
    ("[calendar.years.2027]\nholidays = ['2027-02-10..2027-02-05']\n",
     "calendar.years.2027.holidays[0]", "ends before it starts"),
    ("[calendar.years.2027]\nholidays = ['2027-02-05..2027-02-10']\nworkdays = ['2027-02-07']\n",
     "calendar.years.2027", "2027-02-07 is listed both"),
    ("[calendar.years.2027]\nholidays = '2027-01-01'\n", "calendar.years.2027.holidays",
     "an array"),
    ("[calendar.years.2027]\nholidays = [20270101]\n", "calendar.years.2027.holidays[0]",
     "got integer"),
    ("[calendar.years.2027]\nmakeup = []\n", "calendar.years.2027.makeup", "unknown key"),
    ("[calendar.years.27]\nholidays = []\n", "calendar.years.27", "four digits"),
    ("[calendar.years]\n2027 = ['2027-01-01']\n", "calendar.years.2027", "expected a table"),
]


@pytest.mark.parametrize(("text", "key", "problem"), ERRORS)
def test_each_bad_file_is_one_line_naming_the_file_and_key(
        tmp_path: Path, text: str, key: str, problem: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load(tmp_path, text, "bad.toml")
    e = caught.value
    line = str(e)
    assert "\n" not in line
    assert line.startswith(f"policy file {tmp_path / 'bad.toml'}: {key}: "), line
    assert problem in line, line
    assert (e.path, e.key) == (str(tmp_path / "bad.toml"), key)


def test_more_problems_are_counted_on_the_same_line() -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.parse("[policy]\nmax_returns = -1\nwarn_fraction = 2\nclock = 'x'\n", "f.toml")
    assert str(caught.value).startswith("policy file f.toml: policy.max_returns: ")
    assert str(caught.value).endswith("(and 2 more problems)")


@pytest.mark.parametrize(("text", "where"), [
    ("[policy\n", "invalid TOML at line 1, column 8: "),
    ("[policy]\nclock = \n", "invalid TOML at line 2, column 9: "),
    ("[policy]\nclock = '24x7'\nclock = '24x7'\n", "invalid TOML at line 3"),
    ("[policy]\nclock = \"24x7", "invalid TOML at the end of the file: "),
])
def test_toml_syntax_errors_give_line_and_column(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load(tmp_path, text, "bad.toml")
    line = str(caught.value)
    assert line.startswith(f"policy file {tmp_path / 'bad.toml'}: {where}") and "\n" not in line


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"^policy file .*nope\.toml: no such file$"):
        Policy.load(tmp_path / "nope.toml")
    with pytest.raises(PolicyError, match=r"^policy file .*: cannot read: Is a directory$"):
        Policy.load(tmp_path)
    (tmp_path / "latin1.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        Policy.load(tmp_path / "latin1.toml")


def test_worker_refuses_a_bad_policy_with_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[stages.normal]\nack = "PT2X"\n', encoding="utf-8")
    r = subprocess.run(
        [sys.executable, "-m", "engine.tools.cli", "worker", "--policy", str(bad),
         "--bootstrap", "127.0.0.1:1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stderr.splitlines() == [
        f"policy file {bad}: stages.normal.ack: invalid ISO 8601 duration 'PT2X'"]


def test_worker_refuses_a_bad_topology_with_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "topology.json"
    bad.write_text('{"units": [', encoding="utf-8")
    r = subprocess.run(
        [sys.executable, "-m", "engine.tools.cli", "worker", "--topology", str(bad),
         "--bootstrap", "127.0.0.1:1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    [line] = r.stderr.splitlines()
    assert line.startswith(f"topology file {bad}: invalid JSON")


# ---- calendar ----


def test_calendar_years_ranges_and_toml_dates(tmp_path: Path) -> None:
    p = load(tmp_path, """
[calendar]
timezone = "Asia/Chongqing"
office_hours = ["13:30-17:30", " 08:30 - 12:00 ", "19:00-24:00"]
[calendar.years.2027]
holidays = ["2027-02-05..2027-02-08", 2027-01-01, "2027-02-06", "2027-10-01..2027-10-01"]
workdays = ["2027-02-20"]
[calendar.years.2028]
holidays = []
""")
    c = p.calendar
    assert c.timezone == "Asia/Chongqing"
    assert c.office_hours == [(time(8, 30), time(12)), (time(13, 30), time(17, 30)),
                              (time(19), time(0))]  # sorted; 24:00 is midnight at the end
    assert c.working_day() == timedelta(hours=12, minutes=30)
    holidays, workdays = c.years[2027]
    assert holidays == [date(2027, 1, 1), date(2027, 2, 5), date(2027, 2, 6),
                        date(2027, 2, 7), date(2027, 2, 8), date(2027, 10, 1)]
    assert workdays == [date(2027, 2, 20)]
    assert c.years[2028] == ([], [])  # declared: covered, with no extra days
    assert list(c.years) == [2027, 2028]
    assert Policy.restore(p.dump()).calendar == c


def test_the_calendar_feeds_the_working_time_clock() -> None:
    from engine.core.calendar import build_calendar

    p = Policy.parse("[calendar.years.2027]\nholidays = ['2027-01-04']\n")
    c = p.calendar
    cal = build_calendar("workdays", tz=c.timezone, office_hours=c.office_hours, years=c.years,
                         today=date(2026, 11, 25))
    assert not cal.is_working_day(date(2027, 1, 4))
    assert 2027 not in cal.uncovered_years


def test_the_shipped_example_year_parses() -> None:
    """The commented 2027 example in the shipped file is valid once uncommented."""
    text = DATA.read_text(encoding="utf-8")
    start = text.index("# [calendar.years.2027]")
    example = "\n".join(line.removeprefix("# ") for line in text[start:].splitlines())
    p = Policy.parse(text + "\n" + example)
    assert date(2027, 1, 1) in p.calendar.years[2027][0]
    assert tomllib.loads(example)  # and is TOML on its own


def test_every_stage_has_a_default_for_both_priorities() -> None:
    p = Policy.parse("")
    for priority in PRIORITIES:
        for stage in STAGES:
            assert p.deadline("any", priority, stage) > timedelta(0)
