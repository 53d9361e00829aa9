"""Small statistics for comparing policies and runs: means and shares with 95% intervals,
paired differences, and the fraction of the random → oracle gap a policy closes.

Pure arithmetic: the simulator's summary, the run reports, ``tipstream compare`` and
``tipstream evaluate`` all take their intervals from here.

>>> iv = mean_ci95([1.0, 2.0, 3.0, 4.0])
>>> round(iv.mean, 3), round(iv.low, 3), round(iv.high, 3), iv.n
(2.5, 0.446, 4.554, 4)
>>> m = mean_ci95([1.0, 2.0, 3.0])
>>> (m.mean, round(m.low, 4), round(m.high, 4))
(2.0, -0.4841, 4.4841)
>>> d = paired_difference([0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 1.0, 2.0])
>>> (d.mean, round(d.low, 4), round(d.high, 4), d.verdict)
(1.5, 0.5813, 2.4187, 'B better')
>>> round(gap_closed(expected=0.1, random=-0.5, oracle=0.3) or 0.0, 6)
0.75
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bandit.base import FloatArray

__all__ = [
    "Z_975",
    "Interval",
    "gap_closed",
    "mean_ci95",
    "paired_difference",
    "proportion_ci95",
    "t_975",
]

Z_975 = 1.959963984540054
# Two-sided 95% Student t quantiles (0.975) for 1..30 degrees of freedom.
_T975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836,
    2.446911851, 2.364624252, 2.306004135, 2.262157163, 2.228138852,
    2.200985160, 2.178812830, 2.160368656, 2.144786688, 2.131449546,
    2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447,
    2.079613845, 2.073873068, 2.068657610, 2.063898562, 2.059538553,
    2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456,
)  # fmt: skip

Values = Sequence[float] | FloatArray


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean with its 95% interval; ``n`` is the number of observations behind it (0: none,
    and the figures are NaN; 1: the degenerate interval of the single value)."""

    n: int
    mean: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def verdict(self) -> str:
        """For a paired difference B − A: "no difference" when the interval holds 0."""
        if self.low <= 0.0 <= self.high:
            return "no difference"
        return "B better" if self.mean > 0 else "A better"

    def text(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


_NO_VALUES = Interval(0, math.nan, math.nan, math.nan)


def t_975(df: int) -> float:
    """0.975 quantile of Student's t: exact table up to 30 df, Cornish–Fisher beyond
    (error below 1e-5), tending to the normal 1.96.

    >>> round(t_975(10), 4), round(t_975(120), 4), round(t_975(10**9), 4)
    (2.2281, 1.9799, 1.96)
    """
    if df < 1:
        raise ValueError("need at least one degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z_975
    g1 = (z**3 + z) / 4.0
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96.0
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384.0
    return z + g1 / df + g2 / df**2 + g3 / df**3


def mean_ci95(values: Values) -> Interval:
    """Sample mean with a 95% t interval (the normal one in the limit of large n)."""
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return _NO_VALUES
    m = float(x.mean())
    if n == 1:
        return Interval(1, m, m, m)
    half = t_975(n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(n, m, m - half, m + half)


def paired_difference(a: Values, b: Values) -> Interval:
    """Mean of b[i] − a[i] with its 95% interval (pairs share users, moments, candidates).

    >>> iv = paired_difference([0.5, 1.4, 2.6], [1.0, 2.0, 3.0])
    >>> round(iv.mean, 3), iv.contains(0.0)
    (0.5, False)
    """
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples must have the same length: {xa.shape} vs {xb.shape}")
    return mean_ci95(xb - xa)


def proportion_ci95(k: int, n: int) -> Interval:
    """Share k/n with the Wilson 95% interval.

    >>> p = proportion_ci95(5, 10)
    >>> round(p.low, 3), round(p.high, 3)
    (0.237, 0.763)
    """
    if n == 0:
        return _NO_VALUES
    p = k / n
    z2 = Z_975**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_975 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(n, p, max(0.0, centre - half), min(1.0, centre + half))


def gap_closed(expected: float | None, random: float | None, oracle: float | None) -> float | None:
    """(expected − random) / (oracle − random): 0 is random, 1 is the oracle; None when a
    figure is unknown or the gap is zero."""
    if expected is None or random is None or oracle is None or oracle == random:
        return None
    return (expected - random) / (oracle - random)
