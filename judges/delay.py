"""Feedback delay: how long after the user's reaction its feedback arrives, if ever.

A delay is written ``KIND:PARAMETERS`` in seconds of stream time:

- ``none``: the feedback arrives at once (the simulator's schedule without delay);
- ``fixed:S``: always S seconds;
- ``uniform:LOW-HIGH``: uniform in [LOW, HIGH] seconds;
- ``exp:MEAN``: exponential with mean MEAN seconds (many minutes, a tail of hours).

A fraction ``lost`` of the feedback never arrives at all. Each (user, round) draws from its
own stream of the world (:meth:`judges.world.World.delivery_rng`), in this order: one
uniform for "lost", then the delay. So every policy run on the same seed meets the same
delays, whichever tip it chose (common random numbers).

>>> delay = parse_delay("exp:1800", lost=0.1)
>>> delay.text, delay.mean_s
('exp:1800', 1800.0)
>>> import numpy as np
>>> parse_delay("fixed:600").draw_s(np.random.default_rng(0))
600.0
>>> parse_delay("uniform:60-7200").instant, parse_delay("none").instant
(False, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DELAY_KINDS", "FeedbackDelay", "parse_delay"]

DELAY_KINDS: tuple[str, ...] = ("none", "fixed", "uniform", "exp")


@dataclass(frozen=True, slots=True)
class FeedbackDelay:
    """A delay distribution in seconds of stream time, and the share never delivered."""

    kind: str = "none"
    low_s: float = 0.0  # fixed: the delay; uniform: the low end; exp: the mean
    high_s: float = 0.0  # uniform: the high end
    lost: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in DELAY_KINDS:
            raise ValueError(f"unknown delay {self.kind!r}; known: {', '.join(DELAY_KINDS)}")
        if not 0.0 <= self.lost <= 1.0:
            raise ValueError("the lost fraction must be in [0, 1]")
        if not (self.low_s >= 0.0 and self.high_s >= 0.0):  # also refuses NaN
            raise ValueError("delays must be >= 0")
        if self.kind == "uniform" and self.high_s < self.low_s:
            raise ValueError("a uniform delay needs LOW <= HIGH")
        if self.kind == "exp" and not self.low_s > 0:
            raise ValueError("an exponential delay needs a mean > 0")

    @property
    def instant(self) -> bool:
        """No delay and nothing lost: the feedback is learned as soon as it is judged."""
        return self.kind == "none" and self.lost == 0.0

    @property
    def mean_s(self) -> float:
        if self.kind == "uniform":
            return (self.low_s + self.high_s) / 2
        return 0.0 if self.kind == "none" else self.low_s

    @property
    def text(self) -> str:
        """The spec it was parsed from (normalised)."""
        if self.kind == "none":
            return "none"
        if self.kind == "uniform":
            return f"uniform:{self.low_s:g}-{self.high_s:g}"
        return f"{self.kind}:{self.low_s:g}"

    def is_lost(self, rng: np.random.Generator) -> bool:
        """The first draw of a (user, round): does the feedback never arrive?"""
        return bool(rng.random() < self.lost)

    def draw_s(self, rng: np.random.Generator) -> float:
        """The second draw: the delay in seconds."""
        if self.kind == "fixed":
            return self.low_s
        if self.kind == "uniform":
            return float(rng.uniform(self.low_s, self.high_s))
        if self.kind == "exp":
            return float(rng.exponential(self.low_s))
        return 0.0

    def draw(self, rng: np.random.Generator) -> float | None:
        """The delay of one feedback in seconds, or None when it never arrives.

        >>> import numpy as np
        >>> FeedbackDelay("fixed", 60.0, lost=1.0).draw(np.random.default_rng(0)) is None
        True
        """
        lost = self.is_lost(rng)
        delay = self.draw_s(rng)
        return None if lost else delay


def parse_delay(spec: str, *, lost: float = 0.0) -> FeedbackDelay:
    """``none``, ``fixed:S``, ``uniform:LOW-HIGH`` or ``exp:MEAN`` (seconds).

    >>> parse_delay("uniform:60-3600", lost=0.05)
    FeedbackDelay(kind='uniform', low_s=60.0, high_s=3600.0, lost=0.05)
    >>> parse_delay("gamma:3")
    Traceback (most recent call last):
    ...
    ValueError: unknown delay 'gamma'; known: none, fixed, uniform, exp
    """
    kind, _, rest = spec.strip().partition(":")
    if kind == "none" and not rest:
        return FeedbackDelay("none", lost=lost)
    if kind not in DELAY_KINDS:
        raise ValueError(f"unknown delay {kind!r}; known: {', '.join(DELAY_KINDS)}")
    try:
        if kind == "uniform":
            low, _, high = rest.partition("-")
            return FeedbackDelay(kind, float(low), float(high), lost)
        return FeedbackDelay(kind, float(rest), lost=lost)
    except ValueError as err:
        if "delay" in str(err) or "lost" in str(err):
            raise
        raise ValueError(
            f"bad delay {spec!r}: expected none, fixed:S, uniform:LOW-HIGH or exp:MEAN (seconds)"
        ) from None
