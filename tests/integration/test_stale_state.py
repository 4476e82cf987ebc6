"""A worker restarted in a used folder against a new broker (CONTRACT.md "Restarts against a
new or emptied broker"): its local state is ahead of the empty changelog. It moves that state
aside, says so once, rebuilds and serves; it never crashes on it."""

from __future__ import annotations

import orjson
import pytest

from engine.tools.broker import free_port
from tests.support.broker import Worker, collecting, own_broker
from tests.support.messages import open_case

pytestmark = pytest.mark.integration


def warnings_of(w: Worker, event: str) -> list[dict]:
    out = []
    for line in w.log_path.read_text("utf-8", "replace").splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            rec = orjson.loads(line)
            if rec.get("event") == event:
                out.append(rec)
    return out


async def test_restart_against_a_new_broker_discards_stale_state_and_serves(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    d = tmp_path_factory.mktemp("stale")
    data_dir = d / "data"
    with own_broker(tmp_path_factory, "stale-first") as first:
        w = Worker(first.bootstrap, free_port(), data_dir, d / "worker.log").start()
        try:
            async with collecting(first.bootstrap) as kafka:
                old_case, _ = await open_case(kafka)
                assert w.get(f"/cases/{old_case}")[0] == 200
        finally:
            w.stop()
    assert not list(data_dir.glob("discarded-*"))

    with own_broker(tmp_path_factory, "stale-second") as second:  # memory-only: empty
        w = Worker(second.bootstrap, free_port(), data_dir, d / "worker.log").start()
        try:
            [warning] = warnings_of(w, "stale_state_discarded")
            assert warning["level"] == "warning"
            parts = warning["partitions"]
            assert parts and all(p["local_offset"] > p["changelog_last_offset"] for p in parts)
            [moved] = list(data_dir.glob("discarded-*"))
            assert warning["moved_to"] == str(moved)
            assert sorted(p.name for p in moved.iterdir())  # kept, never deleted
            assert w.get(f"/cases/{old_case}")[0] == 404  # the truth is the new changelog
            async with collecting(second.bootstrap) as kafka:
                new_case, _ = await open_case(kafka)
                assert w.get(f"/cases/{new_case}")[0] == 200
        finally:
            w.stop()
        # a third start in the same folder on the same broker: nothing stale any more
        w = Worker(second.bootstrap, free_port(), data_dir, d / "worker3.log").start()
        try:
            assert not warnings_of(w, "stale_state_discarded")
            assert w.get(f"/cases/{new_case}")[0] == 200
        finally:
            w.stop()
