"""``zhida replay``: the cases opened and the directives issued in a period, decided again
offline by the pure core, live against candidate (CONTRACT.md "Replay and what-if",
docs/replay.md).

What it reads, with plain consumers without a group (no commit, no topic created, nothing
written, so it runs beside live workers), each from its start to its end as the run begins:

- ``<prefix>case.commands``: the recorded inputs. A case belongs to the period when its
  ``OpenCase`` (forwarded by a merge group too) is stamped in ``[from, to)``, local days;
  every later command of that case id is kept (updates, ratings, joins, expiries...). A
  directive likewise: its ``IssueDirective`` stamped in the period, and every later command
  keyed by its id (acks, reports, its tasks' firings).
- ``<prefix>case.events``: those cases' live events, the "live" column's recount.
- ``<app_id>-cases-changelog``: every policy version the engine decided under (``p:<digest>``),
  the digest each case was opened under (its first history record, ``h:<case>:000001``) and
  each directive was issued under (its state record ``d:<directive>``).

The live column of the directive figures is recounted from the directive commands replayed
with the recorded firings (exact, tested against the writer's own run in
tests/core/test_replay.py), not read from ``zhida.directive.events``.

Then ``engine.core.replay.replay`` decides the commands again: without ``--policy`` with
the recorded firings, each case under the version it ran under (exact: candidate == live);
with ``--policy`` under the candidate, timers re-armed and fired by the replay's clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import orjson

from engine.core.figures import as_event
from engine.core.model import DIRECTIVE_KINDS, CaseEvent, Command
from engine.core.world import World, calendars_for
from engine.data.policy import Policy, PolicyError
from engine.runtime.store import unpack
from engine.runtime.storekeys import directive_key, event_key
from engine.tools.ops.common import EXIT_NOT_FOUND, EXIT_USAGE, OpsError, shown

OPEN_MARK = b'"kind":"open"'  # in an OpenCase, and in the JoinCase/GroupOpen that carry one
ISSUE_MARK = b'"kind":"directive_issue"'  # in an IssueDirective
POLICY_PREFIX = b"p:"
PROGRESS_EVERY = 2.0  # seconds between progress lines on stderr
IDLE_LIMIT = 10.0  # seconds with no record before a read short of its end gives up


# ---- the period ----


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in local days; ``since``/``ends`` their first instants; ``until`` the
    replay clock's end: ``ends`` or the run's start, whichever is earlier."""

    start: date
    end: date
    tz: ZoneInfo
    since: datetime
    ends: datetime
    until: datetime

    @property
    def last_day(self) -> date:
        """The last day inside the period: figures count days inclusively."""
        return self.end - timedelta(days=1)

    def opens(self, at: datetime) -> bool:
        return self.since <= at < self.ends


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise OpsError(f"replay {flag}: not a date (YYYY-MM-DD): {shown(text, 40)!r}",
                       EXIT_USAGE) from None


def dates(start_text: str, end_text: str) -> tuple[date, date]:
    """``--from`` and ``--to`` as days; one line (exit 2) for a bad date or an empty or
    reversed range."""
    start, end = _day(start_text, "--from"), _day(end_text, "--to")
    if end <= start:
        raise OpsError(f"replay: --to {end} must be after --from {start}: the period "
                       f"[from, to) is {'empty' if end == start else 'reversed'}", EXIT_USAGE)
    return start, end


def period(start: date, end: date, timezone: str, now: datetime) -> Period:
    """The period in the city's time zone; one line (exit 2) if it has not begun."""
    tz = ZoneInfo(timezone)
    since = datetime.combine(start, datetime.min.time(), tz)
    ends = datetime.combine(end, datetime.min.time(), tz)
    if since > now:
        raise OpsError(f"replay: --from {start} has not begun yet ({timezone})", EXIT_USAGE)
    return Period(start, end, tz, since, ends, min(ends, now))


def check_unit(code: str, topology: Any) -> str:
    """The unit asked for, known to the topology (one line and exit 2 otherwise)."""
    if code not in topology:
        raise OpsError(f"replay --unit: unknown unit {shown(code, 40)!r} (not in the topology)",
                       EXIT_USAGE)
    return code


