"""Without any broker: an unreachable Kafka is one line naming it, exit 1, no traceback."""

from __future__ import annotations

import pytest

from streams.settings import Settings
from tests.processes import run_module


@pytest.mark.parametrize("command", [("topics", "ensure"), ("worker",)])
def test_an_unreachable_broker_is_one_line(command: tuple[str, ...]) -> None:
    proc = run_module(
        "streams.cli", *command, timeout_s=60, settings=Settings(kafka_bootstrap="127.0.0.1:1")
    )
    assert proc.returncode == 1, proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert lines == [lines[0]], lines
    assert lines[0].startswith("error: cannot reach Kafka at 127.0.0.1:1 ")
    assert "ConnectionRefusedError" in lines[0]
