"""A simulation log made in memory, the way the simulator plays it (rounds in order, users in
blocks of ``concurrency``, the same World streams and seeds, rule judge), so estimator tests
need no broker or database."""

from __future__ import annotations

import numpy as np

from bandit.base import CandidateBlock, Moment, Policy, Task, choice_rng
from bandit.ope.logged import LoggedRow
from judges.personas import Persona, load_personas
from judges.rule import RuleJudge, expected_reward
from judges.world import World
from streams.sim.choosers import score_seed


def sim_log(
    policy: Policy,
    *,
    seed: int,
    users: int,
    rounds: int,
    personas: list[Persona] | None = None,
    concurrency: int = 32,
) -> list[LoggedRow]:
    personas = personas if personas is not None else load_personas()
    world, judge = World(seed), RuleJudge()
    people = [(p, i) for p in personas for i in range(users)]
    states = {(p.name, i): policy.new_user() for p, i in people}
    shared = policy.new_shared()
    rows: list[LoggedRow] = []
    for r in range(rounds):
        for start in range(0, len(people), concurrency):
            picks = []
            for p, i in people[start : start + concurrency]:
                moment, tasks = world.moment(p, i, r), world.candidates(p, i, r)
                draws = choice_rng(score_seed(world.policy_rng(p, i, r)))
                choice = policy.choose(states[p.name, i], shared, moment, tasks, draws)
                picks.append((p, i, moment, tasks, choice))
            learned: list[tuple[object, Moment, Task, float]] = []
            for p, i, moment, tasks, choice in picks:
                task = tasks[choice.index]
                judgment = judge.judge_sync(p, moment, task, world.judge_rng(p, i, r, task.tip_id))
                reward = round(judgment.reward * 1000) / 1000.0
                rows.append(
                    LoggedRow(
                        user_id=world.user_id(p, i),
                        batch=r,
                        moment=moment,
                        tasks=tuple(tasks),
                        index=choice.index,
                        propensity=choice.propensity,
                        reward=reward,
                        policy=policy.name,
                        expected=tuple(expected_reward(p, moment, t) for t in tasks),
                    )
                )
                learned.append((states[p.name, i], moment, task, reward))
            # The block's rewards together, as the simulator (and the worker) learns them.
            policy.update_many(
                [state for state, *_ in learned],
                shared,
                CandidateBlock.of([m for _, m, _, _ in learned], [[t] for *_, t, _ in learned]),
                np.zeros(len(learned), dtype=np.int64),
                np.array([r for *_, r in learned], dtype=np.float64),
            )
    return rows
