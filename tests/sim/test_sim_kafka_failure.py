"""The simulator with a broker that is not there: one line naming it, exit 1."""

from __future__ import annotations

import pytest

from streams.settings import Settings
from tests.processes import run_module

pytestmark = pytest.mark.integration


def test_simulate_against_an_unreachable_broker_is_one_line(
    database: str, settings: Settings
) -> None:
    proc = run_module(
        "streams.cli", "simulate", "--via", "inprocess", "--users", "1", "--rounds", "1",
        timeout_s=90, settings=settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"}),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: cannot reach Kafka at 127.0.0.1:1"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not [line for line in lines[:-1] if "aiokafka" in line or "Unable" in line], lines
