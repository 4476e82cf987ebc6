"""The SRE alert rules parse and name only metrics the worker exports."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from engine.runtime.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]


def test_alert_rules_reference_real_metrics() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())
    exported = {m.name for m in Metrics().registry.collect()}
    names = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"].startswith("Zhida") and rule["annotations"]["summary"]
            names |= set(re.findall(r"\b(zhida_[a-z_]+)", rule["expr"]))
    assert names
    for name in names:
        base = re.sub(r"_(total|bucket|sum|count)$", "", name)
        assert base in exported, f"{name} is not exported by the worker"
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian: apt-get install prometheus)")
def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        out = subprocess.run(["promtool", *args], cwd=ROOT / "deploy", capture_output=True,
                             timeout=60)
        assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
