"""An unreachable dependency (Kafka, PostgreSQL, the Anthropic API) is one line naming it and
its address, exit 1, within 30 s, and no traceback. Each one is a closed loopback port, never
a mock. Tests with the ``topics`` fixture use the real broker and database for the rest
(marked integration by tests/conftest.py)."""

from __future__ import annotations

import json
import subprocess
import time

import asyncpg

from streams.dev.worker_process import settings_env
from streams.settings import Settings
from tests.cli.clihelpers import closed_port, tipstream

BOUND_S = 30.0


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _timed(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = tipstream(*args, env=env, timeout_s=120)
    return proc, time.monotonic() - started


def _no_database() -> tuple[dict[str, str], str]:
    port = closed_port()
    url = f"postgresql://tipstream:db-secret@127.0.0.1:{port}/tipstream"
    return {"TIPSTREAM_DATABASE_URL": url}, f"cannot reach PostgreSQL at 127.0.0.1:{port}/tipstream"


# ----------------------------------------------------------------- no server needed


def test_report_and_evaluate_without_the_database() -> None:
    env, expected = _no_database()
    for args in (("report", "sim-x"), ("evaluate", "--run", "sim-x")):
        proc, took = _timed(*args, env=env)
        assert proc.returncode == 1, (args, proc.stderr)
        line = _one_error_line(proc)
        assert line.startswith(f"error: {expected}"), line
        assert "db-secret" not in proc.stderr
        assert took < BOUND_S, (args, took)


def test_simulate_without_kafka() -> None:
    port = closed_port()
    env, _ = _no_database()
    proc, took = _timed(
        "simulate", "--via", "inprocess", "--rounds", "1",
        env={**env, "TIPSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert _one_error_line(proc).startswith(f"error: cannot reach Kafka at 127.0.0.1:{port}")
    assert took < BOUND_S


# ----------------------------------------------------------------- the real broker


def test_topics_ensure_without_the_database(topics: Settings) -> None:
    env, expected = _no_database()
    proc, took = _timed("topics", "ensure", env={**settings_env(topics), **env})
    assert proc.returncode == 1, proc.stderr
    assert _one_error_line(proc).startswith(f"error: {expected}")
    assert "db-secret" not in proc.stderr
    assert took < BOUND_S


def test_simulate_without_the_database(topics: Settings) -> None:
    env, expected = _no_database()
    proc, took = _timed(
        "simulate", "--via", "inprocess", "--rounds", "1", "--quiet",
        env={**settings_env(topics), **env},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert _one_error_line(proc).startswith(f"error: {expected}")
    assert took < BOUND_S


def _llm_env(topics: Settings) -> tuple[dict[str, str], int]:
    port = closed_port()
    return {
        **settings_env(topics),
        "ANTHROPIC_API_KEY": "sk-test-not-a-key",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
    }, port


def test_simulate_llm_without_the_api_is_one_line(topics: Settings, database: str) -> None:
    env, port = _llm_env(topics)
    proc, took = _timed(
        "simulate", "--judge", "llm", "--policy", "random", "--rounds", "1", "--quiet", env=env
    )
    assert proc.returncode == 1, proc.stderr
    line = _one_error_line(proc)
    assert line.startswith(f"error: cannot reach the Anthropic API at http://127.0.0.1:{port}")
    assert "--fallback rule" in line
    assert "sk-test-not-a-key" not in proc.stderr
    assert took < BOUND_S


async def test_simulate_llm_fallback_rule_counts_the_fallbacks(
    topics: Settings, pg: asyncpg.Connection
) -> None:
    env, _ = _llm_env(topics)
    proc, _ = _timed(
        "simulate", "--judge", "llm", "--fallback", "rule", "--policy", "random",
        "--rounds", "1", "--json", "--quiet", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["events"] == 5
    assert summary["fallbacks"] == {"connection_error": 5}
    run = await pg.fetchrow("SELECT * FROM sim_runs WHERE run_id = $1", summary["run_id"])
    assert json.loads(run["llm_fallbacks"]) == {"connection_error": 5}
    assert json.loads(run["config"])["fallback"] == "rule"


async def test_simulate_policy_defaults_to_the_served_policy(
    topics: Settings, pg: asyncpg.Connection
) -> None:
    env = {**settings_env(topics), "TIPSTREAM_POLICY": "egreedy-v2"}
    proc, _ = _timed(
        "simulate", "--via", "inprocess", "--personas", "alternate", "--rounds", "1",
        "--json", "--quiet", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    run = await pg.fetchrow("SELECT config FROM sim_runs WHERE run_id = $1", summary["run_id"])
    config = json.loads(run["config"])
    assert config["policy"] == "egreedy-v2"
    assert config["persona_names"][0] == "night-owl-procrastinator"  # the alternate set
