"""kill -9 with several workers of one group: nothing lost, nothing reordered, no stall.

Three workers share the partitions; one at a time is SIGKILLed under load and restarted a few
seconds later on its data dir while the other two keep theirs (the case one worker cannot
show: faust handed a restarted member's records on before its seek to the committed offsets
and passed over the ones between, engine/runtime/kafka/transport.py). Every output is read back from
offset 0 by an independent client and checked as in the single-worker run (bench/crashload_check.py:
every input accounted for, per-case seq gap-free, nothing forked, one outcome per input), and
every worker must be ready at the end: a partition left stalled fails the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.crashload import CrashConfig, CrashRun
from engine.tools.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

WORKERS = 3
RATE = 50.0  # complaints/s: three workers, the broker and the load share two cores
MIN_KILLS = 3


@pytest.mark.timeout(300)
async def test_three_workers_killed_in_turn_lose_and_reorder_nothing(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    broker_proc = broker.proc
    try:
        cfg = CrashConfig(duration=36, kill_every=10, kills=MIN_KILLS, rate=RATE, min_uptime=2,
                          jitter=2, tail=6, ready_timeout=90, drain_timeout=90,
                          drain_stall=20, forge_every=10, directive_every=50, report_every=3,
                          silent_every=5, seed=None, workers=WORKERS, down=3)
        result = await CrashRun(broker.bootstrap, tmp_path, cfg, progress=print).run()
    finally:
        broker.stop()
    assert broker_proc is not None and broker_proc.poll() is not None, "broker outlived the test"
    summary = result.summary()
    print(summary)
    c = result.report.counts
    assert len(result.kills) >= MIN_KILLS, summary
    assert len({k.worker for k in result.kills}) == WORKERS, summary  # each one killed
    assert c["complaints_sent"] >= RATE * cfg.duration * 0.9, summary
    assert c["acks_sent"] > 0 and c["resolves_sent"] > 0, summary
    assert c["send_errors"] == 0 and not result.reader_errors, summary
    assert not result.not_ready_at_end, summary  # no partition left stalled
    assert result.report.ok, summary  # lost, stuck, gaps, forks, two outcomes: none
    assert result.drain_complete, summary
