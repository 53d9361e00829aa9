"""The reward model r̂ of the doubly robust estimator: a prediction of every candidate's
reward in every logged row.

A ridge regression on [1, one-hot priority 2..4, isOverdue, morning, evening], fitted per
user and shrunk towards the same regression pooled over all users, cross-fitted in two folds
(alternate rows of each user's sequence): a row's prediction never uses its own reward, so
the model's errors do not bias the correction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from bandit.base import FloatArray, Moment, Task
from bandit.ope.logged import LoggedRow

__all__ = ["REWARD_FEATURES", "REWARD_MODEL", "reward_features", "reward_model"]

REWARD_FEATURES = 7
REWARD_MODEL = (
    "ridge on [1, priority one-hot (2,3,4), overdue, morning, evening]; per user, shrunk "
    "(λ=4) towards the all-user fit (λ=1); two-fold cross-fitted by alternate rows per user"
)


def reward_features(moment: Moment, task: Task) -> FloatArray:
    """[1, priority==2, priority==3, priority==4, overdue, morning, evening]."""
    h = moment.hour_of_day
    return np.array(
        [
            1.0,
            1.0 if task.priority == 2 else 0.0,
            1.0 if task.priority == 3 else 0.0,
            1.0 if task.priority == 4 else 0.0,
            1.0 if task.is_overdue else 0.0,
            1.0 if 5 <= h < 10 else 0.0,
            1.0 if 18 <= h < 22 else 0.0,
        ],
        dtype=np.float64,
    )


def reward_model(
    rows: Sequence[LoggedRow], *, lam_user: float = 4.0, lam_pool: float = 1.0
) -> list[FloatArray]:
    """Cross-fitted predictions r̂ for every candidate of every row (see the module docstring)."""
    d = REWARD_FEATURES
    seen: Counter[str] = Counter()
    fold = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        fold[i] = seen[row.user_id] % 2
        seen[row.user_id] += 1
    x = np.stack([reward_features(r.moment, r.tasks[r.index]) for r in rows])
    y = np.array([r.reward for r in rows])
    # Sufficient statistics per (user, fold) and per fold.
    gram: dict[tuple[str, int], FloatArray] = {}
    xty: dict[tuple[str, int], FloatArray] = {}
    for i, row in enumerate(rows):
        key = (row.user_id, int(fold[i]))
        if key not in gram:
            gram[key] = np.zeros((d, d))
            xty[key] = np.zeros(d)
        gram[key] += np.outer(x[i], x[i])
        xty[key] += y[i] * x[i]
    pooled = []
    for f in (0, 1):
        mask = fold == f
        a = lam_pool * np.eye(d) + x[mask].T @ x[mask]
        b = x[mask].T @ y[mask]
        pooled.append(np.linalg.solve(a, b))
    theta: dict[tuple[str, int], FloatArray] = {}
    out: list[FloatArray] = []
    for i, row in enumerate(rows):
        other = 1 - int(fold[i])
        key = (row.user_id, other)
        if key not in theta:
            prior = pooled[other]
            if key in gram:
                a = lam_user * np.eye(d) + gram[key]
                theta[key] = np.asarray(
                    np.linalg.solve(a, lam_user * prior + xty[key]), dtype=np.float64
                )
            else:
                theta[key] = prior
        xs = np.stack([reward_features(row.moment, t) for t in row.tasks])
        out.append(np.asarray(np.clip(xs @ theta[key], -1.0, 1.0), dtype=np.float64))
    return out
