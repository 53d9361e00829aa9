"""Report arithmetic (pure) and the report files of small runs (real broker and database)."""
# ruff: noqa: ASYNC240 - small local files in tests

from __future__ import annotations

import math
import statistics
from pathlib import Path

import asyncpg
import pytest

from bandit.stats import gap_closed, mean_ci95, paired_difference, proportion_ci95, t_975
from streams.analysis.summary import IncomparableRunsError, check_comparable, compare, summarize
from streams.settings import Settings
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import SimConfig
from streams.sim.reports import render_report
from tests.sim.simhelpers import run_cli


def test_mean_interval_is_the_t_interval() -> None:
    values = [0.1, -1.0, 1.0, 0.6, -0.3, -1.0, 1.0, 0.1]
    interval = mean_ci95(values)
    se = statistics.stdev(values) / math.sqrt(len(values))
    assert interval.mean == pytest.approx(statistics.fmean(values))
    assert interval.low == pytest.approx(statistics.fmean(values) - 2.364624252 * se)
    assert interval.high == pytest.approx(statistics.fmean(values) + 2.364624252 * se)
    assert interval.n == 8


def test_t_quantiles_approach_the_normal() -> None:
    assert t_975(1) == pytest.approx(12.7062, abs=1e-4)
    assert t_975(30) == pytest.approx(2.0423, abs=1e-4)
    assert t_975(40) == pytest.approx(2.0211, abs=1e-4)
    assert t_975(120) == pytest.approx(1.9799, abs=1e-4)
    assert t_975(10**7) == pytest.approx(1.95996, abs=1e-5)


def test_paired_difference_and_verdicts() -> None:
    a = [0.0, 0.5, -1.0, 0.1]
    b = [0.2, 0.9, -0.7, 0.3]  # B − A = 0.2, 0.4, 0.3, 0.2
    d = paired_difference(a, b)
    diffs = [0.2, 0.4, 0.3, 0.2]
    half = 3.182446305 * statistics.stdev(diffs) / 2
    assert d.mean == pytest.approx(0.275)
    assert (d.low, d.high) == (pytest.approx(0.275 - half), pytest.approx(0.275 + half))
    assert d.verdict == "B better"
    assert paired_difference(b, a).verdict == "A better"
    assert paired_difference([0.0, 1.0, 0.0], [1.0, 0.0, 0.0]).verdict == "no difference"
    with pytest.raises(ValueError, match="same length"):
        paired_difference([1.0], [1.0, 2.0])


def test_wilson_interval_and_gap_closed() -> None:
    p = proportion_ci95(0, 20)
    assert (p.mean, p.low) == (0.0, 0.0)
    assert p.high == pytest.approx(0.1611, abs=1e-4)
    assert gap_closed(-0.2, -0.6, -0.4) == pytest.approx(2.0)
    assert gap_closed(-0.5, -0.6, -0.4) == pytest.approx(0.5)
    assert gap_closed(None, -0.6, -0.4) is None
    assert gap_closed(-0.5, -0.5, -0.5) is None


def test_summary_of_stats() -> None:
    stats = [
        {"persona": "p", "reward": 1.0, "expected_reward": 0.2, "random_expected": 0.0,
         "oracle_expected": 0.4},
        {"persona": "q", "reward": -1.0, "expected_reward": 0.0, "random_expected": 0.0,
         "oracle_expected": 0.4},
    ]  # fmt: skip
    summary = summarize(stats, run_id="r")
    assert summary["mean_reward"] == 0.0
    assert summary["gap_closed"] == pytest.approx(0.25)
    assert summary["per_persona"]["p"] == {
        "events": 1,
        "mean_reward": 1.0,
        "expected_mean_reward": 0.2,
    }
    no_expectation = summarize([{**s, "expected_reward": None} for s in stats], run_id="r")
    assert no_expectation["expected_mean_reward"] is None
    assert no_expectation["gap_closed"] is None


def test_comparison_pairs_by_user_and_round() -> None:
    def stat(user: str, round_: int, reward: float) -> dict[str, object]:
        return {"persona": "p", "user_id": user, "round": round_, "reward": reward,
                "expected_reward": None}  # fmt: skip

    a = [stat("u1", 0, 0.0), stat("u1", 1, -1.0), stat("u2", 0, 0.1)]
    b = [stat("u2", 0, 0.6), stat("u1", 1, 0.1), stat("u1", 0, 1.0), stat("u3", 0, 1.0)]
    result = compare(a, b)  # type: ignore[arg-type]
    assert result["pairs"] == 3
    assert result["reward"].mean == pytest.approx((1.0 + 1.1 + 0.5) / 3)
    assert result["expected"] is None
    with pytest.raises(IncomparableRunsError):
        check_comparable({"seed": 1, "world": {}}, {"seed": 2, "world": {}})
    with pytest.raises(IncomparableRunsError, match="judge"):
        check_comparable(
            {"seed": 1, "world": {"judge": "rule"}}, {"seed": 1, "world": {"judge": "llm"}}
        )


@pytest.mark.integration
async def test_report_writes_png_and_html_and_compares(
    topics: Settings, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    config = SimConfig(policy="egreedy-v1", users=1, rounds=6, seed=77)
    learned = await run_closed_loop(topics, config, quiet=True)
    baseline = await run_closed_loop(
        topics, SimConfig(policy="random", users=1, rounds=6, seed=77), quiet=True
    )
    document = await render_report(
        topics.database_url, baseline["run_id"], learned["run_id"], tmp_path, quiet=True
    )
    png = Path(document["png"])
    page = Path(document["html"])
    assert png.parent == tmp_path / baseline["run_id"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = page.read_text()
    assert html.count("<table") == 3
    assert "reward_curve.png" in html
    for name in ("deadline-driven", "overdue-ignorer", "done", "dismiss"):
        assert name in html
    # The report's summary is the run's --json summary, recomputed from the tables.
    for key in ("events", "mean_reward", "ci95_low", "expected_mean_reward", "gap_closed"):
        assert document["summary"][key] == pytest.approx(baseline[key])
    comparison = document["comparison"]
    assert comparison["pairs"] == 30
    assert Path(document["comparison_png"]).read_bytes()[:4] == b"\x89PNG"
    assert "B − A" in Path(document["comparison_html"]).read_text()
    expected_diff = learned["expected_mean_reward"] - baseline["expected_mean_reward"]
    assert comparison["expected"]["mean"] == pytest.approx(expected_diff)
    reward = comparison["reward"]
    assert reward["low"] <= reward["mean"] <= reward["high"]
    assert reward["verdict"] == (
        "no difference" if reward["low"] <= 0 <= reward["high"]
        else ("B better" if reward["mean"] > 0 else "A better")
    )  # fmt: skip


@pytest.mark.integration
async def test_report_refuses_runs_of_different_worlds(
    topics: Settings, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    a = await run_closed_loop(topics, SimConfig(policy="random", rounds=2, seed=1), quiet=True)
    b = await run_closed_loop(topics, SimConfig(policy="random", rounds=2, seed=2), quiet=True)
    code, _, err = await run_cli(topics, "report", a["run_id"], b["run_id"], "--out", str(tmp_path))
    assert code == 2
    assert "different seeds" in err
    assert not (tmp_path / a["run_id"]).exists()
    code, _, err = await run_cli(topics, "report", "no-such-run", "--out", str(tmp_path))
    assert code == 2
    assert "no run" in err
