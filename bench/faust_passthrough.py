"""A minimal faust app for the benchmark: consume the input topic, ``await topic.send()`` one
~300-byte message per event. No tables, no engine code: the framework's own cost.

Broker settings are the engine's (engine/runtime/app.py): rebalance/session/heartbeat timeouts,
earliest offsets, commit interval, producer linger, and by default the engine's transport
(``zhida://``, a 50 ms fetch wait instead of faust's hard-coded 1.5 s).

Configured from the environment; run by bench.run as ``python -m bench.faust_passthrough``:
BENCH_BOOTSTRAP, BENCH_APP_ID, BENCH_IN, BENCH_OUT, BENCH_PARTITIONS (4),
BENCH_TRANSPORT (``zhida`` or ``kafka``), BENCH_DATA_DIR.
"""

from __future__ import annotations

import os
import sys

import faust

from bench.workload import transform
from engine.runtime.kafka import transport


def build() -> faust.App:
    env = os.environ
    scheme = env.get("BENCH_TRANSPORT", transport.SCHEME)
    if scheme == transport.SCHEME:
        transport.register()
    partitions = int(env.get("BENCH_PARTITIONS", "4"))
    app = faust.App(
        env["BENCH_APP_ID"],
        broker=[f"{scheme}://{b.strip()}" for b in env["BENCH_BOOTSTRAP"].split(",")],
        datadir=env.get("BENCH_DATA_DIR", "var/bench-faust"),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=4.0,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        producer_linger=0.005,
        web_enabled=False,
    )
    source = app.topic(env["BENCH_IN"], partitions=partitions)
    sink = app.topic(env["BENCH_OUT"], partitions=partitions)

    @app.agent(source, name="passthrough")
    async def passthrough(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            m = event.message
            await sink.send(key=m.key, value=transform(m.value))

    return app


def main() -> None:
    app = build()
    sys.argv = [sys.argv[0], "worker", "--loglevel", os.environ.get("BENCH_LOGLEVEL", "warn"),
                "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
