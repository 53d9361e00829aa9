"""Without any broker: an unreachable Kafka is one line naming it, exit 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streams.dev.worker_process import settings_env
from streams.settings import Settings


@pytest.mark.parametrize("command", [("topics", "ensure"), ("worker",)])
def test_an_unreachable_broker_is_one_line(command: tuple[str, ...]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPSTREAM_")}
    env.update(settings_env(Settings(kafka_bootstrap="127.0.0.1:1")))
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert lines == [lines[0]], lines
    assert lines[0].startswith("error: cannot reach Kafka at 127.0.0.1:1 ")
    assert "ConnectionRefusedError" in lines[0]
