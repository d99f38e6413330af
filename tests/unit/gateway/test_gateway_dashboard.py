"""docs/grafana-dashboard.json and docs/prometheus.yml name only metrics and jobs that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from gateway.metrics import GatewayMetrics
from watchdog.metrics import FunctionMetrics

DOCS = Path(__file__).resolve().parents[3] / "docs"


def exported() -> set[str]:
    names: set[str] = set()
    for text in (GatewayMetrics().render(), FunctionMetrics(1).render()):
        for name, kind in re.findall(r"^# TYPE (\w+) (\w+)$", text, re.MULTILINE):
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def test_every_metric_in_the_dashboard_is_exported() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert expressions
    used = {name for expr in expressions for name in re.findall(r"\b((?:gateway|http)_[a-z_]+)\b", expr)}
    assert used, expressions
    assert used <= exported(), used - exported()
    jobs = {job for expr in expressions for job in re.findall(r'job="([^"]+)"', expr)}
    config = yaml.safe_load((DOCS / "prometheus.yml").read_text())
    assert jobs == {c["job_name"] for c in config["scrape_configs"]}
