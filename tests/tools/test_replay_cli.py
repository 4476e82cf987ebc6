"""``zhida replay`` without a broker: the argument checks, what is kept of the recorded log,
the retention check, the orchestration over the pure core, and the table and JSON it writes
(engine/tools/ops/replay.py, replay_report.py). The real broker: tests/integration/test_replay.py.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from engine.core import Accepted, World, apply, decide
from engine.core.directive import DirectiveState
from engine.core.model import (
    CaseEvent,
    CaseState,
    Command,
    DirectiveExpire,
    DirectiveUpdate,
    Expire,
    GroupOpen,
    IssueDirective,
)
from engine.core.sla import next_timer
from engine.data.policy import Policy
from engine.runtime.store import DIRECTIVE_IDS, dump, pack
from engine.runtime.storekeys import directive_key, event_key
from engine.tools.cli import main, parser
from engine.tools.ops import replay_report as report
from engine.tools.ops.common import OpsError
from engine.tools.ops.replay import (
    OPEN_MARK,
    Period,
    Progress,
    Recorded,
    candidate_policy,
    check_unit,
    dates,
    decide_again,
    missing_inputs,
    period,
)
from schemas.codec import encode
from schemas.inbound import Directive, UnitUpdate
from tests.support.helpers import CITY, DISTRICT, STREET, T0, open_cmd, update_cmd

SHANGHAI = "Asia/Shanghai"
TZ = ZoneInfo(SHANGHAI)
NOWHERE = "127.0.0.1:1"
DAY = date(2026, 11, 23)  # T0 is 17:00 that day in Shanghai
POLICY = """
[policy]
warn_fraction = 0.5
clock = "24x7"
merge_window = "PT0S"
[stages.normal]
ack = "PT1H"
resolve = "PT6H"
feedback = "PT2H"
supervise = "PT3H"
"""
TIGHTER = POLICY.replace('ack = "PT1H"', 'ack = "PT5M"')


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    return lines[0]


def the_period(now: datetime = T0 + timedelta(hours=2)) -> Period:
    return period(DAY, DAY + timedelta(days=1), SHANGHAI, now)


# ---- the arguments ----


@pytest.mark.parametrize(("start", "end", "says"), [
    ("2026-13-01", "2026-12-02", "--from: not a date"),
    ("2026-12-01", "tomorrow", "--to: not a date"),
    ("2026-12-01", "2026-12-01", "is empty"),
    ("2026-12-02", "2026-12-01", "is reversed"),
])
def test_bad_dates_are_one_line_exit_2(start: str, end: str, says: str) -> None:
    with pytest.raises(OpsError) as e:
        dates(start, end)
    assert e.value.code == 2 and says in str(e.value) and "\n" not in str(e.value)


def test_the_period_is_local_days_and_the_clock_stops_at_its_end_or_now() -> None:
    p = period(date(2026, 11, 1), date(2026, 12, 1), SHANGHAI, datetime(2027, 1, 1, tzinfo=UTC))
    assert p.since == datetime(2026, 10, 31, 16, tzinfo=UTC)  # midnight in Shanghai
    assert p.until == p.ends == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert p.last_day == date(2026, 11, 30)
    now = datetime(2026, 11, 10, 3, tzinfo=UTC)
    assert period(date(2026, 11, 1), date(2026, 12, 1), SHANGHAI, now).until == now
    assert p.opens(p.since) and not p.opens(p.ends)
    with pytest.raises(OpsError, match="has not begun"):
        period(date(2027, 2, 1), date(2027, 3, 1), SHANGHAI, now)


def test_an_unknown_unit_and_a_bad_policy_file_are_one_line(tmp_path: Path,
                                                             world: World) -> None:
    with pytest.raises(OpsError, match="unknown unit '999999'") as e:
        check_unit("999999", world.topology)
    assert e.value.code == 2
    assert check_unit(DISTRICT, world.topology) == DISTRICT
    bad = tmp_path / "candidate.toml"
    bad.write_text('[stages.normal]\nack = "soon"\n', encoding="utf-8")
    with pytest.raises(OpsError) as e:
        candidate_policy(bad)
    assert e.value.code == 2 and str(bad) in str(e.value) and "stages.normal.ack" in str(e.value)
    with pytest.raises(OpsError, match="no such file"):
        candidate_policy(tmp_path / "missing.toml")
    assert candidate_policy(None) is None


def test_the_flags_name_their_defaults_and_variables() -> None:
    sub = next(a for a in parser()._actions if a.dest == "command")
    r = sub.choices["replay"]  # type: ignore[attr-defined]
    flags = {a.option_strings[0]: a for a in r._actions if a.option_strings}
    assert {"--from", "--to", "--policy", "--unit", "--json", "--bootstrap",
            "--connect-timeout"} <= set(flags)
    assert flags["--from"].required and flags["--to"].required
    assert "ZHIDA_BOOTSTRAP" in flags["--bootstrap"].help
    assert "ZHIDA_CONNECT_TIMEOUT" in flags["--connect-timeout"].help
    assert "default" in flags["--unit"].help and "default" in flags["--policy"].help


@pytest.mark.parametrize(("args", "says"), [
    (["--from", "2026-11-31", "--to", "2026-12-01"], "not a date"),
    (["--from", "2026-12-01", "--to", "2026-11-01"], "reversed"),
    (["--from", "2026-11-01", "--to", "2026-12-01", "--unit", "nope"], "unknown unit"),
    (["--from", "2026-11-01", "--to", "2026-12-01", "--json", "/no/such/dir/x.json"],
     "no such directory"),
    (["--from", "2026-11-01", "--to", "2026-12-01", "--connect-timeout", "1"],
     "cannot reach the Kafka brokers"),
])
def test_the_command_fails_in_one_line_with_exit_2(args: list[str], says: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", *args, "--bootstrap", NOWHERE]) == 2
    err = capsys.readouterr()
    assert says in one_line(err.err) and err.out == ""


def test_a_bad_candidate_file_names_itself(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text("[policy\n", encoding="utf-8")
    assert main(["replay", "--from", "2026-11-01", "--to", "2026-12-01", "--policy", str(bad),
                 "--bootstrap", NOWHERE]) == 2
    assert one_line(capsys.readouterr().err).startswith(f"policy file {bad}:")


# ---- what is kept of the log ----


def test_a_case_opened_in_the_period_is_kept_with_every_later_command() -> None:
    rec = Recorded(the_period())
    inside = open_cmd("c-in", at=T0)
    before = open_cmd("c-before", at=T0 - timedelta(days=1))
    forwarded = Command(aggregate="g|x", at=T0, body=GroupOpen(open=inside.body, case_id="c-g"))
    log = [before, inside, forwarded, update_cmd("ack", STREET, "c-in", at=T0),
           update_cmd("ack", STREET, "c-before", at=T0),
           update_cmd("ack", STREET, "c-other", at=T0)]
    assert OPEN_MARK in encode(inside)
    for offset, cmd in enumerate(log):
        rec.command(0, offset, cmd.aggregate.encode(), encode(cmd))
    rec.command(0, 9, b"c-in", b"not json but the key is kept")
    assert rec.opened == {"c-in"}
    assert [(c.aggregate, c.body.kind) for c in rec.commands[0]] == [("c-in", "open"),
                                                                    ("c-in", "update")]
    assert rec.unreadable == 1 and rec.count() == 2


def test_a_repeated_open_of_an_older_case_is_left_out() -> None:
    rec = Recorded(the_period())
    rec.command(0, 0, b"c1", encode(open_cmd("c1", at=T0)))
    rec.events["c1"] = [CaseEvent(case_id="c1", seq=1, type="created", state="received",
                                  unit=STREET, at=T0 - timedelta(days=3))]
    assert rec.drop_opened_before() == 1
    assert rec.opened == set() and rec.commands == {0: []} and rec.events == {}


def test_the_changelog_gives_the_versions_and_each_cases_digest(world: World) -> None:
    rec = Recorded(the_period())
    policy = world.policy
    first = {event_key("c1", 1): "c1"}
    rec.changelog(b"p:" + policy.digest.encode(), policy.dump(), first)
    rec.changelog(event_key("c1", 1), pack([{"seq": 1, "type": "created",
                                             "policy": policy.digest}]), first)
    rec.changelog(event_key("c2", 1), pack([{"policy": "other"}]), first)
    rec.changelog(b"s:c1", b"{}", first)
    assert rec.policies == {policy.digest: policy}
    assert rec.ran_under == {"c1": policy.digest}


def test_lost_inputs_name_the_first_missing_day() -> None:
    p = the_period()
    topic = "zhida.case.commands"
    assert missing_inputs({0: (0, p.since + timedelta(days=3))}, p, topic) is None
    assert missing_inputs({0: (120, p.since - timedelta(hours=1))}, p, topic) is None
    line = missing_inputs({0: (0, None), 3: (512, p.since + timedelta(hours=30))}, p, topic)
    assert line is not None and "\n" not in line
    assert f"first missing day {DAY}" in line and "partition 3" in line and "512" in line
    assert "2026-11-24 06:00" in line  # its earliest record, local time
    assert "no record left" in (missing_inputs({1: (9, None)}, p, topic) or "")


# ---- deciding again, over the pure core ----


def live_run(world: World, inputs: list[Command], until: datetime
             ) -> tuple[list[Command], dict[str, list[CaseEvent]]]:
    """The writer and a prompt ticker: each input after the firings due before it."""
    states: dict[str, CaseState] = {}
    log: list[Command] = []
    events: dict[str, list[CaseEvent]] = {}

    def run(cmd: Command) -> None:
        log.append(cmd)
        d = decide(states.get(cmd.aggregate), cmd, world)
        if isinstance(d, Accepted):
            states[cmd.aggregate] = apply(states.get(cmd.aggregate), cmd, d.events)
            events.setdefault(cmd.aggregate, []).extend(d.events)

    def fire(now: datetime) -> None:
        while due := sorted((t.at, c, t) for c, s in states.items()
                            if (t := next_timer(s)) is not None and t.at <= now):
            at, case_id, t = due[0]
            run(Command(aggregate=case_id, at=at,
                        body=Expire(timer=t.kind, stage=t.stage, instant=at)))

    for cmd in inputs:
        fire(cmd.at)
        run(cmd)
    fire(until)
    return log, events


def recorded(world: World) -> Recorded:
    """c1 acked after 10 min, c2 never: two hours of a street's cases."""
    p = the_period()
    log, events = live_run(world, [open_cmd("c1"), open_cmd("c2"),
                                   update_cmd("ack", STREET, "c1",
                                              at=T0 + timedelta(minutes=10))], p.until)
    rec = Recorded(p, opened={"c1", "c2"}, commands={0: log}, events=events,
                   policies={world.policy.digest: world.policy},
                   ran_under={"c1": world.policy.digest, "c2": world.policy.digest})
    return rec


