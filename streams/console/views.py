"""The console's routes (docs/contracts.md lists them): pages rendered with jinja2, JSON for
the script that polls, and the form that starts a run.

Starting a run needs the admin token (``TIPSTREAM_ADMIN_TOKEN``): ``Authorization: Bearer
<token>`` or the form's ``token`` field; a missing or wrong token is 403.
"""

from __future__ import annotations

import hmac
from typing import Any

import asyncpg
import jinja2
import orjson
from aiohttp import web
from markupsafe import Markup

from judges.personas import PERSONA_SETS
from streams.analysis.summary import IncomparableRunsError, json_ready
from streams.console import data
from streams.console.launcher import (
    FORM_JUDGES,
    FORM_POLICIES,
    VIAS,
    Launcher,
    LaunchFormError,
    parse_launch_form,
)
from streams.console.svg import reward_curve_svg
from streams.settings import Settings
from streams.sim.store import fetch_run

__all__ = ["JINJA", "LAUNCHER", "POOL", "SETTINGS", "TERMINAL", "routes"]

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
LAUNCHER = web.AppKey("launcher", Launcher)
JINJA = web.AppKey("jinja", jinja2.Environment)

TERMINAL = frozenset({"finished", "failed", "cancelled"})
routes = web.RouteTableDef()


def _json(document: Any, status: int = 200) -> web.Response:
    body = orjson.dumps(json_ready(document), option=orjson.OPT_SERIALIZE_NUMPY)
    return web.Response(body=body, status=status, content_type="application/json")


def _page(request: web.Request, template: str, code: int = 200, **context: Any) -> web.Response:
    html = request.app[JINJA].get_template(template).render(**context)
    return web.Response(text=html, status=code, content_type="text/html")


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "") or (
        request.content_type == "application/json"
    )


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if _wants_json(request) or request.path.startswith("/api/"):
        return _json({"error": message}, status)
    return _page(request, "error.html", status, status=status, message=message)


def _launch_status(request: web.Request, run_id: str) -> dict[str, Any] | None:
    """A run the console started that has no ``sim_runs`` row (yet, or ever)."""
    launch = request.app[LAUNCHER].get(run_id)
    if launch is None:
        return None
    asked = launch.request
    if launch.state == "running":
        status, error = "starting", None
    else:
        status = "failed"
        error = launch.stderr.strip() or f"tipstream simulate exited {launch.returncode}"
    return {
        "run_id": run_id,
        "status": status,
        "policy": asked.policy,
        "judge": asked.judge,
        "via": asked.via,
        "seed": asked.seed,
        "users": asked.users,
        "rounds": asked.rounds,
        "personas": asked.personas,
        "events": 0,
        "expected_events": None,
        "progress": None,
        "mean_reward": None,
        "created_at": None,
        "finished_at": None,
        "error": error,
    }


def _with_launch(request: web.Request, status: dict[str, Any]) -> dict[str, Any]:
    launch = request.app[LAUNCHER].get(status["run_id"])
    status["launch"] = launch.as_json() if launch is not None else None
    return status


async def _statuses(request: web.Request) -> list[dict[str, Any]]:
    runs = await data.list_runs(request.app[POOL])
    known = {r["run_id"] for r in runs}
    pending = [
        s
        for run_id in reversed(request.app[LAUNCHER].launches)
        if run_id not in known and (s := _launch_status(request, run_id)) is not None
    ]
    return [_with_launch(request, s) for s in [*pending, *runs]]


async def _status(request: web.Request, run_id: str) -> dict[str, Any] | None:
    row = await fetch_run(request.app[POOL], run_id)
    status = data.run_status(row) if row is not None else _launch_status(request, run_id)
    return _with_launch(request, status) if status is not None else None


def _curve(report: data.RunReport) -> str:
    """A run's curve, its lines named by its policy (the page names the run)."""
    label = (report.run.get("config") or {}).get("policy") or str(report.run["run_id"])
    return reward_curve_svg({str(label): report.curve})


