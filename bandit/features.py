"""Feature maps from (moment, task) to vectors.

``features_v1`` is the former production map, kept exactly (docs/simulation.md):
[sin(2πh/24), cos(2πh/24), isOverdue, min(taskAgeDays, 30)/30, (priority − 1)/3,
sin(2πd/7), cos(2πd/7)].

>>> x = features_v1(Moment(6, 0), Task("t", priority=4, is_overdue=True, task_age_days=45.0))
>>> [round(float(v), 3) for v in x]
[1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]
"""

from __future__ import annotations

import math

import numpy as np

from bandit.base import FloatArray, Moment, Task

V1_DIM = 7
_TWO_PI = 2.0 * math.pi


def features_v1(moment: Moment, task: Task) -> FloatArray:
    h = moment.hour_of_day
    d = moment.day_of_week
    return np.array(
        [
            math.sin(_TWO_PI * h / 24.0),
            math.cos(_TWO_PI * h / 24.0),
            1.0 if task.is_overdue else 0.0,
            min(task.task_age_days, 30.0) / 30.0,
            (task.priority - 1) / 3.0,
            math.sin(_TWO_PI * d / 7.0),
            math.cos(_TWO_PI * d / 7.0),
        ],
        dtype=np.float64,
    )


V2_DIM = 5  # also the width of features_v3, which centres two of these columns


def features_v2(moment: Moment, task: Task) -> FloatArray:
    """Intercept, (priority − 1)/3, isOverdue, morning (5 ≤ h < 10), evening (18 ≤ h < 22).

    The intercept and hour bands absorb the user's overall level (mostly negative rewards)
    so it does not leak into the task coefficients (issue 4). Tuning against the rule judge
    preferred this small map to one-hot priority, overdue × priority and weekday terms:
    fewer coefficients learn faster from noisy rewards.

    >>> features_v2(Moment(7, 3), Task("t", priority=3, is_overdue=True, task_age_days=1.0))
    array([1.        , 0.66666667, 1.        , 1.        , 0.        ])
    """
    h = moment.hour_of_day
    return np.array(
        [
            1.0,
            (task.priority - 1) / 3.0,
            1.0 if task.is_overdue else 0.0,
            1.0 if 5 <= h < 10 else 0.0,
            1.0 if 18 <= h < 22 else 0.0,
        ],
        dtype=np.float64,
    )


def features_v3(moment: Moment, task: Task) -> FloatArray:
    """features_v2 with the task columns centred: intercept, (priority − 2.5)/3,
    isOverdue − 0.3, morning, evening.

    Centring (priority at its mean 2.5, overdue at its base rate 0.3) makes the intercept
    the user's level at an average task instead of at priority 1. Users differ a lot in
    priority slope but little in that level, so the two can be given separate, nearly
    independent priors (``pooledmix-v3``); uncentred, a steep slope and a high intercept
    go together and a prior on one mis-shrinks the other.

    >>> [round(float(v), 3) for v in features_v3(Moment(19, 3), Task("t", 4, False, 1.0))]
    [1.0, 0.5, -0.3, 0.0, 1.0]
    """
    h = moment.hour_of_day
    return np.array(
        [
            1.0,
            (task.priority - 2.5) / 3.0,
            (1.0 if task.is_overdue else 0.0) - 0.3,
            1.0 if 5 <= h < 10 else 0.0,
            1.0 if 18 <= h < 22 else 0.0,
        ],
        dtype=np.float64,
    )