def candidate_policy(path: Path | None) -> Policy | None:
    """The candidate from ``--policy FILE``; a bad file is one line naming it (exit 2)."""
    if path is None:
        return None
    try:
        return Policy.load(path)
    except PolicyError as e:
        raise OpsError(str(e), EXIT_USAGE) from None


# ---- what was recorded ----


@dataclass
class Recorded:
    """The period's recorded inputs and live outputs, read back from the brokers."""

    period: Period
    opened: set[str] = field(default_factory=set)
    issued: set[str] = field(default_factory=set)  # directives issued in the period
    # each partition's kept commands in offset order (a case's all on its one partition)
    commands: dict[int, list[Command]] = field(default_factory=dict)
    events: dict[str, list[CaseEvent]] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)  # every version, by digest
    ran_under: dict[str, str] = field(default_factory=dict)  # case (directive) → digest
    issued_before: set[str] = field(default_factory=set)  # directives received before
    first: dict[int, tuple[int, datetime | None]] = field(default_factory=dict)
    unreadable: int = 0  # values on case.commands that are not a Command (dead-lettered)

    # ---- case.commands ----

    def command(self, partition: int, offset: int, key: bytes | None, value: bytes | None
                ) -> None:
        """Keep a record of case.commands if it opens a case (issues a directive) in the
        period or follows one.

        Most records are passed over without decoding: a case's commands are keyed by its
        id and come after its ``OpenCase`` on the same partition, so a record is decoded only
        when its key is a kept case or it may carry an ``OpenCase`` (a directive's alike)."""
        if value is None:
            return
        k = key.decode("utf-8", "replace") if key is not None else None
        if (k not in self.opened and k not in self.issued and OPEN_MARK not in value
                and ISSUE_MARK not in value):
            return
        try:
            raw = orjson.loads(value)
            # ``case_id``: the aggregate's name in commands written before it was renamed
            case_id = raw["aggregate"] if "aggregate" in raw else raw["case_id"]
            kind = raw["body"]["kind"]
            if case_id not in self.opened and case_id not in self.issued:
                kept = {"open": self.opened, "directive_issue": self.issued}.get(kind)
                if kept is None or not self.period.opens(datetime.fromisoformat(raw["at"])):
                    return
                kept.add(case_id)
            cmd = Command.model_validate(raw)
        except (ValueError, KeyError, TypeError):  # the writer dead-lettered it live too
            self.unreadable += 1
            return
        self.commands.setdefault(partition, []).append(cmd)

    def first_record(self, partition: int, log_start: int, value: bytes | None,
                     timestamp_ms: int | None) -> None:
        """The earliest record left on a partition: its command's time (or the record's)."""
        at: datetime | None = None
        try:
            at = datetime.fromisoformat(orjson.loads(value or b"")["at"])
        except (ValueError, KeyError, TypeError):
            if timestamp_ms is not None:
                at = datetime.fromtimestamp(timestamp_ms / 1000, self.period.tz)
        self.first[partition] = (log_start, at)

    # ---- case.events and the changelog ----

    def event(self, key: bytes | None, value: bytes | None) -> None:
        """A live event of a kept case (the key is the case id: no other is decoded)."""
        if key is None or value is None:
            return
        case_id = key.decode("utf-8", "replace")
        if case_id not in self.opened:
            return
        try:
            self.events.setdefault(case_id, []).append(as_event(orjson.loads(value)))
        except ValueError:
            return

    def changelog(self, key: bytes | None, value: bytes | None, first_keys: dict[bytes, str]
                  ) -> None:
        """A policy version (``p:``), a kept case's first history record or a kept
        directive's state record (its digest)."""
        if key is None or value is None:
            return
        if key.startswith(POLICY_PREFIX):
            try:
                policy = Policy.restore(value)
            except PolicyError:
                return
            self.policies[policy.digest] = policy
        elif key in first_keys:
            try:
                record = unpack(value)
                record = record if isinstance(record, dict) else record[0]
                digest = record.get("policy")
                received = record.get("received_at")
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                return
            if digest:
                self.ran_under[first_keys[key]] = digest
            if isinstance(received, str) and key.startswith(b"d:"):
                try:
                    if datetime.fromisoformat(received) < self.period.since:
                        self.issued_before.add(first_keys[key])
                except ValueError:
                    return

    def drop_opened_before(self) -> int:
        """Cases whose live ``created`` came before the period (an ``OpenCase`` in it was a
        repeat of an older case's): not the period's. Returns how many were dropped."""
        early = {c for c, evs in self.events.items()
                 if any(e.seq == 1 and e.at < self.period.since for e in evs)}
        early |= self.issued_before & self.issued  # a directive's repeated issue alike
        self.issued -= early
        if early:
            self.opened -= early
            self.commands = {p: [c for c in cmds if c.aggregate not in early]
                             for p, cmds in self.commands.items()}
            for c in early:
                self.events.pop(c, None)
        return len(early)

    def ordered(self) -> list[Command]:
        """The commands in the order replay takes them: each partition in offset order (the
        writer's order for every case), merged by ``at`` across partitions."""
        from engine.core.replay import in_log_order

        return list(in_log_order(self.commands))

    def count(self) -> int:
        return sum(len(c) for c in self.commands.values())


