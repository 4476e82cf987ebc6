"""``GET /directives/{id}`` answers, cached per directive on the worker that owns it.

A supervisor's screen polls a directive to 1,031 streets; reading 1,031 task records and
building 170 KB of JSON each time cost ~7 ms median and ~50 ms at p99 (docs/benchmarks-
directives.md). The cache keeps, per directive, its tasks as plain dicts (patched by the writer
as it writes them, so a change costs no re-read) and the last answer, valid until the
directive's ``seq`` moves or the next task deadline passes (``late`` changes then).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from engine.core import directive
from engine.runtime.store import TASK_IDS, CaseStore

SIZE = 256  # directives cached per worker (a few hundred active at once)


@dataclass
class _Entry:
    tasks: dict[str, dict[str, Any]]
    seq: int = -1
    valid_until: datetime | None = None
    body: bytes = b""


def task_dict(task: directive.Task) -> dict[str, Any]:
    """A task as the store's ``tasks()`` reads it: JSON values, target included."""
    d = orjson.loads(orjson.dumps(task.model_dump(exclude=set(TASK_IDS))))
    d["target"] = task.target
    return d


class StatusCache:
    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self.items: OrderedDict[str, _Entry] = OrderedDict()

    def get(self, d: directive.DirectiveState, store: CaseStore, now: datetime) -> bytes:
        e = self.items.get(d.directive_id)
        if e is None:
            e = _Entry({t["target"]: t for t in store.tasks(d.directive_id)})
            self.items[d.directive_id] = e
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        self.items.move_to_end(d.directive_id)
        if e.seq == d.seq and e.body and (e.valid_until is None or now < e.valid_until):
            return e.body
        tasks = list(e.tasks.values())
        e.body = orjson.dumps(directive.status(d, tasks, now))
        e.seq = d.seq
        upcoming = [t for t in (directive.as_time(x["due"]) for x in tasks
                                if x.get("due") is not None and x.get("stage") is not None)
                    if t > now]
        e.valid_until = min(upcoming) if upcoming else None
        return e.body

    def task_written(self, task: directive.Task) -> None:
        """The writer wrote ``task``: keep a cached directive's copy current."""
        e = self.items.get(task.directive_id)
        if e is not None:
            e.tasks[task.target] = task_dict(task)

    def forget(self) -> None:
        """Partitions moved: another worker may have changed what this one cached."""
        self.items.clear()
