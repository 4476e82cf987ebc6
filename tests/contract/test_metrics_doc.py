"""docs/operations.md's metrics table and what the worker exports are the same, both ways."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from engine.core.react import Output
from engine.runtime.metrics import Metrics
from schemas.outbound import CitizenNotification, DispatchOrder

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\|\s*`(?P<name>[a-z_]+)`\s*\|(?P<labels>[^|]*)\|(?P<meaning>[^|]+)\|$")


LABEL = re.compile(r"`(?P<label>[a-z_]+)`\s*(?:\((?P<values>[^)]*)\))?")


def documented() -> dict[str, dict[str, list[str]]]:
    """metric → {label name: the label values listed in the table} ({} for none)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, list[str]]] = {}
    for line in section.splitlines():
        m = ROW.match(line.strip())
        if not m:
            continue
        labels = {}
        for lm in LABEL.finditer(m["labels"]):
            values = re.findall(r"`([^`]+)`", lm["values"] or "")
            labels[lm["label"]] = [v for v in values if "<" not in v]
        rows[m["name"]] = labels
    assert rows, "no metrics table found in docs/operations.md"
    return rows


def exported(metrics: Metrics) -> dict[str, str]:
    """metric name as scraped (``_total`` included) → type, from the exposition text."""
    text = generate_latest(metrics.registry).decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    # prometheus_client adds a ``<name>_created`` gauge to counters and histograms
    return {n: t for n, t in types.items()
            if not (n.endswith("_created") and t == "gauge"
                    and (n[: -len("_created")] + "_total" in types
                         or types.get(n[: -len("_created")]) == "histogram"))}


def test_every_documented_metric_is_exported_and_every_exported_one_documented() -> None:
    docs = set(documented())
    names = {n for n in exported(Metrics()) if n.startswith("zhida_")}
    assert docs - names == set(), "documented in docs/operations.md but not exported"
    assert names - docs == set(), "exported but missing from the table in docs/operations.md"


def test_labels_as_documented_and_every_value_exported_from_the_start() -> None:
    m = Metrics()
    families = {f.name: f for f in m.registry.collect()}
    for name, labels in documented().items():
        family = families.get(re.sub(r"_total$", "", name)) or families[name]
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        keys = {k for s in samples for k in s.labels if k != "le"}
        if not labels:
            assert keys == set(), f"{name} has labels {keys}"
            continue
        assert keys == set(labels), f"{name}: labels {keys}, documented {set(labels)}"
        assert samples, f"{name} exports no series before its first event"
        for label, values in labels.items():
            present = {s.labels[label] for s in samples}
            assert set(values) <= present, f"{name}: {set(values) - present} not exported at 0"
        assert all(s.value == 0 for s in samples), name


def test_orders_and_notifications_start_at_zero_and_count_outputs() -> None:
    m = Metrics()
    get = m.registry.get_sample_value
    assert get("zhida_dispatch_orders_total", {"kind": "case"}) == 0
    assert get("zhida_citizen_notifications_total", {"kind": "received"}) == 0
    order = DispatchOrder.model_construct(kind="case")
    notice = CitizenNotification.model_construct(kind="received")
    m.count_outputs([
        Output("dispatch", "500103001", order, "c/1/case/500103001", "zhida.dispatch"),
        Output("dispatch", "500103", order, "c/1/case/500103", "zhida.dispatch"),
        Output("notifications", "c", notice, "c/1/notice/k", "zhida.notification"),
        Output("case_events", "c", notice, "c/1", "zhida.case.created"),
    ])
    assert get("zhida_dispatch_orders_total", {"kind": "case"}) == 2
    assert get("zhida_citizen_notifications_total", {"kind": "received"}) == 1
    assert get("zhida_citizen_notifications_total", {"kind": "closed"}) == 0


def test_process_and_python_series_are_exported() -> None:
    names = exported(Metrics())
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "python_info", "python_gc_collections_total"):
        assert name in names


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian: apt-get install prometheus)")
def test_promtool_check_metrics_passes() -> None:
    out = subprocess.run(["promtool", "check", "metrics"], input=generate_latest(
        Metrics().registry), capture_output=True, timeout=30)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
