"""The faust App the worker runs on, configured from ``Settings``, and the case table.

Everything faust is told about the cluster, the group and the local store is here; what the
engine changes inside faust and aiokafka is in ``engine/runtime/kafka/``.
"""

from __future__ import annotations

import socket

import faust

from engine.runtime.kafka import recovery, transport
from engine.runtime.settings import Settings


def configure_transport(settings: Settings) -> None:
    """The process-wide settings of the engine's Kafka transport (its own aiokafka clients,
    the fetch wait, the bulk restore threshold): set before any client is built."""
    transport.register()
    transport.CLIENT_KWARGS.clear()
    transport.CLIENT_KWARGS.update(settings.client_kwargs())
    transport.FETCH_MAX_WAIT_MS = settings.fetch_max_wait_ms
    recovery.BULK_MIN = settings.bulk_restore_min


def rocksdb_options(settings: Settings) -> dict[str, int]:
    mib = 1024 * 1024
    return {"write_buffer_size": settings.rocksdb_write_buffer_mb * mib,
            "max_write_buffer_number": 2,
            "target_file_size_base": 4 * settings.rocksdb_write_buffer_mb * mib,
            "block_cache_size": settings.rocksdb_block_cache_mb * mib}


def credentials(settings: Settings) -> faust.SASLCredentials | None:
    if settings.security_protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if settings.security_protocol == "SASL_SSL":
        import ssl

        ssl_context = ssl.create_default_context()
    return faust.SASLCredentials(username=settings.sasl_username,
                                 password=settings.sasl_password,
                                 mechanism=settings.sasl_mechanism, ssl_context=ssl_context)


def advertised_host(settings: Settings) -> str:
    """The host in this worker's ``canonical_url``, which the group's assignor hands to every
    member: the others route ``/cases/{id}`` and ask for this worker's share of the city's
    figures there. A wildcard bind address is no address to call, so then the host name."""
    if settings.advertised_host:
        return settings.advertised_host
    if settings.http_host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return settings.http_host


def build_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.app_id,
        broker=[f"{transport.SCHEME}://{b.strip()}" for b in settings.bootstrap.split(",")],
        store=settings.store,
        datadir=str(settings.data_dir),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        topic_allow_declare=True,
        table_standby_replicas=settings.standby_replicas,
        consumer_auto_offset_reset="earliest",
        # the defaults make the group join wait ~30 s on the embedded broker (NOTES.md)
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=1.0,
        consumer_group_instance_id=settings.instance_id or None,  # KIP-345, opt-in
        broker_commit_interval=1.0,
        web_enabled=True,
        web_port=settings.http_port,
        web_bind=settings.http_host,
        web_host=advertised_host(settings),  # canonical_url: what the other workers call
        producer_linger=settings.producer_linger,
        producer_acks=-1,  # acks=all: every in-sync replica (min.insync.replicas, admin.py)
        # bulk-loads a changelog partition the local store is far behind
        # (engine/runtime/kafka/recovery.py)
        TableManager="engine.runtime.kafka.recovery:TableManager",
        broker_credentials=credentials(settings),
    )


def case_table(app: faust.App, settings: Settings) -> faust.Table:
    """One table for every record of the case writer (engine/runtime/store.py): raw bytes,
    read and written by partition by the writer itself; faust keeps the changelog topic,
    recovery on assignment and the local store."""
    table = app.Table(
        "cases", partitions=settings.partitions, key_type=bytes, value_type=bytes,
        help="case writer records: states, files, history, partition marks",
        options=rocksdb_options(settings) if settings.store.startswith("rocksdb") else None,
    )
    # faust derives table serializers from key/value types only (falling back to json)
    # and builds the changelog topic with them at once: without this, recovery cannot
    # decode the changelog and waits forever (seen on the embedded broker)
    table.key_serializer = "raw"
    table.value_serializer = "raw"
    table.changelog_topic = table._new_changelog_topic()
    return table
