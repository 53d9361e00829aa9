"""Ctrl-C on a simulation ends the process in bounded time, whatever its cleanup does."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

# A run whose cleanup never ends: it ignores its cancellation (the hang a full test suite
# saw twice), and the watchdog of ``run_async`` must end the process.
STUBBORN = """
import asyncio, sys
from streams.cli import sim
sim.CANCEL_EXIT_S = 1.0

async def stubborn():
    print("started", flush=True)
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        print("cleanup", flush=True)
        await asyncio.shield(asyncio.sleep(3600))

try:
    sim.run_async(stubborn())
except asyncio.CancelledError:
    sys.exit(1)
"""

# A run that cleans up promptly: cancelled, exits through the CLI's own path, no watchdog.
PROMPT = STUBBORN.replace("await asyncio.shield(asyncio.sleep(3600))", "raise")


def _start(source: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", source], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    return process


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_cleanup_that_hangs_is_cut_short_with_every_threads_stack(signum: int) -> None:
    process = _start(STUBBORN)
    started = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "cleanup" in out
    assert "did not end within 1 s" in err
    assert "Thread" in err or "Current thread" in err  # faulthandler's dump
    assert time.monotonic() - started < 20


def test_a_second_ctrl_c_exits_at_once() -> None:
    process = _start(STUBBORN)
    process.send_signal(signal.SIGINT)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "cleanup"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "cancelled twice" in err


def test_a_prompt_cleanup_exits_through_the_cancellation() -> None:
    process = _start(PROMPT)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "cleanup" in out
    assert "did not end" not in err