def test_without_a_candidate_the_two_columns_are_equal(world: World) -> None:
    o = decide_again(recorded(world), world, None, [CITY, DISTRICT])
    assert o.candidate == o.live and o.notes == []
    assert o.live[CITY]["escalations"] == 1 and o.live[CITY]["reminders"] == 1
    assert o.live_digests == [world.policy.digest] and o.candidate_digest is None


def test_a_tighter_ack_escalates_the_case_acked_after_ten_minutes(world: World) -> None:
    tighter = Policy.parse(TIGHTER)
    o = decide_again(recorded(world), world, tighter, [CITY])
    live, cand = o.live[CITY], o.candidate[CITY]
    assert (cand["escalations"], cand["reminders"]) == (live["escalations"] + 1,
                                                        live["reminders"] + 1)
    assert cand["escalations_by_level"]["district"] == 2
    assert o.candidate_digest == tighter.digest and o.notes == []


def test_a_case_without_live_events_is_said(world: World) -> None:
    rec = recorded(world)
    del rec.events["c2"]
    o = decide_again(rec, world, None, [CITY])
    assert any("no live event of 1 case" in n for n in o.notes)
    assert any("differs from the live one" in n for n in o.notes)
    assert o.live != o.candidate  # shown, never hidden


def issue(did: str, at: datetime, targets: list[str]) -> Command:
    d = Directive.model_validate({
        "directive_id": did, "issuer": DISTRICT, "title": "检查", "body": "立即排查",
        "targets": {"units": targets}, "ack_within": "PT1H", "issued_at": at.isoformat()})
    return Command(aggregate=did, at=at, body=IssueDirective(directive=d))


