"""``tipstream compare``: the window arithmetic (gap_closed over units) and usage errors."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from streams.analysis.compare import RunRows, cell, render_markdown, windows


def _run(frac: float, users: int = 6, rounds: int = 10, seed: int = 0) -> RunRows:
    """Every judgment closes ``frac`` of its own random → oracle gap."""
    rng = np.random.default_rng(seed)
    n = users * rounds
    rnd = rng.uniform(-0.7, -0.5, n)
    orc = rnd + rng.uniform(0.1, 0.3, n)
    exp = rnd + frac * (orc - rnd)
    return RunRows(
        user=[f"u{i % users}" for i in range(n)],
        round=np.array([i // users for i in range(n)], dtype=np.float64),
        expected=exp,
        reward=exp + rng.normal(0, 0.1, n),
        random_expected=rnd,
        oracle_expected=orc,
    )


@pytest.mark.parametrize("frac", [0.0, 0.37, 1.0])
def test_gap_closed_of_a_known_fraction(frac: float) -> None:
    c = cell([_run(frac), _run(frac, seed=1)], 0, 10)
    assert c.gap[0] == pytest.approx(frac)
    assert c.gap[1] <= frac + 1e-12
    assert c.gap[2] >= frac - 1e-12
    assert c.units == 12  # 6 users × 2 seeds
    assert c.judgments == 120
    assert c.expected[1] < c.expected[0] < c.expected[2]


def test_windows_select_rounds() -> None:
    run = _run(0.5)
    late = RunRows(run.user, run.round,
                   np.where(run.round >= 5, run.oracle_expected, run.random_expected),
                   run.reward, run.random_expected, run.oracle_expected)  # fmt: skip
    assert cell([late], 5, 10).gap[0] == pytest.approx(1.0)
    assert cell([late], 0, 5).gap[0] == pytest.approx(0.0)
    assert windows([20, 200, 5000], 1000, 200)[-1] == ("last 200 of 1000", 800, 1000)


def test_markdown_has_one_row_per_window() -> None:
    c = {"expected": (1.0, 0.5, 1.5), "gap": (0.5, 0.4, 0.6), "reward": (1.0, 0.0, 2.0)}
    text = render_markdown({"policies": ["a"], "windows": [{"label": "w1", "cells": {"a": c}}]})
    assert "| w1 | 0.500 [0.400, 0.600] |" in text


def test_cli_usage_errors_exit_2() -> None:
    def run(*args: str) -> int:
        cmd = ["uv", "run", "tipstream", "compare", *args]
        return subprocess.run(cmd, capture_output=True, check=False, timeout=120).returncode

    assert run("--policies", "nope") == 2
    assert run("--seeds", "x") == 2
    assert run("--personas", "/no/such/file.json") == 2
