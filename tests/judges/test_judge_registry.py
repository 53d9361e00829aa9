"""Judges by name: the three wire names, their capabilities, and a clear unknown-name error."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bandit.base import Moment, Task
from judges.base import SyncJudge
from judges.external import ExternalJudge
from judges.llm import LLMJudge
from judges.personas import load_personas
from judges.registry import (
    JUDGE_NAMES,
    UnknownJudgeError,
    judge_class,
    make_judge,
)
from judges.rule import RuleJudge
from streams.settings import Settings


def test_names_and_capabilities() -> None:
    assert JUDGE_NAMES == ("rule", "llm", "external")
    assert [judge_class(n).knows_expectations for n in JUDGE_NAMES] == [True, False, False]
    assert [judge_class(n).two_phase for n in JUDGE_NAMES] == [False, False, True]
    assert [issubclass(judge_class(n), SyncJudge) for n in JUDGE_NAMES] == [True, False, False]


def test_make_judge_builds_each(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_judge("rule"), RuleJudge)
    llm = make_judge("llm", llm_model="some-model")
    assert isinstance(llm, LLMJudge)
    assert llm.model == "some-model"
    monkeypatch.setenv("TIPSTREAM_LLM_MODEL", "from-the-environment")
    assert Settings().llm_model == "from-the-environment"  # the setting, read in streams/
    assert isinstance(make_judge("external"), ExternalJudge)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownJudgeError, match="known: rule, llm, external"):
        judge_class("psychic")
    with pytest.raises(UnknownJudgeError, match="'psychic'"):
        make_judge("psychic")


def test_expectations_only_from_the_judge_that_knows_them() -> None:
    persona = load_personas()[0]
    tasks = [Task("a", 4, True, 1.0), Task("b", 1, False, 2.0)]
    rule = make_judge("rule")
    expected = rule.expected_rewards(persona, Moment(8, 1), tasks)
    assert expected is not None
    assert len(expected) == 2
    assert make_judge("external").expected_rewards(persona, Moment(8, 1), tasks) is None
    assert rule.usage_counters() is None


def test_the_external_judge_does_not_answer_in_the_loop() -> None:
    judge = make_judge("external")
    persona = load_personas()[0]
    with pytest.raises(NotImplementedError, match="phase 2"):
        asyncio.run(
            judge.judge(persona, Moment(8, 1), Task("a", 4, True, 1.0), np.random.default_rng(0))
        )
