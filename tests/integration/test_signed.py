"""Signed messages on the real broker (CONTRACT.md "Signed messages"): a worker with a key set
takes updates and directives signed by their unit's key and dead-letters everything else as
``unauthorized``, changing nothing; a rotated key works, a revoked one is refused after the
worker reloads the key set (no restart)."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio

from engine.core.ids import case_id_for
from engine.runtime.signing import Signer
from engine.tools import keys
from engine.tools.broker import EmbeddedBroker, free_port
from tests.support.broker import NAMES, Collector, Worker, collecting, own_broker

pytestmark = pytest.mark.integration

STREET, OTHER, DISTRICT, CITY = "500103001", "500103003", "500103", "500000"


@pytest.fixture(scope="module")
def signed_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with own_broker(tmp_path_factory, "signed") as b:
        yield b


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    jwks, private = d / "jwks.json", d / "private"
    keys.issue(jwks, [STREET, OTHER, CITY], private)
    return jwks, private


@pytest.fixture(scope="module")
def worker(signed_broker: EmbeddedBroker, keyring: tuple[Path, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    d = tmp_path_factory.mktemp("signed-worker")
    w = Worker(signed_broker.bootstrap, free_port(), d / "data", d / "worker.log",
               env={"ZHIDA_KEYS": str(keyring[0])}).start()
    yield w
    w.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def out(signed_broker: EmbeddedBroker, worker: Worker) -> AsyncIterator[Collector]:
    async with collecting(signed_broker.bootstrap) as c:
        yield c


def signer(keyring: tuple[Path, Path], unit: str, version: int = 1) -> Signer:
    return Signer.from_file(keyring[1] / f"{unit}.{version}.jwk")


async def send(out: Collector, topic: str, body: dict[str, Any], key: str,
               sig: str | None) -> None:
    raw = orjson.dumps(body)
    headers = [("zhida-signature", sig.encode())] if sig else []
    await out.producer.send_and_wait(topic, raw, key=key.encode(), headers=headers)


def update(case_id: str, actor: str, action: str = "ack") -> dict[str, Any]:
    return {"update_id": uuid.uuid4().hex, "actor": actor, "action": action,
            "case_id": case_id, "at": datetime.now(UTC).isoformat()}


def dead(out: Collector, update_id: str) -> dict[str, Any] | None:
    for r in out.where(NAMES.deadletter):
        if update_id in (r.value.get("original") or ""):
            return r.value
    return None


async def open_case(out: Collector, unit: str = STREET) -> str:
    cid = f"sig-{uuid.uuid4().hex[:10]}"
    await out.send(NAMES.complaints, {
        "complaint_id": cid, "channel": "hotline", "category": "road_damage",
        "description": "路面塌陷", "location": {"unit": unit},
        "reported_at": datetime.now(UTC).isoformat()}, key=cid)
    case_id = case_id_for("complaint", cid)
    await out.wait_for(lambda: out.where(NAMES.case_events, case_id=case_id,
                                         type="dispatched"), timeout=20)
    return case_id


async def test_only_updates_signed_by_their_actor_change_a_case(
        worker: Worker, out: Collector, keyring: tuple[Path, Path]) -> None:
    case_id = await open_case(out)
    street = signer(keyring, STREET)
    refused: dict[str, str] = {}
    # unsigned
    u = update(case_id, STREET)
    await send(out, NAMES.unit_updates, u, case_id, None)
    refused[u["update_id"]] = "zhida-signature"
    # signed by another unit's key, claiming to be the street
    u = update(case_id, STREET)
    await send(out, NAMES.unit_updates, u, case_id, signer(keyring, OTHER).sign(
        orjson.dumps(u)))
    refused[u["update_id"]] = OTHER
    # tampered: signed, then one byte of the body changed (still a valid update)
    u = {**update(case_id, STREET), "note": "signed A"}
    raw = orjson.dumps(u)
    sig = street.sign(raw)
    await out.producer.send_and_wait(NAMES.unit_updates, raw.replace(b"signed A", b"signed B"),
                                     key=case_id.encode(),
                                     headers=[("zhida-signature", sig.encode())])
    refused[u["update_id"]] = "signature"
    # a malformed header
    u = update(case_id, STREET)
    await send(out, NAMES.unit_updates, u, case_id, "not-a-jws")
    refused[u["update_id"]] = "malformed"
    await out.wait_for(lambda: all(dead(out, k) for k in refused), timeout=20)
    for k, word in refused.items():
        d = dead(out, k)
        assert d["reason"] == "unauthorized", d
        assert word.lower() in d["detail"].lower(), d["detail"]
    # nothing changed the case
    assert not out.where(NAMES.case_events, case_id=case_id, type="acknowledged")
    # the street's own signature is taken
    u = update(case_id, STREET)
    await send(out, NAMES.unit_updates, u, case_id, street.sign(orjson.dumps(u)))
    await out.wait_for(lambda: out.where(NAMES.case_events, case_id=case_id,
                                         type="acknowledged"), timeout=20)
    # replayed: the same signed bytes again are a counted duplicate, not a second change
    before = worker.metric("zhida_duplicates_total", kind="update")
    await send(out, NAMES.unit_updates, u, case_id, street.sign(orjson.dumps(u)))
    await out.wait_for(lambda: worker.metric("zhida_duplicates_total", kind="update")
                       > before, timeout=20)
    assert len(out.where(NAMES.case_events, case_id=case_id, type="acknowledged")) == 1


async def test_directives_need_the_issuer_signature(worker: Worker, out: Collector,
                                                    keyring: tuple[Path, Path]) -> None:
    def directive() -> dict[str, Any]:
        return {"directive_id": f"SD-{uuid.uuid4().hex[:8]}", "issuer": CITY, "title": "排查",
                "body": "排查", "targets": {"units": [STREET]}, "ack_within": "PT1H",
                "issued_at": datetime.now(UTC).isoformat()}

    good, forged = directive(), directive()
    await send(out, NAMES.directives, good, good["directive_id"],
               signer(keyring, CITY).sign(orjson.dumps(good)))
    await send(out, NAMES.directives, forged, forged["directive_id"],
               signer(keyring, STREET).sign(orjson.dumps(forged)))
    await out.wait_for(lambda: out.where(NAMES.directive_events,
                                         directive_id=good["directive_id"], type="delivered"),
                       timeout=20)
    await out.wait_for(lambda: [r for r in out.where(NAMES.deadletter)
                                if r.key == forged["directive_id"]], timeout=20)
    d = next(r.value for r in out.where(NAMES.deadletter) if r.key == forged["directive_id"])
    assert d["reason"] == "unauthorized"
    assert not out.where(NAMES.directive_events, directive_id=forged["directive_id"])
    # the target signs its task
    did = good["directive_id"]
    ack = {"update_id": uuid.uuid4().hex, "actor": STREET, "action": "ack",
           "directive_id": did, "at": datetime.now(UTC).isoformat()}
    await send(out, NAMES.unit_updates, ack, did, signer(keyring, STREET).sign(
        orjson.dumps(ack)))
    await out.wait_for(lambda: out.where(NAMES.directive_events, directive_id=did,
                                         type="acknowledged"), timeout=20)


async def test_rotated_key_works_revoked_key_refused_after_reload(
        worker: Worker, out: Collector, keyring: tuple[Path, Path]) -> None:
    jwks, private = keyring
    a, b = await open_case(out, OTHER), await open_case(out, OTHER)
    reloads = worker.log_tail(10**6).count("keys_reloaded")
    keys.rotate(jwks, OTHER, private)  # OTHER#2 next to OTHER#1
    os.kill(worker.proc.pid, signal.SIGHUP)  # reload now (the file watch would too)
    await out.wait_for(lambda: worker.log_tail(10**6).count("keys_reloaded") > reloads,
                       timeout=15)
    u = update(a, OTHER)
    await send(out, NAMES.unit_updates, u, a, signer(keyring, OTHER, 2).sign(orjson.dumps(u)))
    await out.wait_for(lambda: out.where(NAMES.case_events, case_id=a, type="acknowledged"),
                       timeout=20)
    u = update(b, OTHER, "progress")  # the old version is still accepted
    await send(out, NAMES.unit_updates, u, b, signer(keyring, OTHER, 1).sign(orjson.dumps(u)))
    reloads = worker.log_tail(10**6).count("keys_reloaded")
    keys.revoke(jwks, f"{OTHER}#2")
    os.kill(worker.proc.pid, signal.SIGHUP)
    await out.wait_for(lambda: worker.log_tail(10**6).count("keys_reloaded") > reloads,
                       timeout=15)
    u2 = update(b, OTHER)
    await send(out, NAMES.unit_updates, u2, b, signer(keyring, OTHER, 2).sign(
        orjson.dumps(u2)))
    await out.wait_for(lambda: dead(out, u2["update_id"]), timeout=20)
    d = dead(out, u2["update_id"])
    assert d["reason"] == "unauthorized" and f"{OTHER}#2" in d["detail"]
    assert not out.where(NAMES.case_events, case_id=b, type="acknowledged")
