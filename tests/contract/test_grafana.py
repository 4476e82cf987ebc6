"""The provisioned Grafana dashboard: valid, wired to the provisioned data source, and every
PromQL expression names only metrics (and labels) that docs/operations.md documents."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.runtime.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "zhida.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "zhida.yml"
COMPOSE_FILE = ROOT / "docker-compose.kafka.yml"

# a metrics table row of docs/operations.md (as tests/contract/test_metrics_doc.py reads it)
ROW = re.compile(r"^\|\s*`(?P<name>[a-z_]+)`\s*\|(?P<labels>[^|]*)\|(?P<meaning>[^|]+)\|$")
# labels Prometheus itself adds (target labels; histogram buckets)
BUILTIN_LABELS = {"instance", "job", "le", "__name__"}
# Grafana's variables, replaced by something PromQL accepts before parsing
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
                "$instance": ".*"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "atan2", "inf", "nan", "start", "end"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def documented_metrics() -> dict[str, set[str]]:
    """Metric name → its label names, from the metrics table of docs/operations.md."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, set[str]] = {}
    for line in section.splitlines():
        m = ROW.match(line.strip())
        if m:
            ticked = re.findall(r"`([^`]+)`", m["labels"])
            rows[m["name"]] = {ticked[0]} if ticked else set()
    assert rows, "no metrics table in docs/operations.md"
    return rows


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression uses; functions and keywords left out."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|`[^`]*`', '""', expr)  # string literals
    labels: set[str] = set()
    for body in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", body))
    for body in re.findall(
            r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        labels |= {x.strip() for x in body.split(",") if x.strip()}
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ",
                  text)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(?!\w)(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names, labels


def query_names(query: str) -> tuple[set[str], set[str]]:
    """promql_names, also for Grafana's ``label_values(selector, label)`` variable queries."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*", query)
    if not m:
        return promql_names(query)
    names, labels = promql_names(m.group(1))
    return names, labels | {m.group(2)}


def test_promql_names_extracts_metrics_not_functions() -> None:
    names, labels = promql_names(
        'sum by (kind) (rate(zhida_x_total{instance=~"$instance",kind!="a{b}"}[5m])) / '
        "ignoring(kind) group_left sum(up) + 1e3 * process_cpu_seconds_total offset 5m")
    assert names == {"zhida_x_total", "up", "process_cpu_seconds_total"}
    assert labels == {"kind", "instance"}
    assert query_names("label_values(zhida_ready, instance)") == ({"zhida_ready"}, {"instance"})


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested (collapsed) panels included."""
    out: list[dict[str, Any]] = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    uids = [ds["uid"] for ds in config["datasources"]]
    assert len(uids) == len(set(uids)), "data source uids not unique"
    return {ds["uid"]: ds for ds in config["datasources"]}


def test_dashboard_is_a_grafana_10_or_11_dashboard(dashboard: dict[str, Any]) -> None:
    # 36 (Grafana 9.x) < schemaVersion ≤ 41 (Grafana 11.6): newer ones are migrated forward
    assert 37 <= dashboard["schemaVersion"] <= 41
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["title"] and dashboard.get("id") is None  # provisioned: no database id
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids not unique"
    for p in panels(dashboard):
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, p["title"]
        assert p.get("title"), f"panel {p['id']} has no title"
        if p["type"] != "row" and p["type"] != "text":
            assert p.get("targets"), f"panel {p['title']!r} queries nothing"
    for t in (t for p in panels(dashboard) for t in p.get("targets", [])):
        assert t["expr"].strip() and t["refId"]


def test_dashboard_rows(dashboard: dict[str, Any]) -> None:
    rows = [p["title"].lower() for p in panels(dashboard) if p["type"] == "row"]
    for word in ("overview", "district", "slo", "timer", "kafka", "error"):
        assert any(word in r for r in rows), f"no row about {word}: {rows}"


def test_every_query_uses_the_provisioned_prometheus(dashboard: dict[str, Any]) -> None:
    sources = provisioned_datasources()
    prom = [uid for uid, ds in sources.items() if ds["type"] == "prometheus"]
    assert len(prom) == 1
    wanted = {"type": "prometheus", "uid": prom[0]}
    for p in panels(dashboard):
        if p.get("targets"):
            assert p["datasource"] == wanted, p["title"]
            for t in p["targets"]:
                assert t.get("datasource", wanted) == wanted, p["title"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"] == wanted
    assert sources[prom[0]]["url"] == "http://prometheus:9090"


def test_every_expression_names_documented_metrics_only(dashboard: dict[str, Any]) -> None:
    docs = documented_metrics()
    types = {f.name: f.type for f in Metrics().registry.collect()}
    allowed_labels = BUILTIN_LABELS | {label for labels in docs.values() for label in labels}
    exprs = expressions(dashboard)
    assert len(exprs) > 30
    used: set[str] = set()
    for expr in exprs:
        names, labels = query_names(expr)
        assert names, f"no metric in {expr!r}"
        for name in names:
            base = name
            if name not in docs and name.endswith(HISTOGRAM_SUFFIXES):
                base = name.rsplit("_", 1)[0]
                assert types.get(base) == "histogram", f"{name}: {base} is not a histogram"
            assert base in docs, f"{name} (in {expr!r}) is not in docs/operations.md"
            used.add(base)
        assert labels <= allowed_labels, f"unknown labels {labels - allowed_labels} in {expr!r}"
    # the rows the dashboard promises are there
    for name in ("zhida_cases", "zhida_inputs_total", "zhida_dispatch_orders_total",
                 "zhida_case_events_total", "zhida_directive_events_total",
                 "zhida_intake_to_dispatch_seconds", "zhida_ready", "zhida_timers_armed",
                 "zhida_timer_firings_total", "zhida_timer_lateness_seconds",
                 "zhida_timer_oldest_due_seconds", "zhida_calendar_fallback_years",
                 "zhida_consumer_lag_messages", "zhida_deadletters_total",
                 "zhida_duplicates_total", "zhida_produce_retries_total",
                 "zhida_offset_holes_total"):
        assert name in used, f"the dashboard does not show {name}"


def test_slo_panels_measure_against_one_second(dashboard: dict[str, Any]) -> None:
    slo = [e for e in expressions(dashboard) if "zhida_intake_to_dispatch_seconds_bucket" in e]
    assert any("histogram_quantile(0.99" in e for e in slo)
    assert any("histogram_quantile(0.5" in e for e in slo)
    # the 1 s bucket: prometheus_client writes le="1.0", Prometheus 3 normalises it to "1"
    budget = [e for e in slo if "le=~" in e]
    assert budget
    for bucket in re.findall(r'le=~"((?:\\.|[^"\\])*)"', " ".join(budget)):
        pattern = bucket.encode().decode("unicode_escape")
        assert re.fullmatch(pattern, "1.0") and re.fullmatch(pattern, "1")
        assert not re.fullmatch(pattern, "10")
    per_district = [p for p in panels(dashboard) if p["type"] != "row" and (
                    "district" in p["title"].lower()
                    or "backlog" in p["title"].lower())]
    assert per_district
    for p in per_district:
        text = p.get("description", "") + p.get("options", {}).get("content", "")
        assert "/board" in text and "/units/{code}/stats" in text, p["title"]


def test_provider_loads_the_mounted_dashboards() -> None:
    providers = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    grafana = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]["grafana"]
    mounts = {}
    for volume in grafana["volumes"]:
        host, _, rest = str(volume).partition(":")
        mounts[rest.split(":", 1)[0]] = host
    assert (COMPOSE_FILE.parent / mounts[path]).resolve() == DASHBOARD.parent.resolve()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/{DASHBOARD.name}"
    provisioning = {dst: (COMPOSE_FILE.parent / src).resolve() for dst, src in mounts.items()
                    if dst.startswith("/etc/grafana/provisioning/")}
    assert DATASOURCES.resolve() in provisioning.values()
    assert PROVIDERS.resolve() in provisioning.values()


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian: apt-get install prometheus)")
def test_every_expression_parses(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses each expression as a recording rule (Grafana variables substituted)."""
    rules = []
    for i, expr in enumerate(expressions(dashboard)):
        if expr.startswith("label_values("):
            continue  # Grafana's own function, not PromQL
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
