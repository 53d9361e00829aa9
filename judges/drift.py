"""Drift: from a given round on, each persona judges with other preferences.

A drift keeps every user's identity (persona name, user id, the world's streams) and changes
only the preferences the judge reads, all at once, at round ``at_round``. The new
preferences come from a named mapping over the run's persona set:

- ``rotate``: the i-th persona takes on the preferences (and the description the LLM judge
  reads) of the (i + 1)-th, the last one those of the first. The set of preferences is the
  same before and after, so the population's oracle and random levels stay where they were,
  and a policy that knows the persona set still knows every type; only who is who changes.
  A set of one persona does not change.
- ``invert``: each persona's preferences turn around: ``prefers_high_priority`` → −x,
  ``prefers_overdue`` → 1 − x, and the morning and evening activity swap. These are
  preferences no persona had before; the description is not rewritten, so ``invert`` is for
  the rule judge only (the run configuration refuses it with the LLM judge).

Pure and deterministic: no draws at all, a function of (persona, round).

>>> from judges.personas import load_personas
>>> personas = load_personas()
>>> drift = Drift.of(personas, "rotate", at_round=10)
>>> first = personas[0]
>>> drift.persona_at(first, 9) is first
True
>>> after = drift.persona_at(first, 10)
>>> after.name, after.prefers_high_priority == personas[1].prefers_high_priority
('deadline-driven', True)
>>> inverted = Drift.of(personas, "invert", at_round=0).persona_at(first, 0)
>>> inverted.prefers_high_priority, inverted.prefers_overdue, inverted.evening_active
(-0.9, 0.1, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from judges.personas import Persona

__all__ = ["DRIFTS_WITH_DESCRIPTIONS", "DRIFT_MAPPINGS", "Drift", "drifted_preferences"]

# The named mappings; ``rotate`` also carries the description (usable by the LLM judge).
DRIFT_MAPPINGS: tuple[str, ...] = ("rotate", "invert")
DRIFTS_WITH_DESCRIPTIONS = frozenset({"rotate"})


def _inverted(persona: Persona) -> Persona:
    return dataclasses.replace(
        persona,
        prefers_high_priority=-persona.prefers_high_priority + 0.0,  # no -0.0
        prefers_overdue=round(1.0 - persona.prefers_overdue, 12),
        morning_active=persona.evening_active,
        evening_active=persona.morning_active,
    )


def drifted_preferences(personas: Sequence[Persona], mapping: str) -> dict[str, Persona]:
    """Each persona's name → the persona it judges as after the drift (same name).

    >>> from judges.personas import load_personas
    >>> after = drifted_preferences(load_personas(), "rotate")
    >>> after["overdue-ignorer"].prefers_high_priority  # the first persona's
    0.9
    >>> drifted_preferences(load_personas(), "shuffle")
    Traceback (most recent call last):
    ...
    ValueError: unknown drift 'shuffle'; known: rotate, invert
    """
    if mapping not in DRIFT_MAPPINGS:
        raise ValueError(f"unknown drift {mapping!r}; known: {', '.join(DRIFT_MAPPINGS)}")
    if mapping == "invert":
        return {p.name: _inverted(p) for p in personas}
    n = len(personas)
    return {
        p.name: dataclasses.replace(personas[(i + 1) % n], name=p.name)
        for i, p in enumerate(personas)
    }


@dataclass(frozen=True, slots=True)
class Drift:
    """From ``at_round`` on, persona ``name`` judges as ``after[name]``."""

    at_round: int
    mapping: str
    after: Mapping[str, Persona]

    @classmethod
    def of(cls, personas: Sequence[Persona], mapping: str, *, at_round: int) -> Drift:
        if at_round < 0:
            raise ValueError("the drift round must be >= 0")
        return cls(at_round, mapping, drifted_preferences(personas, mapping))

    def persona_at(self, persona: Persona, round_: int) -> Persona:
        """The persona the judge reads for ``persona`` in ``round_``."""
        if round_ < self.at_round:
            return persona
        return self.after.get(persona.name, persona)
