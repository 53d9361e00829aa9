"""The LLM judge: Claude plays the persona and answers done, snooze or dismiss.

Request: ``max_tokens=10``; the system prompt is two text blocks, the shared instructions
and then the persona (name and description), the latter marked
``cache_control: {"type": "ephemeral"}`` so that the prefix instructions + persona is
cached across the many tips judged for one persona. Note: the prefix is a few hundred
tokens, below the minimum cacheable length of small models (4,096 tokens for Claude
Haiku 4.5), so the API will not actually cache it and the cache counters stay at zero;
the structure is right for longer persona texts and costs nothing otherwise.
The user message holds the tip and the moment. Temperature is the API default (1.0): a
persona's reaction is a distribution, not one fixed answer.

The answer must be exactly one of the three words, after trimming whitespace and
punctuation and ignoring case (``"Done."`` is done, ``"I'd snooze"`` is not an answer).
The dwell for ``done`` is drawn as in the rule judge, from the band of the rule judge's
engagement for this (persona, moment, task); snooze and dismiss dwells from their ranges.
That takes the first draw of ``rng``. ``expected_reward`` is None: the LLM's own
expectation is unknown.

Anything that goes wrong falls back to ``fallback`` (a :class:`RuleJudge`) with the rng
untouched, so the fallback judgment is exactly the rule judgment for those draws; it keeps
the rule judge's ``expected_reward`` and has ``fallback_reason`` set. Reasons, counted in
``fallbacks``: ``no_api_key`` (the client has no credentials, or none could be built from
the environment: no request is sent), ``timeout``, ``rate_limited`` (429 after the SDK's
retries), ``api_error`` (any other status, 5xx after retries, a body that is not a
message, or another SDK error), ``connection_error``, ``bad_answer``,
and ``unexpected_error`` (any other exception: logged, never raised).
A ``strict`` judge (``simulate --fallback none``, the default) never falls back: it raises
:class:`LLMJudgeError` with the reason and the API's address instead, and
:meth:`LLMJudge.usage_problem` refuses a run without credentials before it starts.

Timeouts and retries are the SDK's own (``timeout_s`` per attempt, ``max_retries``
retries with its backoff, honouring ``retry-after``); they are applied to the given client
with ``with_options``. At most ``max_concurrency`` requests are in flight at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import string
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bandit.base import Moment, Task
from judges.base import ACTIONS, Judge, Judgment
from judges.personas import Persona
from judges.rule import RuleJudge, draw_dwell, engagement, reward_of

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import MessageParam, TextBlockParam, Usage

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "FALLBACK_REASONS",
    "INSTRUCTIONS",
    "MAX_TOKENS",
    "LLMJudge",
    "LLMJudgeError",
    "parse_answer",
    "system_blocks",
    "user_message",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-haiku-4-5-20251001"
DEFAULT_BASE_URL = "https://api.anthropic.com"  # the SDK's, unless ANTHROPIC_BASE_URL is set
MAX_TOKENS = 10
FALLBACK_REASONS: tuple[str, ...] = (
    "no_api_key",
    "timeout",
    "rate_limited",
    "api_error",
    "connection_error",
    "bad_answer",
    "unexpected_error",
)

INSTRUCTIONS = """\
You simulate how one user of a to-do app reacts to a reminder tip about one of their \
tasks. When the tip appears, the user does exactly one of three things:
- done: they act on the task now and complete it;
- snooze: they postpone the reminder to later;
- dismiss: they close the tip without acting on it.
Stay in character as the persona described next. Take into account the task's priority \
(1 = lowest, 4 = most urgent), whether it is overdue, its age in days, and the user's \
local time and weekday. Reply with exactly one lowercase word: done, snooze or dismiss. \
No other text."""

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_STRIP = string.whitespace + string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb"


def system_blocks(persona: Persona) -> list[TextBlockParam]:
    """Shared instructions, then the persona block carrying the cache breakpoint.

    >>> blocks = system_blocks(Persona("p", "Likes mornings.", 0.0, 0.5, True, False))
    >>> blocks[1]["cache_control"], "Likes mornings." in blocks[1]["text"]
    ({'type': 'ephemeral'}, True)
    """
    return [
        {"type": "text", "text": INSTRUCTIONS},
        {
            "type": "text",
            "text": f"The persona: {persona.name}.\n{persona.description}",
            "cache_control": {"type": "ephemeral"},
        },
    ]


def user_message(moment: Moment, task: Task) -> str:
    """The tip and the moment, in words.

    >>> print(user_message(Moment(8, 1), Task("t", 4, True, 3.25)))
    Tip: a task of priority 4 (of 4), overdue, 3.2 days old.
    Moment: Tuesday, 08:00 local time.
    How does the user react: done, snooze or dismiss?
    """
    overdue = "overdue" if task.is_overdue else "not overdue"
    return (
        f"Tip: a task of priority {task.priority} (of 4), {overdue}, "
        f"{task.task_age_days:.1f} days old.\n"
        f"Moment: {WEEKDAYS[moment.day_of_week]}, {moment.hour_of_day:02d}:00 local time.\n"
        "How does the user react: done, snooze or dismiss?"
    )


def parse_answer(text: str) -> str | None:
    """The action named by the answer, or None when it is not exactly one of the three.

    >>> [parse_answer(t) for t in ("done", " Snooze.\\n", "**DISMISS**", "maybe", "done, now")]
    ['done', 'snooze', 'dismiss', None, None]
    """
    word = text.strip(_STRIP).lower()
    return word if word in ACTIONS else None


def _sdk() -> ModuleType:
    """The Anthropic SDK, imported on first use: it takes seconds to import, and a
    simulator or CLI that does not judge with the LLM should not pay for it."""
    import anthropic  # noqa: PLC0415 - heavy third-party import, see the docstring

    return anthropic


def _detail(err: BaseException) -> str:
    """An SDK error in a few words: its message, else the cause's (a refused connection)."""
    cause = err.__cause__
    text = str(err)
    if cause is not None and text in ("Connection error.", "Request timed out."):
        text = f"{text.rstrip('.')}: {cause}"
    return " ".join(text.split())[:200]