def directive_ack(did: str, target: str, at: datetime) -> Command:
    return Command(aggregate=did, at=at, body=DirectiveUpdate(target=target, update=UnitUpdate(
        update_id=f"{did}-{target}", actor=target, action="ack", directive_id=did, at=at)))


def test_a_directive_issued_in_the_period_is_kept_with_every_later_command() -> None:
    rec = Recorded(the_period())
    log = [issue("D-before", T0 - timedelta(days=1), [STREET]), issue("D-in", T0, [STREET]),
           directive_ack("D-in", STREET, T0), directive_ack("D-before", STREET, T0)]
    for offset, cmd in enumerate(log):
        rec.command(0, offset, cmd.aggregate.encode(), encode(cmd))
    assert rec.issued == {"D-in"} and rec.opened == set()
    assert [(c.aggregate, c.body.kind) for c in rec.commands[0]] == [
        ("D-in", "directive_issue"), ("D-in", "directive_update")]


def test_the_changelog_gives_each_directives_digest_and_drops_an_older_one(
        world: World) -> None:
    rec = Recorded(the_period())
    for did, at in (("D-in", T0), ("D-old", T0 - timedelta(days=2))):
        cmd = issue(did, T0, [STREET])
        rec.command(0, 0, did.encode(), encode(cmd))
        state = DirectiveState(directive_id=did, issuer=DISTRICT, title="t", issued_at=at,
                               received_at=at, ack_due=at, policy=world.policy.digest,
                               targets=1)
        keys = {directive_key(d): d for d in ("D-in", "D-old")}
        rec.changelog(directive_key(did), dump(state, DIRECTIVE_IDS), keys)
    assert rec.ran_under == {"D-in": world.policy.digest, "D-old": world.policy.digest}
    assert rec.drop_opened_before() == 1
    assert rec.issued == {"D-in"} and [c.aggregate for c in rec.commands[0]] == ["D-in"]


