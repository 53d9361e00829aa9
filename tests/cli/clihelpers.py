"""Test helper: the ``tipstream`` command as a user's shell runs it, with a clean environment
(no ``TIPSTREAM_*`` or ``ANTHROPIC_*`` of ours) plus exactly the variables a test gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from streams.dev.worker_process import free_port
from tests.processes import REPO

__all__ = ["closed_port", "tipstream"]


def closed_port() -> int:
    """A loopback port nobody listens on (bound once, then closed): connections are refused."""
    return free_port()


def tipstream(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 90, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TIPSTREAM_", "ANTHROPIC_"))}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=clean,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout_s,
        check=False,
    )
