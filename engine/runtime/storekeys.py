"""The keys of the case writer's table (engine/runtime/store.py), and how ids are written into them.

One table, one changelog, so every record of a partition shares one ordered log:

- ``s:<case>``          ``CaseState``: small, rewritten by every command
- ``f:<case>``          ``CaseFile``: what the case is about, written when it opens
- ``h:<case*>:<seq>``   the ``CaseEvent``s one command added, from ``seq`` on, written once
- ``m:<partition>``     ``Marks``: the partition's watermark and per-state counts
- ``p:<digest>``        a policy version some case on the partition was opened under
- ``t:<ms>:<case*>``    a case's one armed timer (engine/core/sla.py): RocksDB keeps keys
                        sorted, so the ticker reads what is due as a range, never a scan
- ``t:<ms>:<directive*>|<target*>`` a directive task's one armed timer
- ``d:<directive>``     ``DirectiveState``: counts and shared deadlines (engine/core/directive.py)
- ``k:<directive*>|<target*>`` one ``Task`` per target, read back by the prefix ``k:<directive*>|``
- ``c:<partition>:<day>`` supervision figures of the partition's cases that day, by unit
- ``n:<partition>``     backlog and overdue now, by unit
- ``x:<group>``         ``GroupState``: a merge group's open cases (engine/core/merge.py builds
                        the group key with its parts escaped), its hotspot counting and
                        precedents (engine/core/insights.py)
- ``i:<insight>``       an insight as published on ``zhida.insights``, a hotspot's counts kept
                        current: what ``GET /hotspots`` and the board read
- ``r:<ruling>``        a precedent (``PrecedentRecord``): what ``GET /precedents`` reads

**Why the escaping** (``*``). Ids come from outside (a directive id is whatever its issuer sent)
and a key that joins an id to a separator and more was forgeable: directive ``X|500103-0``
filed its tasks under ``k:X|500103-0|<target>``, and the prefix read of ``X``'s tasks took them
for ``X``'s own. So in a composite key every id is escaped: ``%`` and ``|`` become ``%25`` and
``%7C``, and in ``h:`` also ``:`` (``%3A``), the separator that follows the case id there. An
escaped id holds no separator of its key, so the first one after it ends it: keys are
injective, a prefix names one aggregate, and a key parses back (``timer_owner``: a case's
timer has no ``|``, a task's exactly one). An id that is the whole rest of its key (``s:``,
``f:``, ``d:``, ``x:``) is taken verbatim: nothing follows it to be confused with.

Nothing else is escaped (``/``, ``;``, spaces, control characters, non-ASCII...): the key of an
id without ``%`` and ``|`` (and, for a case's history, ``:``) is the bytes it always was, so
existing stores and changelogs keep working; a directive id such as ``CQ:2026/7`` keeps its
keys, since neither character ends an id in them.
"""

from __future__ import annotations

from datetime import datetime

from engine.core.ids import escape, unescape

SEQ_DIGITS = 6
MS_DIGITS = 15
TIMER_PREFIX = b"t:"
HISTORY_RESERVED = "%:"  # the case id in ``h:<case>:<seq>``

# ---- one record per aggregate: the id is the rest of the key, verbatim ----


def state_key(case_id: str) -> bytes:
    return f"s:{case_id}".encode()


def file_key(case_id: str) -> bytes:
    return f"f:{case_id}".encode()


def directive_key(directive_id: str) -> bytes:
    return f"d:{directive_id}".encode()


def group_key(key: str) -> bytes:
    return f"x:{key}".encode()


def policy_key(digest: str) -> bytes:
    return f"p:{digest}".encode()


INSIGHT_PREFIX = b"i:"
PRECEDENT_PREFIX = b"r:"


def insight_key(insight_id: str) -> bytes:
    return INSIGHT_PREFIX + insight_id.encode()


def precedent_key(ruling_id: str) -> bytes:
    return PRECEDENT_PREFIX + ruling_id.encode()


# ---- per partition: numbers and days the engine makes ----


def marks_key(partition: int) -> bytes:
    return f"m:{partition}".encode()


def figures_now_key(partition: int) -> bytes:
    return f"n:{partition}".encode()


def figures_day_prefix(partition: int) -> bytes:
    return f"c:{partition}:".encode()


def figures_day_key(partition: int, day: str) -> bytes:
    return figures_day_prefix(partition) + day.encode()


# ---- composite keys: every id escaped ----


def history_prefix(case_id: str) -> bytes:
    """Every history key of this case starts with it, and no other key does."""
    return f"h:{escape(case_id, HISTORY_RESERVED)}:".encode()


def event_key(case_id: str, seq: int) -> bytes:
    """``seq`` zero-padded, so a case's history keys sort by ``seq`` (below 10**6)."""
    return history_prefix(case_id) + f"{seq:0{SEQ_DIGITS}d}".encode()


def task_prefix(directive_id: str) -> bytes:
    """Every task key of this directive starts with it, and no other key does."""
    return f"k:{escape(directive_id)}|".encode()


def task_key(directive_id: str, target: str) -> bytes:
    return task_prefix(directive_id) + escape(target).encode()


def task_target(prefix: bytes, key: bytes) -> str:
    """The target of a task key read under ``prefix`` (``task_prefix``)."""
    return unescape(key[len(prefix):].decode())


def timer_key(case_id: str, at: datetime, target: str | None = None) -> bytes:
    """A case's timer, or with ``target`` a directive task's (``case_id`` the directive).
    Keys sort by due time first (``ms`` fixed width), whatever the owner."""
    ms = int(at.timestamp() * 1000)
    owner = escape(case_id) if target is None else f"{escape(case_id)}|{escape(target)}"
    return f"t:{ms:0{MS_DIGITS}d}:{owner}".encode()


def timer_bound(now: datetime) -> bytes:
    """The first key after every timer due at or before ``now``: ``;`` sorts after ``:``."""
    ms = int(now.timestamp() * 1000)
    return f"t:{ms:0{MS_DIGITS}d};".encode()


def timer_owner(key: bytes) -> tuple[str, str | None]:
    """(case or directive id, task target or None) of a timer key.

    Split at the *last* ``|``: an escaped owner has at most one, and a key written before
    ids were escaped (a directive id holding ``|``; unit codes have none) still names its
    directive."""
    owner = key.decode().split(":", 2)[2]
    head, sep, target = owner.rpartition("|")
    if not sep:
        return unescape(owner), None
    return unescape(head), unescape(target)