def missing_inputs(first: dict[int, tuple[int, datetime | None]], p: Period,
                   topic: str) -> str | None:
    """One line when retention took commands the period needs: a partition whose log no
    longer starts at offset 0 and whose earliest record left is later than the period's
    start (or that has none left). None when every partition reaches back far enough."""
    gone = [(part, start, at) for part, (start, at) in sorted(first.items())
            if start > 0 and (at is None or at > p.since)]
    if not gone:
        return None
    part, start, at = gone[0]
    left = (f"its earliest record is of {at.astimezone(p.tz):%Y-%m-%d %H:%M}" if at is not None
            else "it has no record left")
    return (f"replay: the recorded commands of the period are gone from {topic} (retention): "
            f"first missing day {p.start}; partition {part} starts at offset {start} and "
            f"{left} (ZHIDA_INPUT_RETENTION, docs/replay.md)")


# ---- progress ----


class Progress:
    """Progress on stderr for long runs: at most one line every ``PROGRESS_EVERY`` s."""

    def __init__(self, out: TextIO | None = None, every: float = PROGRESS_EVERY) -> None:
        self.out = out or sys.stderr
        self.every = every
        self.started = self.last = time.monotonic()
        self.records = 0

    def read(self, what: str, n: int = 1) -> None:
        self.records += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.records / max(now - self.started, 1e-9)
            self.say(f"read {self.records:,} records ({rate:,.0f}/s): {what}")

    def say(self, line: str) -> None:
        print(f"replay: {line}", file=self.out, flush=True)


# ---- reading the brokers ----


