"""docker-compose.yml and the Dockerfile agree with the settings and with each other.

Docker cannot run here (no engine on the dev machines or in CI), so this checks the
files statically: every TIPSTREAM_* variable is a real setting with a valid value, the
worker and the simulator reach the same broker and database (the compose services), and
the ports line up (container listeners, host ports = the dev stack's, the worker's web port).
"""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from streams.settings import DEV_KAFKA_PORT, DEV_POSTGRES_PORT, Settings

REPO = Path(__file__).resolve().parent.parent
PREFIX = "TIPSTREAM_"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", ...]
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _settings_for(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [n for n in os.environ if n.startswith(PREFIX)]:
        monkeypatch.delenv(name)
    for name, raw in _env(service).items():
        if name.startswith(PREFIX):
            # ${VAR:-default}: compose substitutes the default when unset. ${VAR:?message}:
            # compose refuses to start unless the user sets it; stand in a user's value.
            value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", raw)
            value = re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", REQUIRED_STAND_IN, value)
            monkeypatch.setenv(name, value)
    return Settings()


REQUIRED_STAND_IN = "a-secret-the-user-sets"


def _port_mappings(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port, from "127.0.0.1:HOST:CONTAINER" entries."""
    result = {}
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        assert parts[0] == "127.0.0.1", f"publish on loopback only: {entry}"
        result[int(parts[-1])] = int(parts[-2])
    return result


def _listeners(kafka_env: dict[str, str], key: str) -> dict[str, tuple[str, int]]:
    out = {}
    for item in kafka_env[key].split(","):
        name, _, rest = item.partition("://")
        host, _, port = rest.rpartition(":")
        out[name] = (host, int(port))
    return out


def test_services_exist(compose: dict[str, Any]) -> None:
    assert {"kafka", "postgres", "worker", "simulator"} <= set(compose["services"])
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["postgres"]["image"] == "postgres:15"


def test_every_tipstream_variable_is_a_setting(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = set(Settings.model_fields)
    seen = 0
    for name, service in compose["services"].items():
        for var in _env(service):
            if var.startswith(PREFIX):
                seen += 1
                field = var.removeprefix(PREFIX).lower()
                assert field in fields, f"{name}: {var} is not a field of Settings"
        _settings_for(service, monkeypatch)  # values parse and validate
    dockerfile = (REPO / "Dockerfile").read_text()
    for var in re.findall(r"\b(TIPSTREAM_[A-Z_]+)=", dockerfile):
        assert var.removeprefix(PREFIX).lower() in fields, f"Dockerfile: {var}"
    assert seen > 0


def test_worker_and_simulator_share_the_compose_broker_and_database(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    worker = _settings_for(services["worker"], monkeypatch)
    simulator = _settings_for(services["simulator"], monkeypatch)
    assert worker.kafka_bootstrap == simulator.kafka_bootstrap
    assert worker.database_url == simulator.database_url
    assert (worker.topic_shown, worker.topic_feedback, worker.partitions) == (
        simulator.topic_shown,
        simulator.topic_feedback,
        simulator.partitions,
    )

    # The broker: a listener of the kafka service, advertised under the service's name.
    kafka_env = _env(services["kafka"])
    host, _, port = worker.kafka_bootstrap.partition(":")
    advertised = _listeners(kafka_env, "KAFKA_ADVERTISED_LISTENERS")
    assert (host, int(port)) in advertised.values()
    assert host == "kafka"
    assert int(port) in [p for _, p in _listeners(kafka_env, "KAFKA_LISTENERS").values()]

    # The database: the postgres service's own user, password and database.
    url = urlsplit(worker.database_url)
    pg_env = _env(services["postgres"])
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert url.username == pg_env["POSTGRES_USER"]
    assert url.password == pg_env["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == pg_env["POSTGRES_DB"]


def test_ports_agree(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    # Host ports are the dev stack's, so host tools use the default settings either way.
    kafka_ports = _port_mappings(services["kafka"])
    assert kafka_ports == {DEV_KAFKA_PORT: DEV_KAFKA_PORT}
    advertised = _listeners(_env(services["kafka"]), "KAFKA_ADVERTISED_LISTENERS")
    assert ("127.0.0.1", DEV_KAFKA_PORT) in advertised.values()
    assert _port_mappings(services["postgres"]) == {5432: DEV_POSTGRES_PORT}

    # The worker serves where the simulator looks for it.
    worker = _settings_for(services["worker"], monkeypatch)
    simulator = _settings_for(services["simulator"], monkeypatch)
    assert worker.web_host == "0.0.0.0"
    assert simulator.web_host == "worker"
    assert simulator.web_port == worker.web_port
    assert worker.web_port in _port_mappings(services["worker"])


def test_kafka_service_is_a_single_node(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["kafka"])
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_MIN_INSYNC_REPLICAS",
    ):
        assert env[key] == "1", key
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "true"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_images_run_the_tipstream_cli(compose: dict[str, Any]) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "uv sync --frozen" in dockerfile
    assert 'ENTRYPOINT ["tipstream"]' in dockerfile
    services = compose["services"]
    assert services["worker"]["command"][0] == "worker"
    assert services["simulator"]["command"][0] == "simulate"
    for name in ("worker", "simulator"):
        assert services[name]["build"] == "."


def test_simulator_plays_the_policy_the_worker_serves(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `simulate` goes through the worker only for the policy the worker serves; any other
    # policy would silently run in-process and leave the worker idle.
    services = compose["services"]
    command = [str(part) for part in services["simulator"]["command"]]
    policy = command[command.index("--policy") + 1]
    assert policy == _settings_for(services["worker"], monkeypatch).policy
    assert policy == _settings_for(services["simulator"], monkeypatch).policy


def test_the_worker_in_compose_needs_a_token_of_its_own(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It listens on 0.0.0.0, so the public default token would be refused at start."""
    worker = compose["services"]["worker"]
    assert ":?" in _env(worker)["TIPSTREAM_ADMIN_TOKEN"]
    settings = _settings_for(worker, monkeypatch)
    assert settings.web_host == "0.0.0.0"
    assert settings.admin_token_problem() is None


def _volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """mount target -> source, from "source:target[:mode]" entries."""
    result = {}
    for entry in service.get("volumes", []):
        source, target, *_ = str(entry).split(":")
        result[target] = source
    return result


def test_kafka_keeps_its_log_on_the_volume(compose: dict[str, Any]) -> None:
    """The apache/kafka image logs to /tmp/kraft-combined-logs unless KAFKA_LOG_DIRS says
    otherwise (its configureDefaults); /var/lib/kafka/data is the image's own VOLUME."""
    kafka = compose["services"]["kafka"]
    log_dirs = _env(kafka)["KAFKA_LOG_DIRS"]
    assert log_dirs == "/var/lib/kafka/data"
    assert _volume_targets(kafka)[log_dirs] == "kafka-data"
    assert "kafka-data" in compose["volumes"]


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_worker_healthcheck_asks_healthz(
    compose: dict[str, Any], status: int, healthy: bool
) -> None:
    """Run the healthcheck's own command (the image's Python, no curl) against a stand-in
    /healthz on the port the worker's settings give."""
    worker = compose["services"]["worker"]
    test = worker["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**_env(worker), "TIPSTREAM_WEB_PORT": str(server.server_address[1])}
        done = subprocess.run(
            [sys.executable, *test[2:]], env=env, capture_output=True, timeout=30, check=False
        )
    finally:
        server.shutdown()
        server.server_close()
    assert (done.returncode == 0) is healthy, done.stderr


def test_the_simulator_waits_for_a_healthy_worker(compose: dict[str, Any]) -> None:
    depends = compose["services"]["simulator"]["depends_on"]
    assert depends["worker"]["condition"] == "service_healthy"
    assert "healthcheck" in compose["services"]["worker"]


def test_observability_profile_mounts_deploy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"], name
        for target, source in _volume_targets(services[name]).items():
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source} -> {target}"
    # Prometheus reads deploy/prometheus/prometheus.yml (and alerts.yml beside it).
    prometheus = services["prometheus"]
    config = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = Path(config.partition("=")[2])
    mounts = _volume_targets(prometheus)
    assert mounts[str(config_path.parent)] == "./deploy/prometheus"
    # Grafana: provisioning, and the dashboard where the provider looks for it.
    grafana = _volume_targets(services["grafana"])
    assert grafana["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/dashboards/tipstream.yml").read_text()
    )["providers"][0]
    dashboards = {t for t, s in grafana.items() if s == "./deploy/grafana/tipstream.json"}
    assert [str(Path(t).parent) for t in dashboards] == [provider["options"]["path"]]
    for name in ("prometheus", "grafana"):
        for entry in services[name].get("ports", []):
            assert str(entry).startswith("127.0.0.1:"), entry
    # The default `docker compose up` starts neither.
    assert all("profiles" in services[n] for n in ("prometheus", "grafana", "simulator"))


def test_images_are_pinned_and_the_reason_for_no_digest_is_documented(
    compose: dict[str, Any],
) -> None:
    for name, service in compose["services"].items():
        image = str(service["image"])
        if "build" in service:
            continue  # ours, built from the Dockerfile
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert re.fullmatch(r"v?\d+(\.\d+)*", tag), f"{name}: {image} is not pinned to a version"
    docs = (REPO / "docs" / "operations.md").read_text()
    assert "docker buildx imagetools inspect" in docs
    assert "digest" in docs
