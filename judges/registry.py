"""Judges by wire name: ``rule``, ``llm`` and ``external``.

What a run may do with a judge is a capability of its class (``knows_expectations``,
``two_phase``, :class:`~judges.base.SyncJudge`), readable before the judge is built.

>>> JUDGE_NAMES, JUDGE_NAMES_TEXT
(('rule', 'llm', 'external'), 'rule, llm or external')
>>> judge_class("rule").knows_expectations, judge_class("external").two_phase
(True, True)
>>> make_judge("psychic")
Traceback (most recent call last):
...
judges.registry.UnknownJudgeError: unknown judge 'psychic'; known: rule, llm, external
"""

from __future__ import annotations

from collections.abc import Callable

from judges.base import Judge
from judges.external import ExternalJudge
from judges.llm import DEFAULT_MODEL, LLMJudge
from judges.rule import RuleJudge

__all__ = [
    "DEFAULT_JUDGE",
    "JUDGE_NAMES",
    "JUDGE_NAMES_TEXT",
    "UnknownJudgeError",
    "judge_class",
    "make_judge",
]

# Wire name → (the class, whose capabilities a run checks first; a factory of a fresh judge
# given the LLM's model name and whether a failure may fall back to the rule judge, which
# only the LLM judge uses).
_JUDGES: dict[str, tuple[type[Judge], Callable[[str, bool], Judge]]] = {
    RuleJudge.name: (RuleJudge, lambda _model, _fallback: RuleJudge()),
    LLMJudge.name: (LLMJudge, lambda model, fallback: LLMJudge(model=model, strict=not fallback)),
    ExternalJudge.name: (ExternalJudge, lambda _model, _fallback: ExternalJudge()),
}
JUDGE_NAMES: tuple[str, ...] = tuple(_JUDGES)
JUDGE_NAMES_TEXT = f"{', '.join(JUDGE_NAMES[:-1])} or {JUDGE_NAMES[-1]}"
DEFAULT_JUDGE = RuleJudge.name


class UnknownJudgeError(ValueError):
    """The name is not a registered judge."""


def judge_class(name: str) -> type[Judge]:
    """The class registered under ``name`` (its capabilities), without building a judge."""
    entry = _JUDGES.get(name)
    if entry is None:
        raise UnknownJudgeError(f"unknown judge {name!r}; known: {', '.join(JUDGE_NAMES)}")
    return entry[0]


def make_judge(name: str, *, llm_model: str = DEFAULT_MODEL, fallback: bool = True) -> Judge:
    """A fresh judge for a wire name (``llm_model``: the setting ``TIPSTREAM_LLM_MODEL``;
    ``fallback``: the LLM judge hands a failed judgment to the rule judge, else it raises
    :class:`~judges.llm.LLMJudgeError`)."""
    judge_class(name)  # the error for an unknown name
    return _JUDGES[name][1](llm_model, fallback)
