"""The Grafana dashboard and Prometheus config under docker/ fit the metrics a worker exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, generate_latest

from streams.stages import metrics

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def exported_series() -> set[str]:
    """Every series name the worker's metrics produce (counters' _total, histograms' _bucket...)."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names |= {f"{value._name}_total", f"{value._name}_created"}
        elif isinstance(value, Histogram):
            names |= {f"{value._name}_{s}" for s in ("bucket", "count", "sum", "created")}
        elif isinstance(value, Gauge):
            names.add(value._name)
    return names


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads((DOCKER / "grafana/dashboards/active-learners.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    series = exported_series()
    # the process collector prometheus_client registers by default (Linux)
    process = set(re.findall(r"process_[a-z_]+", generate_latest().decode()))
    for expr in exprs:
        used = set(re.findall(r"active_learners_[a-z_]+", expr))
        standard = set(re.findall(r"(?<![a-z_])process_[a-z_]+", expr))
        assert used | standard, f"{expr}: no metric"
        assert used <= series, f"{expr}: {used - series}"
        assert standard <= process, f"{expr}: {standard - process}"


def test_prometheus_scrapes_the_workers_and_compose_runs_both() -> None:
    config = (DOCKER / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in config and "port: 6066" in config
    compose = (DOCKER / "compose.yml").read_text()
    assert "prometheus:" in compose and "grafana:" in compose
    datasource = (DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "uid: prometheus" in datasource
