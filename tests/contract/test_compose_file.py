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
COMPOSE_SCHEMA = ROOT / "tests" / "contract" / "data" / "compose-spec.json"


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


def _host_ports(service: dict[str, Any]) -> dict[int, int]:
    """Container port → host port it is published on."""
    out: dict[int, int] = {}
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out[int(port["target"])] = int(port["published"])
            continue
        parts = str(port).split(":")
        out[int(parts[-1].split("/")[0])] = int(parts[-2])
    return out


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` → name → (host, port); host "" binds every interface."""
    out: dict[str, tuple[str, int]] = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def _voters(value: str) -> dict[int, tuple[str, int]]:
    """``controller.quorum.voters`` (``id@host:port,...``) → node id → (host, port)."""
    out: dict[int, tuple[str, int]] = {}
    for item in value.split(","):
        node, _, address = item.strip().partition("@")
        host, _, port = address.rpartition(":")
        out[int(node)] = (host, int(port))
    return out


def _brokers(services: dict[str, Any]) -> list[str]:
    """The Kafka nodes: official image and KRaft roles (kafka-init runs the image's tools)."""
    return sorted(name for name, svc in services.items()
                  if str(svc.get("image", "")).startswith("apache/kafka:")
                  and "KAFKA_PROCESS_ROLES" in _env(svc))


def _workers(services: dict[str, Any]) -> list[str]:
    """The zhida workers: every service built from the repository's Dockerfile."""
    out = []
    for name, svc in services.items():
        build = svc.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            context, dockerfile = build, "Dockerfile"
        else:
            context, dockerfile = build.get("context", "."), build.get("dockerfile", "Dockerfile")
        if (COMPOSE_FILE.parent / context / dockerfile).resolve() == DOCKERFILE.resolve():
            out.append(name)
    return sorted(out)


def _named_volumes(compose: dict[str, Any], service: dict[str, Any]) -> dict[str, str]:
    """Top-level (named) volume → container path, for the service's volume mounts."""
    named = set(compose.get("volumes") or {})
    out: dict[str, str] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            src, dst = str(volume.get("source", "")), str(volume.get("target", ""))
        else:
            src, _, rest = str(volume).partition(":")
            dst = rest.split(":", 1)[0]
        if src in named:
            out[src] = dst
    return out


def _aliases(service: dict[str, Any], network: str) -> set[str]:
    networks = service.get("networks") or {}
    if isinstance(networks, list):
        return set()
    return set((networks.get(network) or {}).get("aliases") or [])


def _networks(service: dict[str, Any]) -> set[str]:
    networks = service.get("networks")
    if networks is None:
        return {"default"}
    return set(networks)


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


@pytest.fixture(scope="module")
def brokers(services: dict[str, Any]) -> list[str]:
    return _brokers(services)


@pytest.fixture(scope="module")
def workers(services: dict[str, Any]) -> list[str]:
    return _workers(services)


def test_services_present(services: dict[str, Any], brokers: list[str],
                          workers: list[str]) -> None:
    assert {"kafka-init", "prometheus", "alertmanager", "grafana"} <= set(services)
    assert brokers == ["kafka-1", "kafka-2", "kafka-3"]
    assert len(workers) >= 2, workers


@pytest.mark.skipif(not COMPOSE_SCHEMA.is_file(),
                    reason="compose-spec.json not vendored in tests/contract/data")
def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    import jsonschema

    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(compose)]
    assert errors == []


def test_images_pinned_and_ports_published(services: dict[str, Any],
                                           workers: list[str]) -> None:
    for name, svc in services.items():
        image = str(svc.get("image", ""))
        if "build" in svc:
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image}"
    # every worker's HTTP port (6066 in its container) on a host port of its own
    for name in workers:
        assert _published(services[name]) == {6066: ""}, name
    host_ports = [_host_ports(services[name])[6066] for name in workers]
    assert host_ports[0] == 6066
    assert len(set(host_ports)) == len(workers), host_ports
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


def test_three_kraft_nodes_with_one_quorum(compose: dict[str, Any],
                                          services: dict[str, Any],
                                          brokers: list[str]) -> None:
    """Three combined nodes (broker and controller), distinct node ids, one cluster id and
    one controller quorum naming all three at their CONTROLLER listeners."""
    envs = {name: _env(services[name]) for name in brokers}
    images = {str(services[name]["image"]) for name in brokers}
    assert len(images) == 1 and images.pop() == services["kafka-init"]["image"]
    node_ids = {name: int(env["KAFKA_NODE_ID"]) for name, env in envs.items()}
    assert sorted(node_ids.values()) == [1, 2, 3]
    assert len({env["CLUSTER_ID"] for env in envs.values()}) == 1
    assert len({env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs.values()}) == 1
    voters = _voters(envs[brokers[0]]["KAFKA_CONTROLLER_QUORUM_VOTERS"])
    assert set(voters) == set(node_ids.values())
    for name, env in envs.items():
        roles = {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")}
        assert roles == {"broker", "controller"}, name
        assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
        # this node's voter entry is its own CONTROLLER listener
        assert voters[node_ids[name]] == _listeners(env["KAFKA_LISTENERS"])["CONTROLLER"], name
    # each node keeps its log on a named volume of its own
    volumes = [set(_named_volumes(compose, services[name])) for name in brokers]
    assert all(len(v) == 1 for v in volumes), volumes
    assert len(set.union(*volumes)) == len(brokers)
    for name in brokers:
        assert "/var/lib/kafka/data" in _named_volumes(compose, services[name]).values()
        assert _env(services[name])["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"


def test_replication_three_and_min_insync_two(services: dict[str, Any],
                                              brokers: list[str]) -> None:
    for name in brokers:
        env = _env(services[name])
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2", name
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"].lower() == "false", name
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"].lower() == "false", name


def test_every_broker_is_locked_down(compose: dict[str, Any], services: dict[str, Any],
                                     brokers: list[str]) -> None:
    """SASL on every listener; the admin's PLAIN listeners (inter-broker, controller) bound
    to the broker's address on a private network only the brokers and kafka-init join."""
    private = {n for n, net in (compose.get("networks") or {}).items()
               if (net or {}).get("internal") is True}
    assert private, "no internal network for the inter-broker and controller listeners"
    for name in brokers:
        kafka = services[name]
        env = _env(kafka)
        protocols = dict(item.split(":") for item in
                         env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        listeners = _listeners(env["KAFKA_LISTENERS"])
        assert set(listeners) == set(protocols)
        assert all(p.startswith("SASL_") for p in protocols.values()), protocols
        advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
        assert advertised["SASL_PLAINTEXT"] == (name, 9092)
        assert "CONTROLLER" not in advertised
        assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        assert env["KAFKA_SUPER_USERS"] == "User:admin"
        assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
        for listener in ("INTERNAL", "CONTROLLER"):
            host, _ = listeners[listener]
            assert env[f"KAFKA_LISTENER_NAME_{listener}_SASL_ENABLED_MECHANISMS"] == "PLAIN"
            # a private alias of this broker, never a wildcard or a name the clients resolve
            assert host and host not in ("0.0.0.0", "::", name), (name, listener, host)
            assert any(host in _aliases(kafka, net) for net in private), (name, host)
        assert advertised["INTERNAL"] == listeners["INTERNAL"]
        assert _networks(kafka) & private and "default" in _networks(kafka), name
        # every listener has its JAAS section (the admin's two with its PLAIN user)
        script = "\n".join(kafka["command"])
        for listener in listeners:
            assert f"{listener.lower()}.KafkaServer" in script, (name, listener)
        # healthy = answers "admin" on its own INTERNAL listener
        health = str(kafka["healthcheck"]["test"])
        assert "kafka-broker-api-versions.sh" in health and "$$ZHIDA_KAFKA_INTERNAL" in health
        assert env["ZHIDA_KAFKA_INTERNAL"] == "{}:{}".format(*listeners["INTERNAL"])
    # on the private network: the brokers and kafka-init, nothing else
    for net in private:
        members = {n for n, svc in services.items() if net in _networks(svc)}
        assert members == {*brokers, "kafka-init"}, members


def test_host_listener_for_zhida_simulate(services: dict[str, Any],
                                          brokers: list[str]) -> None:
    ports = []
    for name in brokers:
        kafka = services[name]
        env = _env(kafka)
        advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
        host, port = advertised["EXTERNAL"]
        assert host == "localhost"
        assert _listeners(env["KAFKA_LISTENERS"])["EXTERNAL"] == ("", port)
        assert "EXTERNAL:SASL_PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
        assert env["KAFKA_LISTENER_NAME_EXTERNAL_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        # published on the host's loopback only, on the advertised port
        assert _published(kafka) == {port: "127.0.0.1"}, name
        assert f"127.0.0.1:{port}:{port}" in kafka["ports"]
        ports.append(port)
    assert ports[0] == 19092 and len(set(ports)) == len(brokers), ports


def test_kafka_init_reaches_every_broker(services: dict[str, Any],
                                         brokers: list[str]) -> None:
    init = services["kafka-init"]
    assert "network_mode" not in init
    assert _networks(init) == {"kafka-internal"}
    assert {b: init["depends_on"][b]["condition"] for b in brokers} == dict.fromkeys(
        brokers, "service_healthy")
    script = "\n".join(init["command"])
    match = re.search(r"--bootstrap-server (\S+)", script)
    assert match
    internal = {"{}:{}".format(*_listeners(_env(services[b])["KAFKA_ADVERTISED_LISTENERS"])
                               ["INTERNAL"]) for b in brokers}
    assert set(match.group(1).split(",")) == internal
    assert "ZHIDA_KAFKA_ADMIN_PASSWORD" in _env(init)


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


def test_workers_share_the_cluster(compose: dict[str, Any], services: dict[str, Any],
                                   brokers: list[str], workers: list[str]) -> None:
    """Two workers or more, each built from the Dockerfile, on every broker, with
    ZHIDA_REPLICATION=3, its own data volume, instance id and advertised host."""
    every_broker = {"{}:{}".format(*_listeners(_env(services[b])["KAFKA_ADVERTISED_LISTENERS"])
                                   ["SASL_PLAINTEXT"]) for b in brokers}
    volumes: list[str] = []
    instance_ids: list[str] = []
    for name in workers:
        worker = services[name]
        env = _env(worker)
        assert set(env["ZHIDA_BOOTSTRAP"].split(",")) == every_broker, name
        assert env["ZHIDA_REPLICATION"] == "3", name
        # enough partitions that every worker holds some
        assert int(env["ZHIDA_PARTITIONS"]) >= len(workers), name
        # reachable by Prometheus from another container, not only on the loopback
        assert env["ZHIDA_HTTP_HOST"] == "0.0.0.0"
        # and by the other workers (routed requests) at its service name
        assert worker["hostname"] == name
        assert env["ZHIDA_ADVERTISED_HOST"] == name
        assert env["ZHIDA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["ZHIDA_SASL_USERNAME"] == "zhida-engine"
        instance_ids.append(env["ZHIDA_INSTANCE_ID"])
        # its data directory on a named volume of its own
        named = _named_volumes(compose, worker)
        assert len(named) == 1, (name, named)
        (volume, target), = named.items()
        data_dir = env["ZHIDA_DATA_DIR"]
        assert data_dir == target or data_dir.startswith(target.rstrip("/") + "/"), name
        volumes.append(volume)
        depends = worker["depends_on"]
        assert isinstance(depends, dict)
        for broker in brokers:
            assert depends[broker]["condition"] == "service_healthy", (name, broker)
        assert depends["kafka-init"]["condition"] == "service_completed_successfully"
    assert len(set(volumes)) == len(workers), volumes
    assert len(set(instance_ids)) == len(workers) and "auto" not in instance_ids


def test_prometheus_scrapes_every_worker(services: dict[str, Any],
                                         workers: list[str]) -> None:
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
    # each worker once, on its container port: the same list as the compose file's workers
    assert sorted(targets) == sorted(f"{name}:6066" for name in workers)
    assert set(prom["depends_on"]) >= set(workers)
    # every rule file is mounted from the repository
    mounts = _mounts(prom)
    for rule_file in config["rule_files"]:
        assert mounts[rule_file].is_file()
    # alerts go to the compose Alertmanager, on its container port
    alertmanagers = [t for am in config["alerting"]["alertmanagers"]
                     for sc in am["static_configs"] for t in sc["targets"]]
    assert alertmanagers == ["alertmanager:9093"]
    assert 9093 in _published(services["alertmanager"])


# ---- the worker's side: what ZHIDA_REPLICATION=3 makes of its topics and producers ----

def _worker_settings(services: dict[str, Any], name: str,
                     monkeypatch: pytest.MonkeyPatch) -> Any:
    from engine.runtime.settings import Settings

    for key, value in _env(services[name]).items():
        if key.startswith("ZHIDA_"):  # ${VAR:?...} interpolations: any value will do
            monkeypatch.setenv(key, "x" if value.startswith("${") else value)
    monkeypatch.delenv("PRODUCER_ACKS", raising=False)  # faust's env beats its arguments
    return Settings.from_env()


def test_worker_topics_replicated_with_acks_all(services: dict[str, Any], workers: list[str],
                                                monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """The compose worker's settings: faust's own topics (changelog, leader, repartition)
    take ZHIDA_REPLICATION as topic_replication_factor, its producer waits for acks=all,
    and the topics the worker creates carry min.insync.replicas=2."""
    from engine.runtime.app import Engine
    from engine.runtime.kafka.admin import topic_configs
    from engine.runtime.world import load_world

    settings = _worker_settings(services, workers[0], monkeypatch)
    assert settings.replication == 3
    assert topic_configs(settings.replication) == {"min.insync.replicas": "2"}
    settings = settings.model_copy(update={"store": "memory://", "data_dir": tmp_path})
    engine = Engine(settings, load_world())
    conf = engine.app.conf
    assert conf.topic_replication_factor == 3
    assert conf.producer_acks == -1  # "all"
    assert engine.cases.changelog_topic.replicas in (None, 3)  # None: the app's factor


def test_min_insync_replicas_only_with_three_replicas() -> None:
    from engine.runtime.kafka.admin import topic_configs

    assert topic_configs(1) == {}
    assert topic_configs(2) == {}
    assert topic_configs(3) == {"min.insync.replicas": "2"}
    assert topic_configs(5) == {"min.insync.replicas": "2"}


@pytest.mark.parametrize(("replication", "configs"), [
    (1, {}), (3, {"min.insync.replicas": "2"}),
])
async def test_ensure_topics_creates_with_the_replication_settings(
    replication: int, configs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.runtime.kafka.admin as admin_module
    from engine.runtime.settings import Settings

    created: list[Any] = []

    class FakeAdmin:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

        async def start(self) -> None: ...

        async def close(self) -> None: ...

        async def list_topics(self) -> list[str]:
            return ["zhida.intake.complaints"]

        async def create_topics(self, topics: list[Any]) -> Any:
            created.extend(topics)
            # one refused (38: replication factor above the brokers), one raced (36)
            return type("Response", (), {"topic_errors": [
                (topics[0].name, 38, "Replication factor: 3 larger than available brokers: 1"),
                (topics[1].name, 36, "exists")]})()

    monkeypatch.setattr(admin_module, "AIOKafkaAdminClient", FakeAdmin)
    settings = Settings(bootstrap="kafka-1:9092,kafka-2:9092", replication=replication,
                        partitions=6)
    missing = await admin_module.ensure_topics(settings, ["500103"], timeout=1.0)
    assert missing and "zhida.intake.complaints" not in missing
    assert [t.name for t in created] == missing
    kept = admin_module.retained(settings.prefix)
    assert kept == {"zhida.intake.complaints", "zhida.intake.sensed", "zhida.intake.directives",
                    "zhida.unit.updates", "zhida.citizen.feedback", "zhida.case.commands"}
    for topic in created:
        assert topic.replication_factor == replication
        assert topic.num_partitions == 6
        if topic.name in kept:  # what zhida replay reads back: 400 days by default
            assert topic.topic_configs == {**configs, "retention.ms": str(400 * 86_400_000)}
        elif topic.name == "zhida.insights":  # rulings are read back while their precedents live
            assert topic.topic_configs == {**configs, "retention.ms": "-1"}
        else:
            assert topic.topic_configs == configs


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