async def read_recorded(bootstrap: str, prefix: str, app_id: str, p: Period, timeout: float,
                        auth: dict[str, Any] | None = None,
                        progress: Progress | None = None) -> Recorded:
    """Everything replay needs from the brokers (the module's doc), read to each partition's
    end as it was when the read began; ``OpsError`` for a missing topic or lost inputs."""
    from engine.tools.ops.brokers import cluster

    progress = progress or Progress()
    md = await cluster(bootstrap, timeout, auth)
    commands, events = prefix + "case.commands", prefix + "case.events"
    changelog = f"{app_id}-cases-changelog"
    if not md.partitions_for_topic(commands):
        raise OpsError(f"replay: topic {commands} does not exist on the brokers at {bootstrap} "
                       "(has a worker run there with this prefix, ZHIDA_PREFIX?)",
                       EXIT_NOT_FOUND)
    rec = Recorded(p)

    def on_command(part: int, m: Any, log_start: int) -> None:
        if part not in rec.first:
            rec.first_record(part, log_start, m.value, m.timestamp)
            problem = missing_inputs({part: rec.first[part]}, p, commands)
            if problem:
                raise OpsError(problem, EXIT_USAGE)
        rec.command(part, m.offset, m.key, m.value)

    def on_bounds(starts: dict[int, int], ends: dict[int, int]) -> None:
        for part, start in starts.items():  # nothing left to read: was anything ever there?
            if start > 0 and start >= ends[part]:
                rec.first[part] = (start, None)
        problem = missing_inputs(rec.first, p, commands)
        if problem:
            raise OpsError(problem, EXIT_USAGE)

    await _read(bootstrap, commands, md, timeout, auth, progress, on_command, on_bounds)
    if md.partitions_for_topic(events):
        await _read(bootstrap, events, md, timeout, auth, progress,
                    lambda _p, m, _s: rec.event(m.key, m.value))
    dropped = rec.drop_opened_before()
    if dropped:
        progress.say(f"{dropped} case(s) opened before {p.start} had a repeated open "
                     "command in the period: left out")
    first_keys = {event_key(c, 1): c for c in rec.opened}
    first_keys.update((directive_key(d), d) for d in rec.issued)
    if md.partitions_for_topic(changelog):
        await _read(bootstrap, changelog, md, timeout, auth, progress,
                    lambda _p, m, _s: rec.changelog(m.key, m.value, first_keys))
        if rec.drop_opened_before():
            progress.say("directive(s) issued before the period had a repeated issue "
                         "command in it: left out")
    elif rec.opened or rec.issued:
        raise OpsError(f"replay: the engine's changelog {changelog} is not on the brokers at "
                       f"{bootstrap}: the policy versions are kept there (ZHIDA_APP_ID?)",
                       EXIT_NOT_FOUND)
    return rec


