"""The worker's learner: a batch's rewards learned together, vectorised across its users.

The join (``streams.worker.joiner``, ``learn_later``) leaves each user's rewards as lessons.
They are learned here in waves: wave k holds the k-th lesson of every user that has one, so
each user's own rewards are learned in order, and a wave is one ``Policy.update_many`` per
policy (per run for a pooled policy: the users of one run share its pool, whatever their
partitions; ``Pools.learn_across`` keeps each partition's part of it). numpy then does the
arithmetic for the whole wave, where one update per reward spent most of its time in Python
and in numpy's per-call overhead (the default policy's update was 42% of the worker's time,
BENCHMARKS.md; a call per partition still cost 0.3 ms each in small live batches).

What it changes: a pooled policy weighs each user of a wave against the pooled prior as it
stood at the wave's start, not after the other users' rewards of the same wave
(``PooledMix.update_many``), as the simulator's in-process runs learn a block of users. A
user learning alone (the simulator at concurrency 1) gets exactly what one update at a time
gives; the pool is always the exact sum of the records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandit.base import CandidateBlock, Policy
from streams.worker.joiner import PolicyModels
from streams.worker.pools import Pools

__all__ = ["Learner", "learn_together"]

_Slot = tuple[str | None, int]  # (run id, partition): the users that share pool views


@dataclass(frozen=True, slots=True)
class Learner:
    """One user of a batch with lessons to learn."""

    key: str
    slot: _Slot
    models: PolicyModels


async def learn_together(
    policies: Sequence[Policy], learners: Sequence[Learner], pools: Pools
) -> dict[str, Exception]:
    """Learn every learner's lessons, in waves; the keys whose learning raised, with why.

    A call that raises fails all its users (their states may be half-updated): the caller
    must not store them, and must rebuild the pools of their partitions from the records.
    Their later waves are skipped; the other users go on. Between calls it lets the event
    loop run (the batch's rows are being written meanwhile).
    """
    failed: dict[str, Exception] = {}
    waves = max((len(learner.models.lessons) for learner in learners), default=0)
    for k in range(waves):
        wave = [x for x in learners if len(x.models.lessons) > k and x.key not in failed]
        for policy in policies:
            for run_id, members in _calls(policy, wave):
                try:
                    _learn(policy, members, k, run_id, pools)
                except Exception as exc:  # a bug: dead-letter these users, keep the rest
                    failed.update(dict.fromkeys((m.key for m in members), exc))
                await asyncio.sleep(0)
            wave = [x for x in wave if x.key not in failed]
    return failed


def _calls(policy: Policy, wave: list[Learner]) -> list[tuple[str | None, list[Learner]]]:
    """The wave's users per call: one call, or one per run for a pooled policy."""
    if not wave or policy.name not in wave[0].models.shared:
        return [(None, wave)] if wave else []
    groups: dict[str | None, list[Learner]] = {}
    for learner in wave:
        groups.setdefault(learner.slot[0], []).append(learner)
    return list(groups.items())


def _learn(
    policy: Policy, members: list[Learner], k: int, run_id: str | None, pools: Pools
) -> None:
    if policy.name not in members[0].models.shared:
        _update(policy, members, k, None)
        return
    states = [(m.slot[1], m.models.state(policy)) for m in members]
    pools.learn_across(policy, run_id, states, lambda pool: _update(policy, members, k, pool))


def _update(policy: Policy, members: list[Learner], k: int, shared: Any) -> None:
    lessons = [m.models.lessons[k] for m in members]
    block = CandidateBlock.of([x.moment for x in lessons], [[x.task] for x in lessons])
    policy.update_many(
        [m.models.state(policy) for m in members],
        shared,
        block,
        np.zeros(len(members), dtype=np.int64),
        np.array([x.reward for x in lessons], dtype=np.float64),
    )
