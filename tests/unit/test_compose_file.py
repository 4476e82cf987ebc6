"""Static checks of the real-Kafka deployment files (no broker or Docker engine needed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.kafka.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus.yml"
ALERTMANAGER_FILE = ROOT / "deploy" / "alertmanager.yml"
ENV_EXAMPLE = ROOT / ".env.example"
# the compose specification's JSON Schema (github.com/compose-spec/compose-spec,
# schema/compose-spec.json), when vendored next to the AsyncAPI one
COMPOSE_SCHEMA = ROOT / "tests" / "unit" / "data" / "compose-spec.json"


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


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → repository file or directory, for the service's bind mounts."""
    out: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            src, dst = volume.get("source", ""), volume.get("target", "")
        else:
            src, _, rest = str(volume).partition(":")
            dst = rest.split(":", 1)[0]
        if src.startswith((".", "/")):
            out[dst] = (COMPOSE_FILE.parent / src).resolve()
    return out


def _published(service: dict[str, Any]) -> dict[int, str]:
    """Container port → host address it is published on ("" for every interface)."""
    out: dict[int, str] = {}
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out[int(port["target"])] = str(port.get("host_ip", ""))
            continue
        parts = str(port).split(":")
        out[int(parts[-1].split("/")[0])] = parts[0] if len(parts) == 3 else ""
    return out


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
    assert {"kafka", "kafka-init", "worker", "prometheus", "alertmanager",
            "grafana"} <= set(services)


@pytest.mark.skipif(not COMPOSE_SCHEMA.is_file(),
                    reason="compose-spec.json not vendored in tests/unit/data")
def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    import jsonschema

    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(compose)]
    assert errors == []


def test_images_pinned_and_ports_published(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        image = str(svc.get("image", ""))
        if "build" in svc:
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image}"
    assert _published(services["worker"]) == {6066: ""}
    assert _published(services["prometheus"]) == {9090: ""}
    assert _published(services["alertmanager"]) == {9093: ""}
    assert _published(services["grafana"]) == {3000: ""}
    for name in ("prometheus", "alertmanager", "grafana"):
        assert services[name]["healthcheck"]["test"], name


