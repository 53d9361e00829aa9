"""Replay of a target policy over a log: its probability vector over each logged row's
candidates, as a shadow policy in the worker would have had it.

The target starts from fresh state, is asked for its probabilities over each row's
candidates (so π is the target's state at that moment), and then learns from the logged
reward of the logged tip. Pooled policies keep one shared state across all users. Rows of
one ``batch`` (one simulator round) all decide from the state before the batch, then the
batch is learned in row order, exactly as the in-process simulator plays it, so replaying
the logging policy itself reproduces its logged propensities. Production rows each have
their own batch and are replayed one by one in ``served_at`` order (the worker's state at
show time may lag pending feedback; the replay ignores that lag).

The oracle is the registry's (``make_oracle``), built per row from the rule judge's
expected rewards logged with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bandit.base import FloatArray, Moment, Task
from bandit.ope.logged import EvaluationInputError, LoggedRow
from bandit.registry import ORACLE_NAME, UnknownPolicyError, make_oracle, make_policy

__all__ = ["replay"]


def _logged_expectation(row: LoggedRow) -> Callable[[Moment, Task], float]:
    """The judge's expected reward of the row's candidates, as the oracle asks for it."""
    if row.expected is None:
        raise EvaluationInputError("the oracle needs the rule judge's expected rewards")
    by_task = dict(zip(row.tasks, row.expected, strict=True))

    def expected_reward(moment: Moment, task: Task) -> float:
        return by_task[task]

    return expected_reward


def _replay_oracle(rows: Sequence[LoggedRow]) -> list[FloatArray]:
    probs: list[FloatArray] = []
    for row in rows:
        oracle = make_oracle(_logged_expectation(row))
        probs.append(oracle.probabilities(oracle.new_user(), None, row.moment, row.tasks))
    return probs


def replay(name: str, rows: Sequence[LoggedRow], *, epsilon: float = 0.1) -> list[FloatArray]:
    """The target's probability vector over each row's candidates, learning as it goes.

    ``name`` is a registry name or ``oracle`` (which needs the judge's expected rewards in
    the rows: simulation runs with the rule judge); ``epsilon`` is egreedy-v1's ε.
    """
    if name == ORACLE_NAME:
        return _replay_oracle(rows)
    try:
        policy = make_policy(name, epsilon=epsilon)
    except UnknownPolicyError as err:
        raise EvaluationInputError(str(err)) from None
    shared = policy.new_shared()
    users: dict[str, Any] = {}
    probs: list[FloatArray] = []
    n, start = len(rows), 0
    while start < n:
        stop = start
        while stop < n and rows[stop].batch == rows[start].batch:
            stop += 1
        for row in rows[start:stop]:
            state = users.get(row.user_id)
            if state is None:
                state = users[row.user_id] = policy.new_user()
            probs.append(np.asarray(policy.probabilities(state, shared, row.moment, row.tasks)))
        for row in rows[start:stop]:
            policy.update(users[row.user_id], shared, row.moment, row.tasks[row.index], row.reward)
        start = stop
    return probs
