"""A simulation log made in memory, the way the in-process simulator plays it (lockstep
rounds, same World streams, rule judge), so estimator tests need no broker or database."""

from __future__ import annotations

from bandit.base import Policy
from bandit.ope.logged import LoggedRow
from judges.personas import Persona, load_personas
from judges.rule import RuleJudge, expected_reward
from judges.world import World


def lockstep_log(
    policy: Policy, *, seed: int, users: int, rounds: int, personas: list[Persona] | None = None
) -> list[LoggedRow]:
    personas = personas if personas is not None else load_personas()
    world, judge = World(seed), RuleJudge()
    people = [(p, i) for p in personas for i in range(users)]
    states = {(p.name, i): policy.new_user() for p, i in people}
    shared = policy.new_shared()
    rows: list[LoggedRow] = []
    for r in range(rounds):
        picks = []
        for p, i in people:
            moment, tasks = world.moment(p, i, r), world.candidates(p, i, r)
            choice = policy.choose(
                states[p.name, i], shared, moment, tasks, world.policy_rng(p, i, r)
            )
            picks.append((p, i, moment, tasks, choice))
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
            policy.update(states[p.name, i], shared, moment, task, reward)
    return rows
