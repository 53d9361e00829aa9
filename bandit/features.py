"""Feature maps from (moment, task) to vectors.

``features_v1`` is the former production map, kept exactly (docs/simulation.md):
[sin(2πh/24), cos(2πh/24), isOverdue, min(taskAgeDays, 30)/30, (priority − 1)/3,
sin(2πd/7), cos(2πd/7)].

>>> x = features_v1(Moment(6, 0), Task("t", priority=4, is_overdue=True, task_age_days=45.0))
>>> [round(float(v), 3) for v in x]
[1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]

``features_v1_many`` and ``features_v2_many`` map a whole :class:`~bandit.base.CandidateBlock`
to an n × K × d array, equal element for element to the scalar maps (the hour and weekday
terms are looked up in tables the scalar terms fill; tests/bandit/test_batch_policies.py):

>>> block = CandidateBlock.of([Moment(6, 0)], [[Task("t", 4, True, 45.0)]])
>>> np.array_equal(features_v1_many(block)[0, 0], x), features_v2_many(block).shape
(True, (1, 1, 5))
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from bandit.base import CandidateBlock, FloatArray, IntArray, Moment, Task

__all__ = [
    "V1_DIM",
    "V2_DIM",
    "BlockFeatures",
    "features_v1",
    "features_v1_many",
    "features_v2",
    "features_v2_many",
    "features_v3",
    "features_v3_many",
]

# A feature map over a whole CandidateBlock: n × K × d.
BlockFeatures = Callable[[CandidateBlock], FloatArray]

V1_DIM = 7
_TWO_PI = 2.0 * math.pi


def _cycle(value: int, period: float) -> tuple[float, float]:
    """(sin, cos) of ``value`` on a cycle of ``period``."""
    return math.sin(_TWO_PI * value / period), math.cos(_TWO_PI * value / period)


def features_v1(moment: Moment, task: Task) -> FloatArray:
    hour_sin, hour_cos = _cycle(moment.hour_of_day, 24.0)
    day_sin, day_cos = _cycle(moment.day_of_week, 7.0)
    return np.array(
        [
            hour_sin,
            hour_cos,
            1.0 if task.is_overdue else 0.0,
            min(task.task_age_days, 30.0) / 30.0,
            (task.priority - 1) / 3.0,
            day_sin,
            day_cos,
        ],
        dtype=np.float64,
    )


# The scalar map's hour and weekday terms (numpy's sin and cos may differ from math's in the
# last bit, so the vectorised map looks these up instead of computing them).
_HOUR_CYCLE = np.array([_cycle(h, 24.0) for h in range(24)], dtype=np.float64)
_DAY_CYCLE = np.array([_cycle(d, 7.0) for d in range(7)], dtype=np.float64)


def _per_candidate(block: CandidateBlock, dim: int) -> FloatArray:
    """An empty n × K × dim array for a block's feature vectors."""
    return np.empty((*block.priority.shape, dim), dtype=np.float64)


def _per_user(table: FloatArray, keys: IntArray) -> FloatArray:
    """Rows of ``table`` by each user's key (hour or weekday), for all of its candidates."""
    return table[keys][:, None, :]


def features_v1_many(block: CandidateBlock) -> FloatArray:
    """``features_v1`` of every candidate of the block: n × K × 7."""
    x = _per_candidate(block, V1_DIM)
    x[:, :, 0:2] = _per_user(_HOUR_CYCLE, block.hour)
    x[:, :, 2] = block.overdue
    x[:, :, 3] = np.minimum(block.age, 30.0) / 30.0
    x[:, :, 4] = (block.priority - 1) / 3.0
    x[:, :, 5:7] = _per_user(_DAY_CYCLE, block.day)
    return x


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


# The scalar map's morning and evening columns by hour.
_V2_HOURS = np.array(
    [features_v2(Moment(h, 0), Task("", 1, False, 0.0))[3:5] for h in range(24)],
    dtype=np.float64,
)


def features_v2_many(block: CandidateBlock) -> FloatArray:
    """``features_v2`` of every candidate of the block: n × K × 5."""
    x = _per_candidate(block, V2_DIM)
    x[:, :, 0] = 1.0
    x[:, :, 1] = (block.priority - 1) / 3.0
    x[:, :, 2] = block.overdue
    x[:, :, 3:5] = _per_user(_V2_HOURS, block.hour)
    return x


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


def features_v3_many(block: CandidateBlock) -> FloatArray:
    """``features_v3`` of every candidate of the block: n × K × 5."""
    x = _per_candidate(block, V2_DIM)
    x[:, :, 0] = 1.0
    x[:, :, 1] = (block.priority - 2.5) / 3.0
    x[:, :, 2] = block.overdue - 0.3
    x[:, :, 3:5] = _per_user(_V2_HOURS, block.hour)
    return x
