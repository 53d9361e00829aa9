"""A local fake of the Messages API (POST /v1/messages) on 127.0.0.1, for the LLM judge.

Each request takes the next scripted step (or the default answer): a text answer with
realistic Messages API JSON, or an error status with headers. The fake records bodies
and headers and counts requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web


@dataclass(slots=True)
class Answer:
    text: str
    usage: dict[str, Any] = field(
        default_factory=lambda: {
            "input_tokens": 180,
            "output_tokens": 2,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    )


@dataclass(slots=True)
class Status:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Raw:
    """A response body sent as is (e.g. not the Messages API's JSON)."""

    body: str
    content_type: str = "application/json"


@dataclass(slots=True)
class FakeMessagesAPI:
    port: int = 0
    default: Answer | Status | Raw = field(default_factory=lambda: Answer("done"))
    script: list[Answer | Status | Raw] = field(default_factory=list)
    delay_s: float = 0.0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        step = self.script.pop(0) if self.script else self.default
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                # Sleeps, but wakes at teardown so that the server can stop at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), self.delay_s)
        finally:
            self.in_flight -= 1
        if isinstance(step, Raw):
            return web.Response(text=step.body, content_type=step.content_type)
        if isinstance(step, Status):
            error_type = {429: "rate_limit_error", 529: "overloaded_error"}.get(
                step.status, "api_error" if step.status >= 500 else "invalid_request_error"
            )
            return web.json_response(
                {"type": "error", "error": {"type": error_type, "message": "fake error"}},
                status=step.status,
                headers=step.headers,
            )
        body = self.bodies[-1]
        return web.json_response(
            {
                "id": f"msg_fake{next(self._ids):06d}",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": step.text}] if step.text else [],
                "model": body.get("model", "unknown"),
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": step.usage,
            },
            headers={"request-id": f"req_fake{len(self.bodies)}"},
        )


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the SDK off any proxy: the fake is on loopback."""
    for scheme in ("HTTP", "HTTPS", "ALL"):
        for name in (f"{scheme}_PROXY", f"{scheme.lower()}_proxy"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake_api(no_proxy: None) -> AsyncIterator[FakeMessagesAPI]:
    fake = FakeMessagesAPI()
    app = web.Application()
    app.router.add_post("/v1/messages", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = runner.addresses[0][1]
    try:
        yield fake
    finally:
        fake.release.set()
        await runner.cleanup()
