"""Configuration from the environment (``ZHIDA_*``), overridable by CLI flags."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"ZHIDA_{name}", default)


class Settings(BaseModel):
    bootstrap: str = "127.0.0.1:9092"
    app_id: str = "zhida"
    prefix: str = "zhida."
    partitions: int = Field(default=4, ge=1)
    replication: int = Field(default=1, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int = 6066
    # the host other workers reach this one at (faust's canonical_url: routed /cases/{id}
    # and the city's figures); unset: http_host, or this machine's name when that is 0.0.0.0
    advertised_host: str = ""
    topology: Path | None = None
    catalogue: Path | None = None
    policy: Path | None = None
    data_dir: Path = Path("var")
    # local state: RocksDB keeps it across restarts, so recovery reads the changelog's tail
    store: str = "rocksdb://"
    # RocksDB memory per partition (faust's defaults are 64 MiB x3 write buffers and a 2 GiB
    # block cache per partition: the worker's RSS grew with the cases); MiB
    rocksdb_write_buffer_mb: int = Field(default=8, ge=1)
    rocksdb_block_cache_mb: int = Field(default=32, ge=1)
    # consumer group timing (measured, docs/operations.md): a SIGKILLed worker's partitions
    # wait out its session, so the session is short; real Kafka refuses sessions below its
    # group.min.session.timeout.ms (6 s by default): set ZHIDA_SESSION_TIMEOUT there
    session_timeout: float = Field(default=3.0, gt=0)
    rebalance_timeout: float = Field(default=2.0, gt=0)
    # static membership (KIP-345), off by default: Tansu 0.6.0 adds ~3 s to every join with
    # it; on real Kafka "auto" (<hostname>-<http port>) lets a restarted worker rejoin at once
    instance_id: str = ""
    # warm copies of each case-table partition on other workers (faust's
    # table_standby_replicas): a SIGKILLed worker's partitions move to a worker that reads
    # only their changelog's tail. Measured (docs/benchmarks-failover.md, 300k open cases,
    # 3 workers): first new case 7.7 s after the kill with 1, 9.9 s with 0. Refused unless
    # ``standby_replicas_unsafe``: in the city day under kill -9 with 1, a promoted standby
    # lacked changelog records and 67 case events forked (docs/operations.md "Failover")
    standby_replicas: int = Field(default=0, ge=0)
    standby_replicas_unsafe: bool = False
    # measured (docs/benchmarks.md): the writer awaits its sends twice per batch, so a long
    # linger is pure waiting; 1 ms linger with a 10 ms batch window gave the best throughput
    # (1,202/s median against 1,081/s at 5 ms / 5 ms) and the lower latency
    producer_linger: float = Field(default=0.001, ge=0)  # seconds a produce batch may wait
    # the case writer waits for delivery once per batch: up to this many commands, gathered
    # for at most this long once the first has arrived
    writer_batch_max: int = Field(default=500, ge=1)
    writer_batch_within: float = Field(default=0.01, gt=0)
    log_level: str = "info"
    # consumer fetch wait, milliseconds: bounds the latency each hop adds (faust hard-codes
    # 1500; engine/runtime/kafka/transport.py)
    fetch_max_wait_ms: int = Field(default=50, ge=0)
    # changelog records behind before a partition is bulk-loaded (engine/runtime/kafka/
    # recovery.py); below it faust's own path is fine
    bulk_restore_min: int = Field(default=20_000, ge=0)
    # readiness checks (engine/runtime/health.py): seconds between them, brokers unreachable
    # for this long, a partition with records waiting and no progress for this long
    health_interval: float = Field(default=2.0, gt=0)
    broker_down_seconds: float = Field(default=6.0, gt=0)
    stall_seconds: float = Field(default=20.0, gt=0)
    # how long a command waits for the brokers before it gives up with one line naming them
    # (``zhida worker``, ``simulate``, ``tail``, ``lag``, ``deadletters``), seconds
    connect_timeout: float = Field(default=15.0, gt=0)
    source: str = "/zhida/engine"
    # days the input topics and case.commands keep their records (retention.ms of the topics
    # the worker creates): ``zhida replay`` decides a period again from them (docs/replay.md)
    input_retention: int = Field(default=400, ge=1)
    # signed messages (CONTRACT.md "Signed messages", engine/runtime/signing.py): the JWKS of the
    # units' public keys; unset, nothing is checked
    keys: Path | None = None
    keys_poll: float = Field(default=5.0, gt=0)  # seconds between checks of the file
    # Kafka authentication (docs/security.md): SASL_PLAINTEXT or SASL_SSL with SCRAM on a
    # locked-down cluster; PLAINTEXT (the default) on the embedded broker
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: str | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _standbys_only_when_unsafe_accepted(self) -> Settings:
        if self.standby_replicas and not self.standby_replicas_unsafe:
            raise ValueError(
                f"standby replicas ({self.standby_replicas}) are off in this version: a "
                "promoted standby missed changelog records and forked case histories under "
                "kill -9 (docs/operations.md, Failover); ZHIDA_STANDBY_REPLICAS_UNSAFE=1 "
                "runs them anyway, for measurement only")
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """The authentication arguments of every aiokafka client the engine opens."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        kw: dict[str, Any] = {"security_protocol": self.security_protocol,
                              "sasl_mechanism": self.sasl_mechanism,
                              "sasl_plain_username": self.sasl_username,
                              "sasl_plain_password": self.sasl_password}
        if self.security_protocol == "SASL_SSL":
            import ssl

            kw["ssl_context"] = ssl.create_default_context()
        return kw

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {}
        for name in cls.model_fields:
            v = _env(name.upper())
            if v is not None:
                values[name] = v
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls.model_validate(values)
        if settings.instance_id.lower() == "auto":
            settings.instance_id = f"{socket.gethostname()}-{settings.http_port}"
        return settings
