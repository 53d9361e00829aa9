"""The worker's HTTP API: ``/score/egreedy``, ``/stats``, ``/healthz``, ``/metrics``, admin.

The views sit on faust's web server (aiohttp). Paths and bodies are the contract in
``docs/contracts.md`` ("HTTP"); ``/score/egreedy`` keeps its historical path because the app
calls it, and it serves the configured policy (``TIPSTREAM_POLICY``), not only egreedy-v1.
A request for a user whose partition another worker owns is forwarded to that worker.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import orjson
from faust.web import Request, Response, View
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.events import rfc3339
from streams.worker.state import user_key

if TYPE_CHECKING:
    import faust

    from streams.worker.app import Worker

__all__ = ["ScoreRequest", "mount_views"]


class _Features(BaseModel):
    model_config = ConfigDict(extra="ignore")
    priority: int = Field(ge=1, le=4)
    is_overdue: bool
    task_age_days: float = Field(ge=0, allow_inf_nan=False)


class _Candidate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tip_id: str = Field(min_length=1, max_length=128)
    features: _Features


class _Context(BaseModel):
    model_config = ConfigDict(extra="ignore")
    hour_of_day: int = Field(ge=0, le=23)
    day_of_week: int = Field(ge=0, le=6)


class ScoreRequest(BaseModel):
    """``POST /score/egreedy`` (snake_case, as the former ML service)."""

    model_config = ConfigDict(extra="ignore")
    user_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    candidates: list[_Candidate] = Field(min_length=1, max_length=100)
    context: _Context
    run_id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$"
    )
    seed: int | None = None
    min_updates: int | None = Field(default=None, ge=0)
    # The run's feedbacks learned from, over all its users: the simulator's barrier (needs
    # run_id; counts the partitions of the worker that answers).
    min_run_updates: int | None = Field(default=None, ge=0)
    policy: str | None = None


class _WorkerView(View):
    worker: Worker

    def reply(self, body: Any, status: int = 200) -> Response:
        return self.bytes(orjson.dumps(body), content_type="application/json", status=status)

    def fail(self, status: int, message: str) -> Response:
        return self.reply({"error": message}, status)

    async def routed(
        self, request: Request, user_id: str, body: bytes | None
    ) -> tuple[str, Response] | None:
        """``("forwarded", the owning worker's answer)``, ``("not_ready", a 503)`` while no
        worker owns the user's partition, or None when this worker answers itself (it owns
        the partition, or the request was forwarded here already)."""
        if "x-tipstream-forwarded" in request.headers:
            return None
        try:
            owner = self.worker.owner_url(user_id)
        except LookupError as exc:
            return "not_ready", self.fail(503, str(exc))
        if owner is None:
            return None
        status, payload = await self.worker.forward(request, owner, body)
        return "forwarded", self.bytes(payload, content_type="application/json", status=status)


class _ScoreView(_WorkerView):
    async def post(self, request: Request) -> Response:
        """Answer, counting the outcome and timing the whole request (a forward and a
        ``min_updates`` wait included: it is what the caller waits)."""
        metrics = self.worker.metrics
        started = time.perf_counter()
        outcome = "error"  # an exception escapes: faust answers 500
        try:
            outcome, response = await self._answer(request)
            return response
        finally:
            metrics.score_requests.labels(outcome).inc()
            metrics.score_latency.labels(outcome).observe(time.perf_counter() - started)

    async def _answer(self, request: Request) -> tuple[str, Response]:
        body = await self.read_request_content(request)
        try:
            score_request = ScoreRequest.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return "bad_request", self.fail(400, f"{where}: {first['msg']}")
        if not self.worker.is_ready():
            return "not_ready", self.fail(503, "worker is starting or rebalancing; retry shortly")
        routed = await self.routed(request, score_request.user_id, body)
        if routed is not None:
            return routed
        key = user_key(score_request.user_id, score_request.run_id)
        wanted, run_wanted = score_request.min_updates or 0, score_request.min_run_updates or 0
        if (wanted or run_wanted) and not await self.worker.wait_for_updates(
            key, wanted, score_request.run_id, run_wanted
        ):
            return "timeout", self.fail(
                504,
                f"state did not reach {wanted} updates of the user"
                + (f" and {run_wanted} of run {score_request.run_id}" if run_wanted else ""),
            )
        try:
            answer = self.worker.score(score_request)
        except ValueError as exc:
            return "bad_request", self.fail(400, str(exc))
        return "ok", self.reply(answer)


class _StatsView(_WorkerView):
    async def get(self, request: Request, user_id: str) -> Response:
        run_id = request.query.get("run_id") or None
        routed = await self.routed(request, user_id, None)
        if routed is not None:
            return routed[1]
        record = self.worker.record(user_key(user_id, run_id))
        if record is None:
            return self.fail(404, f"no state for user {user_id!r}")
        pulls = record.pulls
        cumulative = record.reward_milli_sum / 1000
        blob = record.policy_blobs.get(self.worker.serving.name)
        return self.reply(
            {
                "pulls": pulls,
                "cumulative_reward": cumulative,
                "estimated_mean": cumulative / pulls if pulls else None,
                "last_updated": rfc3339(record.last_updated_ms) if record.last_updated_ms else None,
                "state_sha256": hashlib.sha256(blob).hexdigest() if blob is not None else None,
            }
        )


class _HealthView(_WorkerView):
    async def get(self, request: Request) -> Response:
        ready = self.worker.is_ready()
        database = self.worker.sink.health()
        reason = "starting or rebalancing" if not ready else database
        return self.reply(
            {
                "status": "ok" if reason is None else "starting" if not ready else "unhealthy",
                "reason": reason,
                "database": database or "ok",
                "partitions": sorted(self.worker.active_partitions()),
                "policy": self.worker.serving.name,
                "shadow_policies": [p.name for p in self.worker.policies[1:]],
                # Input offsets faust skipped that are waiting to be read again (ackgate).
                "holes": {f"{t}[{p}]": o for (t, p), o in self.worker.ack_gate.holes().items()},
                # Input events not processed yet; a large figure means a backlog to read.
                "lag": {f"{t}[{p}]": n for (t, p), n in sorted(self.worker.input_lag.items())},
            },
            200 if reason is None else 503,
        )


class _MetricsView(_WorkerView):
    async def get(self, request: Request) -> Response:
        # aiohttp refuses a charset inside content_type; the full type goes in as a header.
        return self.bytes(
            self.worker.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )


class _ResetView(_WorkerView):
    """Forget a production user's learned model (the join and its guard are kept)."""

    async def post(self, request: Request, user_id: str) -> Response:
        token = self.worker.settings.admin_token.get_secret_value()
        if request.headers.get("authorization") != f"Bearer {token}":
            return self.fail(401, "a bearer token (TIPSTREAM_ADMIN_TOKEN) is required")
        routed = await self.routed(request, user_id, b"")
        if routed is not None:
            return routed[1]
        record = self.worker.record(user_id)
        if record is None:
            return self.fail(404, f"no state for user {user_id!r}")
        record.policy_blobs.clear()
        record.pulls = 0
        record.reward_milli_sum = 0
        self.worker.table[user_id] = record.encode()
        await self.worker.table.changelog.send()
        return self.reply({"user_id": user_id, "reset": True})


def mount_views(app: faust.App, worker: Worker) -> None:
    """Register every view on the faust app, each bound to this worker."""
    for path, view in (
        ("/score/egreedy", _ScoreView),
        ("/stats/egreedy/{user_id}", _StatsView),
        ("/healthz", _HealthView),
        ("/metrics", _MetricsView),
        ("/admin/users/{user_id}/reset", _ResetView),
    ):
        view_class = type(view.__name__, (view,), {"worker": worker})
        app.page(path)(view_class)
