"""Drift and late feedback in the closed loop, played in memory (no broker, no database).

- the judge's expectations switch exactly at the drift round, and a drifting run is the
  steady run until then;
- each delayed reward is learned only once it has arrived in stream time, at the first round
  it has arrived by; never-arriving and too-late ones expire, learned with the default
  reward when one is set and not at all otherwise (the worker's join);
- instant feedback is the schedule the simulator always had (``sim_log``).
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bandit.registry import make_policy
from judges.delay import parse_delay
from judges.drift import drifted_preferences
from judges.personas import load_personas
from judges.rule import RuleJudge, expected_reward
from judges.world import World
from streams.analysis.recovery import recovery
from streams.cli.sim import register
from streams.sim.choosers import InProcessChooser
from streams.sim.config import SimConfig, SimUsageError
from streams.sim.delivery import APPLIED, EXPIRED, LATE, Delivery
from streams.sim.in_memory import play_in_memory
from tests.bandit.ope_helpers import sim_log

PERSONAS = load_personas()
BASE = SimConfig(policy="pooledmix-v3", users=2, rounds=8, seed=4, concurrency=4)


def play(config: SimConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return asyncio.run(play_in_memory(config))


def test_instant_feedback_is_the_schedule_the_simulator_always_had() -> None:
    for policy in ("egreedy-v1", "pooledmix-v3"):
        config = replace(BASE, policy=policy)
        _, stats = play(config)
        rows = sim_log(
            make_policy(policy, epsilon=config.epsilon),
            seed=config.seed,
            users=config.users,
            rounds=config.rounds,
            concurrency=config.concurrency,
        )
        assert [s["expected_reward"] for s in stats] == [r.expected[r.index] for r in rows]
        assert [s["reward"] for s in stats] == [r.reward for r in rows]


@pytest.mark.parametrize("mapping", ["rotate", "invert"])
def test_the_judge_switches_exactly_at_the_drift_round(mapping: str) -> None:
    drift_at = 5
    config = replace(BASE, drift_at=drift_at, drift=mapping)
    _, stats = play(config)
    _, steady = play(BASE)
    world, after = World(config.seed), drifted_preferences(PERSONAS, mapping)
    by_name = {p.name: p for p in PERSONAS}
    i = 0
    for round_ in range(config.rounds):
        for persona in PERSONAS:
            for user in range(config.users):
                stat = stats[i]
                i += 1
                assert (stat["round"], stat["persona"]) == (round_, persona.name)
                judged_as = after[persona.name] if round_ >= drift_at else by_name[persona.name]
                moment, tasks = (
                    world.moment(persona, user, round_),
                    world.candidates(persona, user, round_),
                )
                expected = [expected_reward(judged_as, moment, t) for t in tasks]
                assert stat["oracle_expected"] == max(expected)
                assert stat["expected_reward"] in expected
    # before the drift the run is the steady one, judgment for judgment
    before = [s for s in stats if s["round"] < drift_at]
    assert before == [s for s in steady if s["round"] < drift_at]
    assert stats != steady


def test_the_oracle_knows_the_drift() -> None:
    summary, stats = play(replace(BASE, policy="oracle", drift_at=3, drift="invert"))
    assert summary["gap_closed"] == pytest.approx(1.0)
    assert all(s["expected_reward"] == s["oracle_expected"] for s in stats)


class Recording(InProcessChooser):
    """The in-process chooser, noting the round each reward is learned in."""

    learned: list[tuple[str, str, int, float]]
    chose: dict[tuple[str, int], str]

    def choose(self, user: Any, moment: Any, tasks: Any, rng: Any, **kw: Any) -> Any:
        picked = super().choose(user, moment, tasks, rng, **kw)
        self.chose[user.user_id, kw["round_"]] = tasks[picked.index].tip_id
        return picked

    def learn_together(self, lessons: Any, *, round_: int = 0) -> None:
        for user, _, task, reward in lessons:
            self.learned.append((user.user_id, task.tip_id, round_, reward))
        super().learn_together(lessons, round_=round_)


def play_recorded(
    config: SimConfig, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[dict[str, Any]], list[tuple[str, str, int, float]], dict[str, Any]]:
    Recording.learned, Recording.chose = [], {}
    monkeypatch.setattr("streams.sim.in_memory.InProcessChooser", Recording)
    summary, stats = play(config)
    return stats, Recording.learned, summary


def shown_round(tip_id: str) -> int:
    match = re.search(r"-r(\d+)-c\d+$", tip_id)
    assert match is not None
    return int(match.group(1))


@pytest.mark.parametrize("default_reward", [None, -0.25])
def test_a_reward_is_learned_only_when_it_arrives_and_lost_ones_expire(
    monkeypatch: pytest.MonkeyPatch, default_reward: float | None
) -> None:
    round_ms, wait_ms = 600_000, 2_400_000
    config = replace(
        BASE,
        rounds=14,
        delay="exp:900",
        delay_lost=0.2,
        round_s=round_ms / 1000,
        reward_wait_s=wait_ms / 1000,
        default_reward=default_reward,
    )
    stats, learned, summary = play_recorded(config, monkeypatch)
    world, delay, judge = World(config.seed), parse_delay(config.delay, lost=0.2), RuleJudge()
    # Each judgment's fate, recomputed from the world's draws: (round it is learned in, reward).
    want: dict[tuple[str, str], tuple[int, float]] = {}
    chosen = iter(stats)
    for round_ in range(config.rounds):
        for persona in PERSONAS:
            for user in range(config.users):
                stat = next(chosen)
                moment, tasks = (
                    world.moment(persona, user, round_),
                    world.candidates(persona, user, round_),
                )
                tip = Recording.chose[world.user_id(persona, user), round_]
                task = next(t for t in tasks if t.tip_id == tip)
                judgment = judge.judge_sync(
                    persona, moment, task, world.judge_rng(persona, user, round_, task.tip_id)
                )
                assert judgment.reward == stat["reward"]
                draw = delay.draw(world.delivery_rng(persona, user, round_))
                served, deadline = round_ * round_ms, round_ * round_ms + wait_ms
                key = (world.user_id(persona, user), task.tip_id)
                arrives = (
                    None if draw is None else served + judgment.dwell_ms + math.ceil(draw * 1000)
                )
                if arrives is not None and arrives <= deadline:
                    want[key] = (-(-arrives // round_ms), judgment.reward)
                elif default_reward is not None:
                    want[key] = (-(-deadline // round_ms), default_reward)
    learned_at = {(uid, tip): (r, reward) for uid, tip, r, reward in learned}
    assert len(learned_at) == len(learned)  # nothing is learned twice
    # exactly what has arrived by the last round is learned, each at the first round it can be
    assert learned_at == {k: v for k, v in want.items() if v[0] < config.rounds}
    assert all(r > shown_round(tip) for (_, tip), (r, _) in learned_at.items())
    fed = summary["feedback"]
    assert fed["on_time"] + fed["late"] + fed["lost"] == len(stats)
    assert fed["lost"] > 0
    assert fed["late"] > 0
    defaults = sum(1 for *_, r in learned if r == default_reward)
    if default_reward is None:
        assert fed["learned_default"] == 0
        assert defaults == 0
    else:
        assert fed["learned_default"] == fed["late"] + fed["lost"]
        assert defaults > 0
    assert len(learned) + fed["waiting_at_end"] == fed["on_time"] + fed["learned_default"]


def post(
    delivery: Delivery, item: str, round_: int, reward: float, dwell_ms: int, draw: float | None
) -> None:
    """Post with a delay of exactly ``draw`` seconds (None: lost)."""

    class Fixed:
        def random(self) -> float:
            return 0.0 if draw is None else 1.0

        def exponential(self, _mean: float) -> float:
            return 0.0 if draw is None else draw

    delivery.post(item, round_, reward, dwell_ms=dwell_ms, rng=Fixed())  # type: ignore[arg-type]


@pytest.mark.parametrize("default_reward", [None, 0.0])
def test_delivery_learns_on_time_and_expires_the_rest(default_reward: float | None) -> None:
    delivery = Delivery(
        parse_delay("exp:3600", lost=0.5),
        round_s=3600,
        reward_wait_s=7200,
        default_reward=default_reward,
    )
    post(delivery, "quick", 0, 1.0, 30_000, 60.0)  # arrives 0:01:30
    post(delivery, "on-the-deadline", 0, 0.6, 0, 7200.0)  # arrives exactly at 2:00
    post(delivery, "too-late", 0, 0.3, 1_000, 7200.0)  # 1 s past the deadline
    post(delivery, "lost", 0, -1.0, 2_000, None)
    assert delivery.due(0) == []  # nothing arrives in its own round
    first = delivery.due(1)
    assert [(a.item, a.reward, a.kind) for a in first] == [("quick", 1.0, APPLIED)]
    second = [(a.item, a.reward, a.kind) for a in delivery.due(2)]
    # the on-the-deadline feedback is learned; the others expire at 2:00
    expired = [("too-late", default_reward, EXPIRED), ("lost", default_reward, EXPIRED)]
    assert second == [("on-the-deadline", 0.6, APPLIED)] + (
        expired if default_reward is not None else []
    )
    assert delivery.due(50) == []
    assert delivery.counts == {
        "on_time": 2,
        "late": 1,
        "lost": 1,
        **({"learned_default": 2} if default_reward is not None else {}),
    }


def test_delivery_for_the_worker_also_delivers_late_feedback_never_to_be_learned() -> None:
    delivery = Delivery(
        parse_delay("exp:3600"), round_s=3600, reward_wait_s=7200, late_arrivals=True
    )
    post(delivery, "too-late", 0, 0.3, 1_000, 7200.0)  # arrives 2:00:01, 1 s past the deadline
    assert delivery.waiting == 0  # nothing left to learn
    assert delivery.due(2) == []
    assert [(a.item, a.at_ms, a.kind) for a in delivery.due(3)] == [("too-late", 7_201_000, LATE)]
    assert delivery.summary()["late"] == 1


def test_delivery_orders_arrivals_by_time_then_by_judgment() -> None:
    delivery = Delivery(parse_delay("fixed:1"), round_s=100, reward_wait_s=10_000)
    post(delivery, "b-late", 0, 0.1, 50_000, 20.0)
    post(delivery, "a", 0, 0.2, 1_000, 20.0)
    post(delivery, "c", 0, 0.3, 1_000, 20.0)
    assert [a.item for a in delivery.due(1)] == ["a", "c", "b-late"]


def test_recovery_after_drift_is_measured_and_censored() -> None:
    config = replace(BASE, policy="pooled-v1", users=3, rounds=40, drift_at=20, concurrency=32)
    _, stats = play(config)
    rec = recovery(stats, drift_at=20, window=5, tolerance=0.1)
    assert rec.censored_at == 15
    assert rec.rounds_to_recover is None or 0 <= rec.rounds_to_recover <= 15
    assert rec.tolerance > 0
    _, oracle = play(replace(config, policy="oracle"))
    assert recovery(oracle, drift_at=20, window=5, tolerance=0.1).rounds_to_recover == 0
    flat = [
        {"round": r, "expected_reward": -1.0 if r >= 5 else 0.0, "random_expected": -0.5,
         "oracle_expected": 0.5}
        for r in range(10)
    ]  # fmt: skip
    never = recovery(flat, drift_at=5, window=2, tolerance=0.1)
    assert never.rounds_to_recover is None
    assert never.censored_at == 3
    assert math.isclose(never.tolerance, 0.1)
    with pytest.raises(ValueError, match="rounds before the drift"):
        recovery(flat, drift_at=1, window=2, tolerance=0.1)


def test_drift_and_delay_are_stored_in_the_run_config() -> None:
    config = replace(BASE, drift_at=3, delay="uniform:60-600", delay_lost=0.1, default_reward=0.0)
    document = config.as_json(PERSONAS)
    assert (document["drift_at"], document["drift"], document["delay"]) == (
        3,
        "rotate",
        "uniform:60-600",
    )
    assert (document["delay_lost"], document["default_reward"], document["round_s"]) == (
        0.1,
        0.0,
        3600.0,
    )
    assert document["world"]["drift"] == {"at_round": 3, "mapping": "rotate"}
    assert "drift" not in BASE.as_json(PERSONAS)["world"]  # steady worlds keep their key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drift_at": 8}, "--drift-at"),
        ({"drift_at": 2, "drift": "shuffle"}, "--drift must be"),
        ({"drift_at": 2, "drift": "invert", "judge": "llm"}, "--judge rule"),
        ({"delay": "soon"}, "--delay"),
        ({"delay": "exp:60", "rate": 5.0, "duration": 1.0}, "closed loop"),
        ({"round_s": 0.0}, "--round-s"),
        ({"reward_wait_s": -1.0}, "--reward-wait-s"),
    ],
)
def test_bad_drift_and_delay_usage(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SimUsageError, match=re.escape(message)):
        replace(BASE, **change).validate()


def test_late_feedback_through_the_worker_is_valid() -> None:
    for change in ({"delay": "exp:60"}, {"delay_lost": 0.1}):
        replace(BASE, via="worker", policy="egreedy-v1", **change).validate()


def test_the_cli_refuses_bad_drift_and_delay_with_exit_2() -> None:
    app = typer.Typer()
    register(app)
    for args, message in [
        (("--drift-at", "60", "--rounds", "50"), "--drift-at"),
        (("--delay", "exp:600", "--via", "worker", "--reward-wait-s", "60"), "REWARD_WAIT_S"),
        (("--delay", "gamma:3"), "unknown delay"),
    ]:
        result = CliRunner().invoke(app, ["simulate", "--via", "inprocess", *args])
        assert result.exit_code == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)


def test_bench_drift_prints_both_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.drift import main  # noqa: PLC0415 - the bench is not a project module

    monkeypatch.chdir(tmp_path)
    args = ["--seeds", "0,1", "--users", "1", "--rounds", "12", "--drift-at", "6",
            "--window", "3", "--cold-users", "1", "--cold-rounds", "4",
            "--policies", "pooled-v1,oracle"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| pooled-v1 |" in out
    assert "| oracle |" in out
    assert "Δ hours" in out
    assert (tmp_path / "var" / "bench-results.jsonl").exists()