def test_every_bind_mount_is_a_repository_file(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for dst, src in _mounts(svc).items():
            assert src.exists(), f"{name}: {src} (mounted at {dst}) is not in the repository"
            assert ROOT.resolve() in src.parents, f"{name}: {src} is outside the repository"
    grafana = _mounts(services["grafana"])
    grafana_dir = ROOT / "deploy" / "grafana"
    assert grafana["/etc/grafana/dashboards"] == (grafana_dir / "dashboards").resolve()
    provisioned = {dst.rsplit("/", 2)[-2]: src for dst, src in grafana.items()
                   if dst.startswith("/etc/grafana/provisioning/")}
    assert set(provisioned) == {"datasources", "dashboards"}
    assert _mounts(services["alertmanager"])["/etc/alertmanager/alertmanager.yml"] == (
        ALERTMANAGER_FILE.resolve())


def test_every_password_comes_from_env_and_is_documented() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert {"ZHIDA_KAFKA_SIM_PASSWORD", "ZHIDA_GRAFANA_ADMIN_PASSWORD"} <= required
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                   if line and not line.startswith("#"))
    assert required <= set(example), "variables missing from .env.example"
    # nothing else interpolated without a check (no silent empty password)
    assert set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text)) == required


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
    # SASL on every listener, none in clear
    protocols = dict(item.split(":") for item in
                     env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = [item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")]
    assert set(listeners) == set(protocols)
    assert all(p.startswith("SASL_") for p in protocols.values()), protocols
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["SASL_PLAINTEXT"] == "kafka:9092"
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"].lower() == "false"
    assert "kafka-broker-api-versions.sh" in str(kafka["healthcheck"]["test"])
    # Kafka data lives on a named (top-level) volume.
    named = set(compose.get("volumes") or {})
    assert any(_host_path(v) in named for v in kafka.get("volumes", []))


def test_host_listener_for_zhida_simulate(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    env = _env(kafka)
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    host, _, port = advertised["EXTERNAL"].rpartition(":")
    assert host == "localhost"
    assert f"EXTERNAL://:{port}" in env["KAFKA_LISTENERS"].split(",")
    assert "EXTERNAL:SASL_PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert env["KAFKA_LISTENER_NAME_EXTERNAL_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert "external.KafkaServer" in "\n".join(kafka["command"])  # its JAAS section
    # published on the host's loopback only, on the advertised port
    assert _published(kafka) == {int(port): "127.0.0.1"}
    assert f"127.0.0.1:{port}:{port}" in kafka["ports"]


def test_simulator_user_and_its_acls(services: dict[str, Any]) -> None:
    init = services["kafka-init"]
    script = "\n".join(init["command"])
    assert "ZHIDA_KAFKA_SIM_PASSWORD" in _env(init)
    assert 'user zhida-sim "$$ZHIDA_KAFKA_SIM_PASSWORD"' in script
    acls = " ".join(block.replace("\\\n", " ") for block in script.split("\n\n"))
    grants = re.findall(r"allow zhida-sim ((?:--[\w-]+ (?:\"[^\"]*\"|\S+)\s*)+)", acls)
    granted: dict[str, set[str]] = {}
    for grant in grants:
        ops = set(re.findall(r"--operation (\w+)", grant))
        prefixed = "--resource-pattern-type prefixed" in grant
        for topic in re.findall(r'--topic "([^"]*)"', grant):  # "$${p}x" or "$$p": prefix
            topic = topic.replace("$${p}", "").replace("$$p", "")
            granted.setdefault(("prefix:" if prefixed else "") + topic, set()).update(ops)
    for topic in ("intake.complaints", "intake.sensed", "intake.directives", "unit.updates",
                  "citizen.feedback"):
        assert {"Write", "Describe"} <= granted[topic], topic
    for topic in ("prefix:dispatch.", "citizen.notifications", "directive.events"):
        assert {"Read", "Describe"} <= granted[topic], topic
    # nothing more: no Read on inbound topics, no Write on the engine's outputs, no Create
    assert all(ops <= {"Read", "Write", "Describe"} for ops in granted.values())
    assert not any("Read" in granted.get(t, set()) for t in ("intake.complaints",
                                                            "unit.updates"))
    assert granted.get("prefix:", set()) == {"Describe"}


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
    # every rule file is mounted from the repository
    mounts = _mounts(prom)
    for rule_file in config["rule_files"]:
        assert mounts[rule_file].is_file()
    # alerts go to the compose Alertmanager, on its container port
    alertmanagers = [t for am in config["alerting"]["alertmanagers"]
                     for sc in am["static_configs"] for t in sc["targets"]]
    assert alertmanagers == ["alertmanager:9093"]
    assert 9093 in _published(services["alertmanager"])


def test_alertmanager_groups_by_alertname_with_a_default_receiver() -> None:
    config = yaml.safe_load(ALERTMANAGER_FILE.read_text(encoding="utf-8"))
    route = config["route"]
    assert route["group_by"] == ["alertname"]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert route["receiver"] in receivers
    for sub in route.get("routes", []):
        assert sub["receiver"] in receivers
    assert all(r.get("webhook_configs") for r in receivers.values())


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian: apt-get install prometheus)")
def test_promtool_check_config(services: dict[str, Any], tmp_path: Path) -> None:
    """The container's layout rebuilt in a temporary directory: each rule file where the
    compose file mounts it (deploy/prometheus.yml names container paths)."""
    config = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    mounts = _mounts(services["prometheus"])
    local = []
    for i, rule_file in enumerate(config["rule_files"]):
        copy = tmp_path / f"rules_{i}_{Path(rule_file).name}"
        shutil.copyfile(mounts[rule_file], copy)
        local.append(copy.name)
    config["rule_files"] = local
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    out = subprocess.run(["promtool", "check", "config", "prometheus.yml"], cwd=tmp_path,
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    assert f"{len(local)} rule files found" in out.stdout.decode()


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed "
                    "(Debian: apt-get install prometheus-alertmanager)")
def test_amtool_check_config() -> None:
    out = subprocess.run(["amtool", "check-config", str(ALERTMANAGER_FILE)],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()


def test_dockerfile_runs_worker() -> None:
    assert DOCKERFILE.is_file()
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "zhida worker" in text
    assert "pip install ." in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert any(line.strip().startswith("USER ") for line in text.splitlines())