@routes.get("/", name="runs")
async def runs_page(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return _page(
        request,
        "runs.html",
        runs=await _statuses(request),
        started=request.query.get("started"),
        policies=FORM_POLICIES,
        default_policy=settings.policy,
        persona_sets=tuple(PERSONA_SETS),
        judges=FORM_JUDGES,
        vias=VIAS,
    )


@routes.get("/api/runs")
async def runs_json(request: web.Request) -> web.Response:
    return _json({"runs": await _statuses(request)})


async def _run_and_report(request: web.Request) -> tuple[str, dict[str, Any] | None, Any]:
    """The run named in the path: its id, its status (None if unknown) and its report."""
    run_id = request.match_info["run_id"]
    status = await _status(request, run_id)
    report = await data.load_report(request.app[POOL], run_id) if status is not None else None
    return run_id, status, report


@routes.get("/api/runs/{run_id}")
async def run_json(request: web.Request) -> web.Response:
    run_id, status, report = await _run_and_report(request)
    if status is None:
        return _error(request, 404, f"no run {run_id!r} in sim_runs")
    document: dict[str, Any] = {"run": status}
    if report is not None:
        document |= {
            "summary": report.summary,
            "personas": report.personas,
            "actions": report.actions,
            "curve": report.curve,
        }
    return _json(document)


@routes.get("/runs/{run_id}", name="run")
async def run_page(request: web.Request) -> web.Response:
    run_id, status, report = await _run_and_report(request)
    if status is None:
        return _error(request, 404, f"no run {run_id!r} in sim_runs")
    others = [r for r in await data.list_runs(request.app[POOL]) if r["run_id"] != run_id]
    return _page(
        request,
        "run.html",
        run=status,
        terminal=status["status"] in TERMINAL,
        report=report,
        items=data.summary_items(report) if report is not None else [],
        curve=Markup(_curve(report)) if report is not None else None,  # noqa: S704 - escaped in svg.py
        personas=data.persona_table(report) if report is not None else None,
        actions=data.action_table(report) if report is not None else None,
        others=others,
    )


@routes.get("/runs/{run_id}/curve.svg")
async def curve_svg(request: web.Request) -> web.Response:
    run_id = request.match_info["run_id"]
    report = await data.load_report(request.app[POOL], run_id)
    if report is None:
        return _error(request, 404, f"no run {run_id!r} in sim_runs")
    return web.Response(text=_curve(report), content_type="image/svg+xml")


@routes.get("/compare", name="compare")
async def compare_page(request: web.Request) -> web.Response:
    run_a, run_b = request.query.get("a", "").strip(), request.query.get("b", "").strip()
    runs = await data.list_runs(request.app[POOL])
    context: dict[str, Any] = {"runs": runs, "a": run_a, "b": run_b, "comparison": None}
    if not (run_a and run_b):
        return _page(request, "compare.html", **context)
    try:
        comparison = await data.load_comparison(request.app[POOL], run_a, run_b)
    except LookupError as err:
        return _page(request, "compare.html", 404, error=str(err.args[0]), **context)
    except IncomparableRunsError as err:
        return _page(request, "compare.html", 400, error=str(err), **context)
    label_a = f"A {comparison.a.run['config'].get('policy')}"
    label_b = f"B {comparison.b.run['config'].get('policy')}"
    svg = reward_curve_svg({label_a: comparison.a.curve, label_b: comparison.b.curve})
    return _page(
        request,
        "compare.html",
        comparison=comparison,
        figures=data.comparison_table(comparison),
        personas_a=data.persona_table(comparison.a),
        personas_b=data.persona_table(comparison.b),
        curve=Markup(svg),  # noqa: S704 - escaped in svg.py
        **{k: v for k, v in context.items() if k != "comparison"},
    )


def _token_ok(request: web.Request, form: dict[str, str]) -> bool:
    expected = request.app[SETTINGS].admin_token.get_secret_value()
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    given = given or form.get("token", "")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


@routes.post("/runs")
async def start_run(request: web.Request) -> web.Response:
    if request.content_type == "application/json":
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(request, 400, "the body is not JSON")
        if not isinstance(body, dict):
            return _error(request, 400, "the body must be a JSON object")
        form = {str(k): str(v) for k, v in body.items()}
    else:
        form = {k: str(v) for k, v in (await request.post()).items()}
    if not _token_ok(request, form):
        return _error(
            request,
            403,
            "starting a run needs the admin token (TIPSTREAM_ADMIN_TOKEN): the form's token "
            "field or `Authorization: Bearer <token>`; the one given is missing or wrong",
        )
    try:
        launch_request = parse_launch_form(form, request.app[SETTINGS])
    except LaunchFormError as err:
        return _error(request, 400, str(err))
    launch = await request.app[LAUNCHER].start(launch_request)
    url = str(request.app.router["run"].url_for(run_id=launch.run_id))
    if _wants_json(request):
        return _json({"run_id": launch.run_id, "url": url, "launch": launch.as_json()}, 202)
    runs_url = request.app.router["runs"].url_for().with_query(started=launch.run_id)
    raise web.HTTPSeeOther(location=runs_url)
