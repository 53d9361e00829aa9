"""Small statistics for comparing policies: mean with a 95% interval, paired differences,
and the fraction of the random → oracle gap a policy closes.

>>> iv = mean_ci([1.0, 2.0, 3.0, 4.0])
>>> round(iv.mean, 3), round(iv.low, 3), round(iv.high, 3), iv.n
(2.5, 0.446, 4.554, 4)
>>> round(gap_closed(expected=0.1, random=-0.5, oracle=0.3), 6)
0.75
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bandit.base import FloatArray

Z975 = 1.959963984540054
# Two-sided 95% Student t quantiles (0.975) for 1..30 degrees of freedom.
_T975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836,
    2.446911851, 2.364624252, 2.306004135, 2.262157163, 2.228138852,
    2.200985160, 2.178812830, 2.160368656, 2.144786688, 2.131449546,
    2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447,
    2.079613845, 2.073873068, 2.068657610, 2.063898562, 2.059538553,
    2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Interval:
    """An estimate with its 95% interval; ``n`` is the number of observations behind it."""

    mean: float
    low: float
    high: float
    n: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def t975(df: int) -> float:
    """0.975 quantile of Student's t: exact table up to 30 df, Cornish–Fisher beyond
    (error below 1e-5), tending to the normal 1.96.

    >>> round(t975(10), 4), round(t975(120), 4), round(t975(10**9), 4)
    (2.2281, 1.9799, 1.96)
    """
    if df < 1:
        raise ValueError("need at least one degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z975
    g1 = (z**3 + z) / 4.0
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96.0
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384.0
    return z + g1 / df + g2 / df**2 + g3 / df**3


def mean_ci(values: Sequence[float] | FloatArray) -> Interval:
    """Sample mean with a 95% t interval (the normal one in the limit of large n).

    One value gives a degenerate interval [mean, mean] flagged by n = 1; no value is an error.
    """
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        raise ValueError("no values")
    m = float(x.mean())
    if n == 1:
        return Interval(m, m, m, 1)
    half = t975(n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(m, m - half, m + half, n)


def paired_diff_ci(a: Sequence[float] | FloatArray, b: Sequence[float] | FloatArray) -> Interval:
    """Mean of a − b over paired observations (same seed, user, round) with its interval.

    >>> iv = paired_diff_ci([1.0, 2.0, 3.0], [0.5, 1.4, 2.6])
    >>> round(iv.mean, 3), iv.contains(0.0)
    (0.5, False)
    """
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples differ in shape: {xa.shape} vs {xb.shape}")
    return mean_ci(xa - xb)


def gap_closed(expected: float, random: float, oracle: float) -> float:
    """(expected − random) / (oracle − random): 0 is random, 1 is the oracle.

    Raises ValueError when the oracle is no better than random (the gap is undefined).
    """
    gap = oracle - random
    if not gap > 0.0:
        raise ValueError(f"oracle ({oracle}) is not above random ({random}): gap undefined")
    return (expected - random) / gap
