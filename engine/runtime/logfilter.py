"""Rate limit for repeated log lines.

With the brokers gone, aiokafka and faust log the same few errors about 65 times a second
(``Unable connect to node with id %s: %s``, ``Failed fetch messages from %s: %s``, ...). The
first record of a given (logger, message template) goes through; after that at most one per
``interval`` seconds, carrying how many were dropped since the last one went out
(``suppressed`` in the JSON line). Only records at ``level`` or above are limited, so start-up
and shutdown information is never thinned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

ATTR = "zhida_suppressed"


def template(record: logging.LogRecord) -> str:
    """The message before its arguments: the ``event`` of a structlog record."""
    msg = record.msg
    if isinstance(msg, dict):  # structlog's ProcessorFormatter.wrap_for_formatter
        return str(msg.get("event", ""))
    return str(msg)


class RateLimit(logging.Filter):
    def __init__(self, interval: float = 10.0, level: int = logging.WARNING,
                 max_keys: int = 2048, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.level = level
        self.max_keys = max_keys
        self.clock = clock
        # key → [time the last record went out, records dropped since]
        self._seen: dict[tuple[str, str], list[Any]] = {}
        self._lock = threading.Lock()  # the consumer thread logs too

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        key = (record.name, template(record))
        now = self.clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.interval:
                entry[1] += 1
                return False
            if entry is not None and entry[1]:
                setattr(record, ATTR, (entry[1], round(now - entry[0], 1)))
            if entry is None and len(self._seen) >= self.max_keys:
                self._forget(now)
            self._seen[key] = [now, 0]
        return True

    def _forget(self, now: float) -> None:
        """Drop quiet keys (their dropped counts are lost); all of them if none are quiet."""
        quiet = [k for k, (at, _) in self._seen.items() if now - at >= self.interval]
        for k in quiet or list(self._seen):
            del self._seen[k]


def add_suppressed(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: put the filter's count on the line (ProcessorFormatter's
    ``_record``): ``suppressed`` like records dropped in the ``suppressed_over_s`` seconds
    since the previous one went out."""
    found = getattr(event.get("_record"), ATTR, None)
    if found:
        event["suppressed"], event["suppressed_over_s"] = found
    return event
