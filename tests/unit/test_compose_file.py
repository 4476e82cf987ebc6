"""Static checks of the real-Kafka deployment files (no broker or Docker engine needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.kafka.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus.yml"


def _env(service: dict[str, Any]) -> dict[str, str]:
    """Normalise a compose ``environment`` (mapping or ``KEY=VALUE`` list) to a dict."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        out: dict[str, str] = {}
        for item in env:
            key, _, value = str(item).partition("=")
            out[key] = value
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _host_path(volume: Any) -> str | None:
    """Host side of a compose volume entry (short ``src:dst[:mode]`` or long syntax)."""
    if isinstance(volume, dict):
        return volume.get("source")
    return str(volume).split(":", 1)[0]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"missing {COMPOSE_FILE.name}"
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    svcs = compose.get("services")
    assert isinstance(svcs, dict)
    return svcs


def test_services_present(services: dict[str, Any]) -> None:
    assert {"kafka", "worker", "prometheus"} <= set(services)


def test_kafka_is_official_kraft_combined_node(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    kafka = services["kafka"]
    assert str(kafka["image"]).startswith("apache/kafka")
    env = _env(kafka)
    roles = {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert {"broker", "controller"} <= roles
    assert "KAFKA_NODE_ID" in env
    assert "KAFKA_CONTROLLER_QUORUM_VOTERS" in env
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"].lower() == "false"
    assert "kafka-broker-api-versions.sh" in str(kafka["healthcheck"]["test"])
    # Kafka data lives on a named (top-level) volume.
    named = set(compose.get("volumes") or {})
    assert any(_host_path(v) in named for v in kafka.get("volumes", []))


def test_worker_built_from_dockerfile_and_points_at_kafka(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert _env(worker)["ZHIDA_BOOTSTRAP"] == "kafka:9092"
    # reachable by Prometheus from another container, not only on the loopback
    assert _env(worker)["ZHIDA_HTTP_HOST"] == "0.0.0.0"

    build = worker["build"]
    if isinstance(build, str):
        context, dockerfile = build, "Dockerfile"
    else:
        context, dockerfile = build.get("context", "."), build.get("dockerfile", "Dockerfile")
    dockerfile_path = (COMPOSE_FILE.parent / context / dockerfile).resolve()
    assert dockerfile_path.is_file()
    assert dockerfile_path == DOCKERFILE.resolve()

    depends = worker["depends_on"]
    assert isinstance(depends, dict)
    assert depends["kafka"]["condition"] == "service_healthy"
    assert any("6066" in str(p) for p in worker.get("ports", []))


def test_prometheus_mounts_scrape_config(services: dict[str, Any]) -> None:
    prom = services["prometheus"]
    mounted = [
        (COMPOSE_FILE.parent / host).resolve()
        for host in (_host_path(v) for v in prom.get("volumes", []))
        if host
    ]
    assert PROMETHEUS_FILE.resolve() in mounted
    assert PROMETHEUS_FILE.is_file()

    config = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    zhida = jobs["zhida"]
    assert zhida.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in zhida["static_configs"] for t in sc["targets"]]
    assert "worker:6066" in targets


def test_dockerfile_runs_worker() -> None:
    assert DOCKERFILE.is_file()
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "zhida worker" in text
    assert "pip install ." in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert any(line.strip().startswith("USER ") for line in text.splitlines())
