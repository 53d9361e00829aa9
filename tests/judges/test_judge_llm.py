"""The LLM judge against a local fake of the Messages API (never the internet)."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import replace
from pathlib import Path

import anthropic
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit.base import Moment, Task
from bandit.reward import infer_reward
from judges.base import Judgment
from judges.llm import DEFAULT_MODEL, LLMJudge, parse_answer
from judges.personas import Persona, load_personas
from judges.rule import RuleJudge, done_dwell_range, engagement
from tests.judges.conftest import Answer, FakeMessagesAPI, Raw, Status

PERSONA = load_personas()[0]  # deadline-driven: morning-active, likes urgent overdue tasks
MOMENT = Moment(hour_of_day=8, day_of_week=1)
TASK = Task("tip-1", priority=4, is_overdue=True, task_age_days=3.0)  # e = 0.80


def client_for(
    fake: FakeMessagesAPI, *, timeout: float = 30.0, max_retries: int = 2
) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="test", timeout=timeout, max_retries=max_retries
    )


def rng(seed: int = 5) -> np.random.Generator:
    return np.random.default_rng(seed)


def rule_judgment(seed: int = 5, persona: Persona = PERSONA, task: Task = TASK) -> Judgment:
    return RuleJudge().judge_sync(persona, MOMENT, task, rng(seed))


async def test_good_answer_is_the_llms_and_request_has_cached_persona_block(
    fake_api: FakeMessagesAPI,
) -> None:
    fake_api.default = Answer(" Done.\n")
    judge = LLMJudge(client=client_for(fake_api), max_retries=0)
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng())

    assert judgment.action == "done"
    assert judgment.fallback_reason is None
    assert judgment.expected_reward is None
    low, high = done_dwell_range(engagement(PERSONA, MOMENT, TASK))
    assert (low, high) == (15_000, 90_000)
    assert low <= judgment.dwell_ms <= high
    assert judgment.reward == infer_reward("done", judgment.dwell_ms) == 1.0

    [body] = fake_api.bodies
    assert body["model"] == DEFAULT_MODEL
    assert body["max_tokens"] == 10
    instructions, persona_block = body["system"]
    assert "cache_control" not in instructions
    assert persona_block["cache_control"] == {"type": "ephemeral"}
    assert PERSONA.description in persona_block["text"]
    [message] = body["messages"]
    assert message["role"] == "user"
    assert "priority 4" in message["content"]
    assert "Tuesday, 08:00" in message["content"]
    sent = fake_api.headers[0]  # this SDK version sends the key as a bearer token
    assert sent.get("x-api-key") == "test" or sent.get("authorization") == "Bearer test"

    assert (judge.calls, judge.input_tokens, judge.output_tokens) == (1, 180, 2)
    assert judge.fallbacks == {}


async def test_model_name_and_cache_counters_come_through(fake_api: FakeMessagesAPI) -> None:
    fake_api.script = [
        Answer(
            "snooze",
            {
                "input_tokens": 20,
                "output_tokens": 1,
                "cache_creation_input_tokens": 4100,
                "cache_read_input_tokens": None,
            },
        ),
        Answer(
            "dismiss",
            {
                "input_tokens": 20,
                "output_tokens": 1,
                "cache_creation_input_tokens": None,
                "cache_read_input_tokens": 4100,
            },
        ),
        Answer("snooze", {"input_tokens": 7, "output_tokens": 1}),  # cache fields absent
    ]
    judge = LLMJudge(client=client_for(fake_api), model="claude-test-model", max_retries=0)
    actions = [(await judge.judge(PERSONA, MOMENT, TASK, rng(i))).action for i in range(3)]

    assert actions == ["snooze", "dismiss", "snooze"]
    assert {b["model"] for b in fake_api.bodies} == {"claude-test-model"}
    assert judge.usage() == {
        "calls": 3,
        "input_tokens": 47,
        "output_tokens": 3,
        "cache_read_tokens": 4100,
        "cache_write_tokens": 4100,
        "fallbacks": 0,
    }


async def test_snooze_and_dismiss_dwell_ranges(fake_api: FakeMessagesAPI) -> None:
    judge = LLMJudge(client=client_for(fake_api), max_retries=0)
    for answer, (low, high), reward in (
        ("snooze", (3_000, 20_000), 0.1),
        ("dismiss", (1_000, 5_000), -1.0),
    ):
        fake_api.default = Answer(answer)
        for seed in range(20):
            j = await judge.judge(PERSONA, MOMENT, TASK, rng(seed))
            assert (j.action, j.reward, j.fallback_reason) == (answer, reward, None)
            assert low <= j.dwell_ms <= high


@pytest.mark.parametrize("answer", ["maybe", "I would snooze", "done snooze", "", "d0ne"])
async def test_malformed_answer_falls_back_to_the_rule_judgment(
    fake_api: FakeMessagesAPI, answer: str
) -> None:
    fake_api.default = Answer(answer)
    judge = LLMJudge(client=client_for(fake_api), max_retries=0)
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng(11))

    expected = rule_judgment(11)
    assert judgment.fallback_reason == "bad_answer"
    assert (judgment.action, judgment.dwell_ms, judgment.reward, judgment.expected_reward) == (
        expected.action,
        expected.dwell_ms,
        expected.reward,
        expected.expected_reward,
    )
    assert judge.fallbacks == {"bad_answer": 1}
    assert judge.input_tokens == 180  # the call happened and is paid for


async def test_429_is_retried_by_the_sdk_then_the_answer_is_the_llms(
    fake_api: FakeMessagesAPI,
) -> None:
    fake_api.script = [Status(429, {"retry-after": "0"}), Answer("dismiss")]
    judge = LLMJudge(client=client_for(fake_api), max_retries=2)
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng())

    assert len(fake_api.bodies) == 2  # the SDK retried once
    assert (judgment.action, judgment.fallback_reason, judgment.reward) == ("dismiss", None, -1.0)
    assert judge.fallbacks == {}
    assert judge.calls == 1


async def test_429_after_all_retries_is_rate_limited(fake_api: FakeMessagesAPI) -> None:
    fake_api.default = Status(429, {"retry-after-ms": "1"})
    judge = LLMJudge(client=client_for(fake_api), max_retries=2)
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng())

    assert len(fake_api.bodies) == 3
    assert judgment.fallback_reason == "rate_limited"
    assert judge.fallbacks == {"rate_limited": 1}


async def test_persistent_500_falls_back_with_api_error(fake_api: FakeMessagesAPI) -> None:
    fake_api.default = Status(500, {"retry-after-ms": "1"})
    judge = LLMJudge(client=client_for(fake_api), max_retries=1)
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng(3))

    assert len(fake_api.bodies) == 2  # one try, one SDK retry
    assert judgment.fallback_reason == "api_error"
    assert judgment.action == rule_judgment(3).action
    assert judge.fallbacks == {"api_error": 1}


@pytest.mark.parametrize("status", [400, 401, 404, 529])
async def test_other_statuses_are_api_errors(fake_api: FakeMessagesAPI, status: int) -> None:
    fake_api.default = Status(status, {"retry-after-ms": "1"})
    judge = LLMJudge(client=client_for(fake_api), max_retries=0)
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng())
    assert judgment.fallback_reason == "api_error"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (Raw('{"type": "message", "content": "not a list"}'), "bad_answer"),
        (Raw("<html>gateway</html>", "text/html"), "api_error"),
        (
            Raw(
                '{"type": "message", "role": "assistant", "content": [{"type": "tool_use", '
                '"id": "t", "name": "x", "input": {}}], "usage": {"input_tokens": 3, '
                '"output_tokens": 1}}'
            ),
            "bad_answer",
        ),
    ],
)
async def test_odd_bodies_fall_back_and_never_raise(
    fake_api: FakeMessagesAPI, raw: Raw, reason: str
) -> None:
    fake_api.default = raw
    judge = LLMJudge(client=client_for(fake_api), max_retries=0)
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng(6))
    assert judgment.fallback_reason is not None
    assert judgment.action == rule_judgment(6).action
    assert judge.fallbacks == {reason: 1}


async def test_timeout_falls_back(fake_api: FakeMessagesAPI) -> None:
    fake_api.delay_s = 5.0
    judge = LLMJudge(client=client_for(fake_api), timeout_s=0.2, max_retries=0)
    started = time.perf_counter()
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng(2))

    assert time.perf_counter() - started < 2.0
    assert judgment.fallback_reason == "timeout"
    assert judgment.action == rule_judgment(2).action
    assert judge.fallbacks == {"timeout": 1}


async def test_judge_timeout_overrides_the_clients(fake_api: FakeMessagesAPI) -> None:
    fake_api.delay_s = 5.0
    client = client_for(fake_api, timeout=60.0, max_retries=5)
    judge = LLMJudge(client=client, timeout_s=0.1, max_retries=1)
    started = time.perf_counter()
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng())
    assert judgment.fallback_reason == "timeout"
    assert len(fake_api.bodies) == 2  # the judge's max_retries, not the client's
    assert time.perf_counter() - started < 3.0


async def test_connection_refused_is_connection_error(no_proxy: None) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}", api_key="test")
    judge = LLMJudge(client=client, max_retries=0, timeout_s=2.0)
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng())
    assert judgment.fallback_reason == "connection_error"
    assert judge.fallbacks == {"connection_error": 1}


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_PROFILE",
        "ANTHROPIC_IDENTITY_TOKEN",
        "ANTHROPIC_IDENTITY_TOKEN_FILE",
        "ANTHROPIC_FEDERATION_RULE_ID",
        "ANTHROPIC_ORGANIZATION_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ANTHROPIC_CONFIG_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no profile on disk


async def test_no_api_key_falls_back_without_a_request(
    fake_api: FakeMessagesAPI, no_credentials: None
) -> None:
    judge = LLMJudge(client=anthropic.AsyncAnthropic(base_url=fake_api.base_url))
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng(4))

    assert fake_api.bodies == []
    assert judgment.fallback_reason == "no_api_key"
    assert judgment == replace(rule_judgment(4), fallback_reason="no_api_key")
    assert judge.fallbacks == {"no_api_key": 1}
    assert judge.calls == 0


async def test_default_client_without_key_is_no_api_key(no_credentials: None) -> None:
    judge = LLMJudge()
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng())
    assert judgment.fallback_reason == "no_api_key"
    await judge.aclose()


async def test_concurrency_never_exceeds_the_limit(fake_api: FakeMessagesAPI) -> None:
    fake_api.delay_s = 0.05
    judge = LLMJudge(client=client_for(fake_api), max_concurrency=3, max_retries=0)
    judgments = await asyncio.gather(
        *(judge.judge(PERSONA, MOMENT, TASK, rng(i)) for i in range(24))
    )
    assert len(fake_api.bodies) == 24
    assert fake_api.max_in_flight == 3  # the limit was reached, never exceeded
    assert all(j.fallback_reason is None for j in judgments)
    assert judge.calls == 24


async def test_fallbacks_are_counted_by_reason(fake_api: FakeMessagesAPI) -> None:
    fake_api.script = [Answer("maybe"), Status(500), Answer("done"), Answer("nope")]
    judge = LLMJudge(client=client_for(fake_api), max_retries=0)
    reasons = [(await judge.judge(PERSONA, MOMENT, TASK, rng(i))).fallback_reason for i in range(4)]
    assert reasons == ["bad_answer", "api_error", None, "bad_answer"]
    assert judge.fallbacks == {"bad_answer": 2, "api_error": 1}
    assert judge.usage()["fallbacks"] == 3
    counters = judge.usage_counters()  # the run's cost record: fallbacks by reason
    assert counters["fallbacks"] == {"bad_answer": 2, "api_error": 1}
    assert counters["calls"] == judge.calls


def test_constructor_rejects_bad_settings() -> None:
    client = anthropic.AsyncAnthropic(api_key="test")
    with pytest.raises(ValueError, match="max_concurrency"):
        LLMJudge(client=client, max_concurrency=0)
    with pytest.raises(ValueError, match="timeout_s"):
        LLMJudge(client=client, timeout_s=0)
    with pytest.raises(ValueError, match="max_retries"):
        LLMJudge(client=client, max_retries=-1)


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("done", "done"),
        ("DONE", "done"),
        ("  snooze\n", "snooze"),
        ("Dismiss.", "dismiss"),
        ('"done"', "done"),
        ("**snooze**", "snooze"),
        ("dismiss!", "dismiss"),
        ("\u201cdone\u201d", "done"),
        ("maybe", None),
        ("", None),
        ("done.\nsnooze", None),
        ("done now", None),
        ("helpful", None),
        ("snoozed", None),
        ("do ne", None),
    ],
)
def test_parse_answer(text: str, action: str | None) -> None:
    assert parse_answer(text) == action


@given(st.text(max_size=30))
def test_parse_answer_accepts_only_the_three_words(text: str) -> None:
    action = parse_answer(text)
    if action is not None:
        assert action in ("done", "snooze", "dismiss")
        assert text.lower().count(action) == 1


async def test_broken_credentials_profile_means_rule_judge_only(
    no_credentials: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path / "nowhere"))  # SDK raises
    judge = LLMJudge()
    judgment = await judge.judge(PERSONA, MOMENT, TASK, rng())
    assert judgment.fallback_reason == "no_api_key"
    await judge.aclose()
