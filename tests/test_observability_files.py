"""deploy/: the Grafana dashboard, its provisioning and the Prometheus config and alert rules
parse, and every metric they query is one the worker really exports.

No network and no Prometheus: the metric names come from a ``WorkerMetrics()`` registry (a
counter ``x`` is scraped as ``x_total``, a histogram as ``x_bucket``/``x_count``/``x_sum``),
and the PromQL is read for its metric names. When ``promtool`` is on PATH the files (and the
dashboard's queries, as recording rules) are also checked by Prometheus's own parser.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.worker.metrics import WorkerMetrics

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "tipstream.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
# Series Prometheus makes itself for every target.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# PromQL words that look like names: keywords and aggregation modifiers.
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_names() -> set[str]:
    """Every series name a worker's /metrics can have, even before a labelled metric's first
    sample exists (its family is known from the registry all the same)."""
    names: set[str] = set()
    for family in WorkerMetrics().registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    >>> sorted(metric_names('sum by (code) (rate(a_total{code="x"}[5m])) > on(i) b'))
    ['a_total', 'b']
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, never names
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges, $__rate_interval included
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", text):
        name, is_call = match.group(1), match.group(2)
        if not is_call and name.lower() not in KEYWORDS:
            names.add(name)
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_exported_names_know_the_suffixes() -> None:
    names = exported_names()
    assert "tipstream_deadlettered_total" in names  # a labelled counter, no sample yet
    assert "tipstream_score_latency_seconds_bucket" in names
    assert "process_resident_memory_bytes" in names
    assert "tipstream_deadlettered" not in names  # the bare counter name is never scraped


def test_every_dashboard_query_uses_exported_metrics() -> None:
    exported = exported_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= exported, f"{expr!r} uses {sorted(names - exported)}"
        used |= names
    # What the dashboard promises to show.
    for name in (
        "tipstream_events_total",
        "tipstream_input_lag_events",
        "tipstream_deadlettered_total",
        "tipstream_sink_retries_total",
        "tipstream_ackgate_holes",
        "tipstream_rebalances_total",
        "tipstream_score_latency_seconds_bucket",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ):
        assert name in used, name


def test_dashboard_panels_use_the_provisioned_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    uids = {source["uid"] for source in datasources}
    assert dashboard["uid"]
    assert dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, panel["title"]
    providers = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/tipstream.yml").read_text()
    )["providers"]
    assert [p["options"]["path"] for p in providers] == ["/etc/grafana/dashboards"]


def test_alert_rules_cover_the_promised_signals_with_exported_metrics() -> None:
    exported = exported_names() | PROMETHEUS_OWN
    covered: set[str] = set()
    for rule in alert_rules():
        assert re.fullmatch(r"[A-Z][A-Za-z]+", rule["alert"]), rule
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, f"{rule['alert']} uses {sorted(names - exported)}"
        covered |= names
    for name in (
        "tipstream_input_lag_events",
        "tipstream_deadlettered_total",
        "tipstream_sink_retries_total",
        "tipstream_ackgate_holes",
        "tipstream_rebalances_total",
    ):
        assert name in covered, f"no alert on {name}"


def test_prometheus_scrapes_the_worker_and_loads_the_rules() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    rule_files = [PROMETHEUS.parent / path for path in config["rule_files"]]
    assert ALERTS in rule_files
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "tipstream"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    port = compose["x-tipstream-env"]["TIPSTREAM_WEB_PORT"]
    assert targets == [f"worker:{port}"]  # the compose worker service


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not on PATH")
def test_promtool_accepts_the_config_the_rules_and_the_dashboard_queries(
    tmp_path: Path,
) -> None:
    def promtool(*args: str) -> None:
        done = subprocess.run(
            ["promtool", *args], capture_output=True, text=True, check=False, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr

    promtool("check", "config", str(PROMETHEUS))
    promtool("check", "rules", str(ALERTS))
    # Grafana's interval variables are not PromQL; a fixed range stands in for them.
    records = [
        {"record": f"dashboard:query_{i}", "expr": re.sub(r"\$__\w+", "5m", expr)}
        for i, expr in enumerate(dashboard_exprs())
    ]
    queries = tmp_path / "dashboard-rules.yml"
    queries.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    promtool("check", "rules", str(queries))