def with_a_directive(world: World) -> Recorded:
    """``recorded``, and the district directing two streets: one acks at 10 min, the other
    never (reminded at 30 min, escalated to the district at 60: the recorded firings)."""
    rec = recorded(world)
    at = T0 + timedelta(minutes=30)
    rec.commands[0] += [
        issue("D1", T0, [STREET, "500103003"]),
        directive_ack("D1", STREET, T0 + timedelta(minutes=10)),
        Command(aggregate="D1", at=at, body=DirectiveExpire(target="500103003", timer="warn",
                                                           stage="ack", instant=at)),
        Command(aggregate="D1", at=T0 + timedelta(hours=1), body=DirectiveExpire(
            target="500103003", timer="due", stage="ack", instant=T0 + timedelta(hours=1)))]
    rec.commands[0].sort(key=lambda c: c.at)
    rec.issued = {"D1"}
    rec.ran_under["D1"] = world.policy.digest
    return rec


def test_directives_are_decided_again_in_both_columns(world: World) -> None:
    """Live: one reminder, one escalation. A candidate supervising in 30 min: the district
    (at 60 min) is late at 90 (the city supervises) and the city at 120 (top)."""
    exact = decide_again(with_a_directive(world), world, None, [CITY, DISTRICT, STREET])
    assert exact.candidate == exact.live and exact.notes == []
    want = {"issued": 1, "tasks": 2, "acknowledged": 1, "ack_ratio": 0.5,
            "fully_acknowledged": 0, "time_to_full_ack_seconds": None, "escalated": 1,
            "reminders": 1}
    assert exact.live[CITY]["directives"] == exact.live[DISTRICT]["directives"] == want
    assert exact.live[STREET]["directives"]["issued"] == 0
    faster = Policy.parse(POLICY.replace('supervise = "PT3H"', 'supervise = "PT30M"'))
    o = decide_again(with_a_directive(world), world, faster, [CITY, DISTRICT])
    assert o.live[DISTRICT]["directives"] == want and o.notes == []
    assert o.candidate[DISTRICT]["directives"] == {**want, "escalated": 3}
    units = report.shown_units(CITY, [DISTRICT], o.live, o.candidate)
    doc = report.document(DAY, DAY + timedelta(days=1), o.live_digests, o.candidate_digest,
                          units, o.live, o.candidate)
    back = orjson.loads(report.dumps(doc))["units"][DISTRICT]
    assert back["live"]["directives"] == want
    assert back["candidate"]["directives"]["escalated"] == 3
    lines = report.report_lines(doc, str)
    block = lines[lines.index(next(line for line in lines if line.startswith(DISTRICT))):]
    rows = {re.split(r"\s{2,}", line.strip())[0]: line.split()[-3:] for line in block[1:18]
            if line.strip()}
    assert "directives" in rows
    assert rows["issued"] == ["1", "1", "0"]
    assert rows["tasks acknowledged"] == ["50.0%", "50.0%", "0"]
    assert rows["task reminders"] == ["1", "1", "0"]
    assert rows["task escalations"] == ["1", "3", "+2"]


# ---- the table and the JSON ----