def _has_credentials(client: anthropic.AsyncAnthropic) -> bool:
    return any(
        getattr(client, attr, None) is not None for attr in ("api_key", "auth_token", "credentials")
    )


class LLMJudgeError(RuntimeError):
    """A strict LLM judge could not judge: ``reason`` is one of :data:`FALLBACK_REASONS`."""

    def __init__(self, reason: str, base_url: str, detail: str = "") -> None:
        self.reason = reason
        self.base_url = base_url
        self.detail = detail
        super().__init__(f"{reason} at {base_url}" + (f": {detail}" if detail else ""))


class LLMJudge(Judge):
    """Asks Claude; falls back to the rule judge on any failure (counted by reason)."""

    name: ClassVar[str] = "llm"

    def __init__(
        self,
        *,
        client: anthropic.AsyncAnthropic | None = None,
        model: str = DEFAULT_MODEL,
        max_concurrency: int = 8,
        timeout_s: float = 20.0,
        max_retries: int = 3,
        fallback: RuleJudge | None = None,
        strict: bool = False,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._owns_client = client is None
        base = client
        if base is None:
            sdk = _sdk()
            try:  # credentials and ANTHROPIC_BASE_URL from the environment
                base = sdk.AsyncAnthropic()
            except sdk.AnthropicError as err:  # e.g. a broken credentials profile
                log.warning("LLM judge: no usable Anthropic client (%s); rule judge only", err)
        self._has_credentials = base is not None and _has_credentials(base)
        self._client = (
            base.with_options(timeout=timeout_s, max_retries=max_retries)
            if base is not None
            else None
        )
        self.model = model
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.fallback = fallback if fallback is not None else RuleJudge()
        self.strict = strict  # raise LLMJudgeError instead of falling back
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self.calls = 0  # requests handed to the SDK (its retries are not counted apart)
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.fallbacks: dict[str, int] = {}

    @property
    def has_credentials(self) -> bool:
        """The client has an API key (or a token or credentials) to send."""
        return self._client is not None and self._has_credentials

    @property
    def base_url(self) -> str:
        """Where requests go (``ANTHROPIC_BASE_URL``, else the API's own address)."""
        url = getattr(self._client, "base_url", None)
        return str(url).rstrip("/") if url else DEFAULT_BASE_URL

    def usage_problem(self) -> str | None:
        if self.strict and not self.has_credentials:
            return (
                "--judge llm needs ANTHROPIC_API_KEY in the environment (none found, so no "
                "request could be sent); set it, or add --fallback rule to judge with the "
                "rule judge instead"
            )
        return None

    def usage(self) -> dict[str, int]:
        """Counters for the run's cost record (tokens, calls, fallbacks in total)."""
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "fallbacks": sum(self.fallbacks.values()),
        }

    def usage_counters(self) -> dict[str, Any]:
        """The run's cost record (``sim_runs.llm_*``): tokens, calls, fallbacks by reason."""
        names = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
        counters: dict[str, Any] = {n: int(getattr(self, n)) for n in names}
        counters["calls"] = self.calls
        counters["fallbacks"] = dict(self.fallbacks)
        return counters

    async def aclose(self) -> None:
        """Close the HTTP client if this judge created it."""
        if self._owns_client and self._client is not None:
            await self._client.close()

    def _count_usage(self, usage: Usage | None) -> None:
        if usage is None:
            return
        self.input_tokens += usage.input_tokens or 0
        self.output_tokens += usage.output_tokens or 0
        self.cache_read_tokens += usage.cache_read_input_tokens or 0
        self.cache_write_tokens += usage.cache_creation_input_tokens or 0

    async def _fall_back(
        self,
        reason: str,
        persona: Persona,
        moment: Moment,
        task: Task,
        rng: np.random.Generator,
        *,
        detail: str = "",
    ) -> Judgment:
        if self.strict:
            raise LLMJudgeError(reason, self.base_url, detail)
        self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1
        judgment = await self.fallback.judge(persona, moment, task, rng)
        return dataclasses.replace(judgment, fallback_reason=reason)

    async def _ask(
        self, client: anthropic.AsyncAnthropic, persona: Persona, moment: Moment, task: Task
    ) -> tuple[str | None, str, str]:
        """(action, "", "") on an answer; (None, reason, detail) on a failure."""
        sdk = _sdk()
        try:
            async with self._semaphore:
                self.calls += 1
                response = await client.messages.create(
                    model=self.model,
                    max_tokens=MAX_TOKENS,
                    system=system_blocks(persona),
                    messages=[self._message(moment, task)],
                )
            if not isinstance(response, sdk.types.Message):  # e.g. an HTML page from a proxy
                return None, "api_error", "the answer is not a message"
            self._count_usage(response.usage)
            text = "".join(b.text for b in response.content if isinstance(b, sdk.types.TextBlock))
        except sdk.APITimeoutError as err:  # before APIConnectionError, its base class
            return None, "timeout", _detail(err)
        except sdk.APIConnectionError as err:
            return None, "connection_error", _detail(err)
        except sdk.RateLimitError as err:
            return None, "rate_limited", _detail(err)
        except sdk.CredentialsError as err:
            return None, "no_api_key", _detail(err)
        except sdk.AnthropicError as err:
            return None, "api_error", _detail(err)
        except Exception as err:
            if not self.strict:
                log.warning("LLM judge: unexpected error, using the rule judge", exc_info=True)
            return None, "unexpected_error", _detail(err)
        action = parse_answer(text)
        if action is None:
            return None, "bad_answer", f"answered {text[:40]!r}"
        return action, "", ""

    @staticmethod
    def _message(moment: Moment, task: Task) -> MessageParam:
        return {"role": "user", "content": user_message(moment, task)}

    async def judge(
        self, persona: Persona, moment: Moment, task: Task, rng: np.random.Generator
    ) -> Judgment:
        if self._client is None or not self._has_credentials:
            return await self._fall_back("no_api_key", persona, moment, task, rng)
        action, reason, detail = await self._ask(self._client, persona, moment, task)
        if action is None:
            return await self._fall_back(reason, persona, moment, task, rng, detail=detail)
        dwell_ms = draw_dwell(action, engagement(persona, moment, task), rng)
        return Judgment(
            action=action,
            dwell_ms=dwell_ms,
            reward=reward_of(action, dwell_ms),
            expected_reward=None,
        )
