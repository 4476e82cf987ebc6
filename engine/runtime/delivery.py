"""The case writer's delivery: produce a phase's records and wait until the brokers have all
of them, retrying the lot (engine/runtime/writer.py, phases 1 and 2).

Resending is safe: every record is deterministic, so a retry at worst duplicates with the same
ids. A dead letter the brokers refuse for good stops the writer visibly, never silently.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from engine.runtime import deadletter, logs
from engine.runtime.outputs import Record

if TYPE_CHECKING:
    from engine.runtime.app import Engine

log = logs.get("zhida.writer")

RETRY_FIRST = 0.2
RETRY_MAX = 5.0
_WRITER_STOP = ("case_commands", None)  # the writer's entry in ``Outputs.letter_stops``


async def deliver(engine: Engine, records: list[Record]) -> dict[tuple[str, int], int]:
    """Produce and wait for every record; retry the lot until the brokers take it.

    Returns the highest offset written per (topic, partition). Resending is safe: every
    record is deterministic, so a retry at worst duplicates with the same ids.

    A dead letter the brokers refuse for good (too large for the topic, no ACL: bounded
    letters cannot be too large for the producer) is logged ``deadletter_failed`` and
    counted once, and ``/readyz`` reports the writer stopped (engine/runtime/deadletter.py): a
    batch spans partitions and is written whole, so the writer cannot skip the letter nor
    pause one partition; it keeps retrying slowly, the commands stay uncommitted, and it
    goes on by itself once the cause is fixed.
    """
    if not records:
        return {}
    delay = RETRY_FIRST
    stopped = False
    while True:
        done, failed = await _produce(engine, records)
        if not failed:
            if stopped:
                engine.outputs.letter_stops.clear(_WRITER_STOP)
                log.info("deadletter_sent_after_failure", records=len(records))
            ends: dict[tuple[str, int], int] = {}
            for md in done:
                key = (md.topic, md.partition)
                ends[key] = max(ends.get(key, -1), md.offset)
            return ends
        error = failed[0][1]
        engine.metrics.produce_retries.inc()
        log.warning("produce_retry", records=len(records), failed=len(failed),
                    error=repr(error)[:300], retry_in=delay)
        letters = [(r, e) for r, e in failed
                   if r.topic == engine.names.deadletter and not deadletter.retriable(e)]
        if letters and not stopped:
            stopped = True
            _letters_failed(engine, letters)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX)

async def _produce(engine: Engine, records: list[Record]
                   ) -> tuple[list[Any], list[tuple[Record, BaseException]]]:
    """Send every record and wait: (metadata of each, []) or ([], the records that
    failed with their errors); a record the producer refuses at once ends the round."""
    producer = engine.app.producer
    futures = []
    for r in records:
        try:
            futures.append(await producer.send(r.topic, r.key, r.value, r.partition, None,
                                               r.headers))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            return [], [(r, e)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    failed = [(r, x) for r, x in zip(records, results, strict=True)
              if isinstance(x, BaseException)]
    return ([], failed) if failed else (results, [])

def _letters_failed(engine: Engine, letters: list[tuple[Record, BaseException]]) -> None:
    """Log and count dead letters refused for good, once per stuck batch."""
    where = ""
    for r, e in letters:
        engine.metrics.deadletter_failures.labels("case_commands").inc()
        try:  # where the input was, from the letter (never its content)
            body = orjson.loads(r.value or b"{}")
        except orjson.JSONDecodeError:
            body = {}
        where = f"{body.get('source_topic')}[{body.get('partition')}]@{body.get('offset')}"
        log.error("deadletter_failed", consumer="case_commands", reason=body.get("reason"),
                  topic=body.get("source_topic"), partition=body.get("partition"),
                  offset=body.get("offset"), error=deadletter.error_name(e),
                  message=repr(e)[:300], stopped="case_commands (every partition)")
    engine.outputs.letter_stops.set(_WRITER_STOP, deadletter.Stop(
        "case_commands", where, deadletter.error_name(letters[0][1]), None))
