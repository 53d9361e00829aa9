"""Test helper: run one of our modules (the CLI, the dev stack's entry point) as a child
process to completion, its output captured as text, the way a user's shell would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streams.dev.worker_process import child_env
from streams.settings import Settings

__all__ = ["REPO", "run_module"]

REPO = Path(__file__).resolve().parents[1]


def run_module(
    module: str, *args: str, timeout_s: float, settings: Settings | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` from the repository root. With ``settings`` the child runs
    with exactly those (:func:`child_env`); without, it inherits our environment."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=None if settings is None else child_env(settings),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout_s,
        check=False,
    )
