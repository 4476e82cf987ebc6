"""Deterministic identifiers: the same input always names the same case, the same output the
same id.

Output ids are the messages' ``ce_id`` (and ``event_id``, ``order_id``, ``notification_id``):
consumers drop a redelivered copy by it, so two different outputs must never share one. They
join ids with ``/``, and parse from the right (``seq`` digits, fixed kind words, unit codes),
so two outputs could share an id only through a part that holds ``/`` or is taken for another
aggregate's: a directive ``<case>/3/notice`` would name its event 1 like complaint ``1``'s
notice at seq 3 of that case, and a directive whose id is a case's id would give its
reminders and supervision orders the ids of that case's, on the same dispatch topic. So each
part is escaped (``%`` and ``/`` as ``%XX``), and a directive id shaped like a case id has its
first byte escaped too. Ordinary ids (no ``%`` or ``/``, directive ids not shaped ``ZD`` + 20
hex digits) keep the ids they always had, so consumers' dedupe holds across an upgrade.

Pure (no I/O), so the core builds its outputs' ids with it; the store's keys
(engine/runtime/storekeys.py) use the same escaping.
"""

from __future__ import annotations

import hashlib
import re

KEY_RESERVED = "%|"  # in task, timer and merge group keys; '%' escapes itself
OUTPUT_RESERVED = "%/"  # in output ids
CASE_ID = re.compile(r"ZD[0-9A-F]{20}")  # the shape of every case id (case_id_for)
_ESCAPED = re.compile("%([0-9A-F]{2})")
_TABLES: dict[str, dict[int, str]] = {}


def escape(part: str, reserved: str = KEY_RESERVED) -> str:
    """``part`` with ``%`` and every character of ``reserved`` as ``%XX`` (uppercase hex);
    unchanged when it holds none of them. ``reserved`` is ASCII and includes ``%``."""
    table = _TABLES.get(reserved)
    if table is None:
        assert "%" in reserved and reserved.isascii()
        table = _TABLES[reserved] = {ord(c): f"%{ord(c):02X}" for c in reserved}
    return part.translate(table)


def unescape(part: str) -> str:
    """The inverse of ``escape`` (for any ``reserved``: every ``%`` in its output escapes)."""
    if "%" not in part:
        return part
    return _ESCAPED.sub(lambda m: chr(int(m[1], 16)), part)




def case_id_for(source: str, key: str) -> str:
    """``ZD`` + 20 hex digits of a hash of (source, idempotency key): a redelivered or
    repeated complaint lands on the case it already created, on the same partition.
    (``source`` is ``complaint`` or ``sensed``, without ``:``, so the hashed text is
    unambiguous; left as it is, since changing it would rename every case.)"""
    digest = hashlib.blake2b(f"{source}:{key}".encode(), digest_size=10).hexdigest()
    return f"ZD{digest.upper()}"


def _part(text: str) -> str:
    return escape(text, OUTPUT_RESERVED)


def _directive(directive_id: str) -> str:
    """A directive id as an output id's first part: never equal to a case's."""
    part = _part(directive_id)
    return f"%{ord(part[0]):02X}{part[1:]}" if CASE_ID.fullmatch(part) else part


def case_event_id(case_id: str, seq: int) -> str:
    """``<case>/<seq>`` on ``case.events``."""
    return f"{_part(case_id)}/{seq}"


def case_order_id(case_id: str, seq: int, kind: str, target: str) -> str:
    """``<case>/<seq>/<kind>/<target>`` on a dispatch topic."""
    return f"{_part(case_id)}/{seq}/{_part(kind)}/{_part(target)}"


def notice_id(case_id: str, seq: int, complaint_id: str) -> str:
    """``<case>/<seq>/notice/<complaint>`` on ``citizen.notifications``."""
    return f"{_part(case_id)}/{seq}/notice/{_part(complaint_id)}"


def directive_event_id(directive_id: str, seq: int) -> str:
    """``<directive>/<seq>`` on ``directive.events``."""
    return f"{_directive(directive_id)}/{seq}"


def directive_order_id(directive_id: str, seq: int, kind: str, target: str) -> str:
    """``<directive>/<seq>/<kind>/<target>`` on a dispatch topic, beside the cases' orders."""
    return f"{_directive(directive_id)}/{seq}/{_part(kind)}/{_part(target)}"


def insight_id(kind: str, *parts: str | int) -> str:
    """``<kind>/<part>/…`` on ``zhida.insights``: a dispute or ruling by its case and seq, a
    hotspot by its group and the report that raised it, a revocation by its ruling."""
    return "/".join((kind, *(_part(str(p)) for p in parts)))