def figures(**over: Any) -> dict[str, Any]:
    f: dict[str, Any] = {"received": 10, "on_time_ack_rate": 0.8, "on_time_resolve_rate": None,
                         "overdue": 1, "reminders": 2, "escalations": 3,
                         "escalations_by_level": {"district": 2, "city": 1, "top": 0},
                         "closed_unrated": 1, "reopened": 0}
    return {**f, **over}


def test_the_json_document_has_exactly_the_contracts_shape() -> None:
    live = {CITY: figures(), DISTRICT: figures()}
    doc = report.document(DAY, DAY + timedelta(days=1), ["b", "a", "a"], None, [CITY],
                          live, live)
    assert doc == {"from": "2026-11-23", "to": "2026-11-24",
                   "policy": {"live": ["a", "b"], "candidate": "live"},
                   "units": {CITY: {"live": figures(), "candidate": figures()}}}
    assert orjson.loads(report.dumps(doc)) == doc
    assert report.document(DAY, DAY, [], "abc", [], {}, {})["policy"]["candidate"] == "abc"


def test_a_unit_block_shows_live_candidate_and_the_difference() -> None:
    lines = report.unit_lines(DISTRICT, "渝中区", figures(),
                              figures(on_time_ack_rate=0.55, escalations=7, reminders=2,
                                      escalations_by_level={"district": 4, "city": 2,
                                                            "top": 1}))
    rows = {re.split(r"\s{2,}", line.strip())[0]: line for line in lines[1:]}
    assert lines[0].startswith("500103 渝中区") and lines[0].endswith("difference")
    assert rows["on-time ack rate"].split()[-4:] == ["80.0%", "55.0%", "-25.0", "pp"]
    assert rows["on-time resolve rate"].split()[-3:] == ["-", "-", "-"]
    assert rows["escalations"].split()[-3:] == ["3", "7", "+4"]
    assert rows["reminders"].split()[-1] == "0"
    assert rows["to district"].split()[-1] == "+2"
    # columns line up on the terminal, the CJK name counted two columns a character
    assert len({report.width(line) for line in lines[:2]}) == 1


def test_the_explanation_names_the_units_that_changed_most() -> None:
    units = [CITY, "500103", "500104", "500105"]
    live = {u: figures(escalations=1) for u in units}
    cand = {CITY: figures(escalations=9, escalations_by_level={"district": 8, "city": 1,
                                                               "top": 0}),
            "500103": figures(escalations=6), "500104": figures(escalations=3),
            "500105": figures(escalations=1)}
    lines = report.explanation(units, live, cand, lambda c: {"500103": "渝中区"}.get(c, c))
    assert lines[0].startswith("What changed most: escalations 1 → 9 (+8) at 500000")
    assert "(to district +6, to city +0" not in lines[0] and "to district +6" in lines[0]
    assert lines[1] == "  500103 渝中区: 1 → 6 (+5)"
    assert lines[2] == "  500104: 1 → 3 (+2)" and len(lines) == 3
    same = report.explanation(units, live, live, str)
    assert same == ["What changed most: nothing in escalations (1 in both columns at 500000)."]


def test_children_without_cases_are_not_shown() -> None:
    zero = {k: (0 if not isinstance(v, dict) else {"district": 0, "city": 0, "top": 0})
            for k, v in figures().items()}
    live = {"a": figures(), "b": zero, "c": zero}
    cand = {"a": figures(), "b": zero, "c": figures(received=0, escalations=1)}
    assert report.shown_units(CITY, ["a", "b", "c"], live, cand) == [CITY, "a", "c"]


def test_the_printout_holds_figures_only_and_is_inert() -> None:
    doc = report.document(DAY, DAY + timedelta(days=1), ["d1"], "d2", [CITY],
                          {CITY: figures()}, {CITY: figures()})
    lines = report.report_lines(doc, lambda c: "城市\x1b[2J", ["note: x"])
    text = "\n".join(lines)
    assert "\x1b" not in text and "\\x1b[2J" in text
    assert lines[0].startswith("Replay of the cases opened and directives issued from "
                            "2026-11-23 to 2026-11-24")
    assert "policy d2" in lines[0] and lines[-1] == "note: x"


def test_progress_goes_to_stderr_at_most_every_interval() -> None:
    out = io.StringIO()
    p = Progress(out, every=0.0)
    p.read("zhida.case.commands", 1000)
    assert out.getvalue().startswith("replay: read 1,000 records (")
    quiet = io.StringIO()
    Progress(quiet, every=3600).read("t", 5)
    assert quiet.getvalue() == ""
