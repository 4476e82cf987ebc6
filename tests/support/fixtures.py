"""The shared pytest fixtures, registered for every test by ``pytest_plugins`` in
tests/conftest.py.

- ``broker``, ``worker``, ``kafka``: one embedded broker, one worker process on it (merging
  off, tests/data/no-merge.toml) and one collector of its output topics per test session; a
  module needing its own broker or worker configuration builds them with
  tests/support/broker.py (``own_broker``, ``Worker``, ``collecting``).
- ``world``: the default topology and catalogue with the requesting test module's ``POLICY``
  text, once per module.
- ``engine_process_settings`` (every test): building an ``Engine`` sets process-wide client
  settings (the SASL arguments of the engine's own aiokafka clients, the fetch wait, the bulk
  restore threshold); each test starts from the defaults, whatever ran before it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from engine.core.world import World
from engine.runtime.kafka import recovery, transport
from engine.tools.broker import EmbeddedBroker, free_port
from tests.support.broker import Collector, Worker
from tests.support.helpers import world_with

# ---- process-wide settings an Engine sets ----


@pytest.fixture(autouse=True)
def engine_process_settings() -> Iterator[None]:
    kwargs = dict(transport.CLIENT_KWARGS)
    wait, bulk = transport.FETCH_MAX_WAIT_MS, recovery.BULK_MIN
    yield
    transport.CLIENT_KWARGS.clear()
    transport.CLIENT_KWARGS.update(kwargs)
    transport.FETCH_MAX_WAIT_MS, recovery.BULK_MIN = wait, bulk


# ---- the session's broker, worker and collector ----


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    b = EmbeddedBroker(log_path=log).start()
    proc = b.proc
    yield b
    b.stop()
    assert proc is not None and proc.poll() is not None, "broker outlived the session"


@pytest.fixture(scope="session")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    d = tmp_path_factory.mktemp("worker")
    w = Worker(broker.bootstrap, free_port(), d / "data", d / "worker.log").start()
    yield w
    w.stop()


@pytest_asyncio.fixture(scope="session")
async def kafka(worker: Worker) -> AsyncIterator[Collector]:
    c = Collector(worker.bootstrap)
    await c.start()
    yield c
    await c.stop()


# ---- the pure core's world ----


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> World:
    """A ``World`` with the module's ``POLICY`` (policy.toml text) as its policy."""
    return world_with(request.module.POLICY, tmp_path_factory.mktemp("policy"))