async def _read(bootstrap: str, topic: str, md: Any, timeout: float,
                auth: dict[str, Any] | None, progress: Progress,
                on_record: Callable[[int, Any, int], None],
                on_bounds: Callable[[dict[int, int], dict[int, int]], None] | None = None
                ) -> None:
    """Every record of ``topic`` from its start to its end as of now, partition by partition
    in offset order, handed to ``on_record(partition, message, log_start)``; ``on_bounds``
    sees each partition's log start and end first."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from engine.tools.ops.brokers import log_ends, quiet_aiokafka

    tps = [TopicPartition(topic, n) for n in sorted(md.partitions_for_topic(topic) or ())]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=100, max_partition_fetch_bytes=4 << 20,
                                fetch_max_bytes=32 << 20, **(auth or {}))
    with quiet_aiokafka():
        await consumer.start()
        try:
            consumer.assign(tps)
            ends = await log_ends(consumer, tps, timeout)
            starts = await consumer.beginning_offsets(tps)
            if on_bounds is not None:
                on_bounds({tp.partition: starts[tp] for tp in tps},
                          {tp.partition: ends[tp] for tp in tps})
            left = {tp for tp in tps if ends[tp] > starts[tp]}
            for tp in tps:
                consumer.seek(tp, starts[tp])
            await _drain(consumer, left, ends, starts, topic, progress, on_record)
        finally:
            await consumer.stop()


async def _drain(consumer: Any, left: set[Any], ends: dict[Any, int], starts: dict[Any, int],
                 topic: str, progress: Progress,
                 on_record: Callable[[int, Any, int], None]) -> None:
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while left:
        batch = await consumer.getmany(*left, timeout_ms=500)
        if not batch:
            if loop.time() - quiet_since > IDLE_LIMIT:
                tp = min(left, key=lambda t: t.partition)
                raise OpsError(f"replay: reading {topic} stalled at partition {tp.partition} "
                               f"before its end {ends[tp]}: nothing replayed", EXIT_USAGE)
            continue
        quiet_since = loop.time()
        for tp, messages in batch.items():
            n = 0
            for m in messages:
                if m.offset >= ends[tp]:
                    break
                on_record(tp.partition, m, starts[tp])
                n += 1
            progress.read(topic, n)
            if messages and messages[-1].offset >= ends[tp] - 1:
                left.discard(tp)
                consumer.pause(tp)


# ---- deciding again ----


def live_world(base: World, policies: dict[str, Policy]) -> World:
    """The world of the live run: the file in force (ZHIDA_POLICY: its clocks, as the
    worker's), every stored version known, so each case opens under the one it ran under."""
    return dataclasses.replace(base, policies={**policies, **base.policies})


def candidate_world(base: World, candidate: Policy, policies: dict[str, Policy],
                    today: date) -> World:
    """The candidate in force for every case (each is opened again under it), its clocks
    built from it (a candidate may list next year's holidays)."""
    return dataclasses.replace(base, policy=candidate,
                               calendars=calendars_for(candidate, today),
                               policies={**policies, candidate.digest: candidate})


@dataclass
class Outcome:
    """Both columns' figures by unit, what each column ran under, and what to say about it."""

    live: dict[str, dict[str, Any]]
    candidate: dict[str, dict[str, Any]]
    live_digests: list[str]
    candidate_digest: str | None
    notes: list[str]
    decided: int  # commands decided again, simulated firings included
    fired: int  # of which simulated firings (a candidate's clock)
    seconds: float


# kinds the replay leaves out by design: merge groups (their forwards are on the log on the
# case's own key), and in a what-if the recorded firings (its clock fires)
EXPECTED_SKIPS = frozenset({"expire", "group_open", "group_forget", "directive_expire"})


def decide_again(rec: Recorded, base: World, candidate: Policy | None, units: list[str]
                 ) -> Outcome:
    """The candidate column from the recorded commands, the live one from the live events.

    Exact (no candidate): the recorded firings, each case opened under the version it ran
    under (``opened_under``, from its first history record on the changelog); the two
    histories are compared case by case and any difference is said. What-if: the candidate
    in force for every case, its timers fired by the replay's clock."""
    from engine.core import replay as core
    from engine.core.replay_directives import directive_figures

    p, notes = rec.period, []
    commands = rec.ordered()
    opened_under = {c: d for c, d in rec.ran_under.items() if d in rec.policies}
    unknown = len(rec.opened) - len(opened_under.keys() & rec.opened)
    if unknown and rec.events:
        notes.append(f"note: the policy version of {unknown:,} case(s) was not found on the "
                     f"changelog: opened again under the file in force ({base.policy.digest})")
    world = (live_world(base, rec.policies) if candidate is None
             else candidate_world(base, candidate, rec.policies, p.start))
    started = time.perf_counter()
    out = core.replay(commands, world, recorded_firings=candidate is None, until=p.until,
                      opened_under=opened_under)
    seconds = time.perf_counter() - started
    other = {k: n for k, n in out.skipped.items() if k not in EXPECTED_SKIPS}
    if other:
        notes.append("note: commands not replayed: " + ", ".join(
            f"{k} {n:,}" for k, n in sorted(other.items())))
    if candidate is not None and out.rejected:
        notes.append("note: recorded unit actions the candidate's states refused (kept as "
                     "recorded, decided nothing): " + ", ".join(
                         f"{k} {n:,}" for k, n in sorted(out.rejected.items())))
    if rec.unreadable:
        notes.append(f"note: {rec.unreadable:,} record(s) on case.commands were not commands "
                     "(left out, as the engine dead-lettered them)")
    silent = len(rec.opened - rec.events.keys())
    if silent:
        notes.append(f"note: no live event of {silent:,} case(s) on case.events (its "
                     "retention, or a worker behind): the live column lacks them")
    if candidate is None:
        parted = core.diverged(rec.events, out.events, p.until)
        if parted:
            notes.append(f"note: the replayed history of {len(parted):,} case(s) differs "
                         "from the live one: the columns show the difference (a worker "
                         "behind, or inputs it has not decided yet)")
    live = core.unit_figures(rec.events, base, p.start, p.last_day, p.until, units)
    cand = core.unit_figures(out.events, world, p.start, p.last_day, p.until, units)
    recorded = out if candidate is None else core.replay(
        [c for c in commands if c.body.kind in DIRECTIVE_KINDS],
        live_world(base, rec.policies), recorded_firings=True, until=p.until,
        opened_under=opened_under, keep_events=False)
    for column, r in ((live, recorded), (cand, out)):
        for u, f in directive_figures(r.directives, base, units,
                                      r.directive_reminders).items():
            column[u]["directives"] = f
    digests = sorted({d for c, d in rec.ran_under.items() if c in rec.opened})
    return Outcome(live, cand, digests, candidate.digest if candidate else None, notes,
                   out.decided, out.fired, seconds)


def names_of(topology: Any) -> Callable[[str], str]:
    def name(code: str) -> str:
        try:
            return str(topology.name(code))
        except Exception:  # a name is a nicety
            return code
    return name


def run(reader: Coroutine[Any, Any, Recorded], base: World, candidate: Policy | None, unit: str,
        json_path: Path | None, progress: Progress | None = None,
        out: TextIO | None = None) -> int:
    """Read, decide again, print the table (and write ``--json``): ``zhida replay``'s body
    after its checks. Returns the exit code."""
    from engine.tools.ops import replay_report as report

    out = out or sys.stdout
    progress = progress or Progress()
    rec = asyncio.run(reader)
    progress.say(f"{rec.count():,} commands of {len(rec.opened):,} cases opened and "
                 f"{len(rec.issued):,} directives issued in the period, "
                 f"{sum(len(v) for v in rec.events.values()):,} live events, "
                 f"{len(rec.policies)} policy version(s); deciding again")
    topology = base.topology
    children = list(topology.children(unit))
    o = decide_again(rec, base, candidate, [unit, *children])
    rate = o.decided / o.seconds if o.seconds > 0 else 0.0
    fired = f" ({o.fired:,} of them timers the candidate's clock fired)" if candidate else ""
    progress.say(f"decided {o.decided:,} commands again{fired} in {o.seconds:.2f} s "
                 f"({rate:,.0f}/s)")
    units = report.shown_units(unit, children, o.live, o.candidate)
    doc = report.document(rec.period.start, rec.period.end, o.live_digests, o.candidate_digest,
                          units, o.live, o.candidate)
    if json_path is not None:
        try:
            json_path.write_bytes(report.dumps(doc))
        except OSError as e:
            raise OpsError(f"replay --json {json_path}: cannot write: {e.strerror or e}",
                           EXIT_USAGE) from None
    notes = list(o.notes)
    if not rec.opened:
        notes.insert(0, f"note: no case was opened from {rec.period.start} to "
                        f"{rec.period.end} (end exclusive)")
    for line in report.report_lines(doc, names_of(topology), notes):
        print(line, file=out)
    return 0


def command(start: date, end: date, policy: Path | None, unit: str | None,
            json_path: Path | None, settings: Any, auth: dict[str, Any],
            problem: Callable[[Exception], str] = str) -> int:
    """``zhida replay`` after its dates: every check that needs no broker first (the
    operator files, the period, the unit, the candidate, ``--json``), then the run."""
    from engine.runtime.world import load_world

    try:
        base = load_world(settings.topology, settings.catalogue, settings.policy, today=start)
    except PolicyError:
        raise
    except Exception as e:
        raise OpsError(f"replay: the operator files (ZHIDA_TOPOLOGY, ZHIDA_CATALOGUE): "
                       f"{problem(e)}", EXIT_USAGE) from None
    p = period(start, end, base.policy.calendar.timezone, datetime.now(UTC))
    code = check_unit(unit or base.topology.city, base.topology)
    candidate = candidate_policy(policy)
    json_path = writable(json_path)
    progress = Progress()
    reader = read_recorded(settings.bootstrap, settings.prefix, settings.app_id, p,
                           settings.connect_timeout, auth, progress)
    return run(reader, base, candidate, code, json_path, progress)


def writable(path: Path | None) -> Path | None:
    """``--json FILE`` checked before the run: its directory must exist."""
    if path is not None and not path.parent.is_dir():
        raise OpsError(f"replay --json {path}: no such directory {path.parent}", EXIT_USAGE)
    return path
