"""The console's aiohttp application: its database pool, launcher, templates and routes.

:func:`create_app` builds it (tests drive it with aiohttp's test client); :func:`serve`
runs it until SIGINT/SIGTERM, then stops the runs it started (each is marked
``cancelled``) and closes the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import jinja2
from aiohttp import web

from streams.console.launcher import Launcher
from streams.console.views import JINJA, LAUNCHER, POOL, SETTINGS, TERMINAL, routes
from streams.settings import Settings
from streams.sim.store import connect_pool

__all__ = ["STATIC", "TEMPLATES", "create_app", "serve", "template_environment"]

_HERE = Path(__file__).resolve().parent
TEMPLATES = _HERE / "templates"
STATIC = _HERE / "static"


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str):
        return value.replace("T", " ")[:19]
    return "–"


def _number(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def template_environment() -> jinja2.Environment:
    """Templates from the package (``templates/``), HTML autoescaped, undefined names errors."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _when
    environment.filters["number"] = _number
    environment.globals["terminal_statuses"] = sorted(TERMINAL)
    return environment


def create_app(settings: Settings, *, pool: asyncpg.Pool | None = None) -> web.Application:
    """The application; without ``pool`` it opens its own on start-up and closes it after."""
    app = web.Application()
    app[SETTINGS] = settings
    app[JINJA] = template_environment()
    app[LAUNCHER] = Launcher(settings)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        own = pool is None
        app[POOL] = pool if pool is not None else await connect_pool(settings.database_url)
        try:
            yield
        finally:
            await app[LAUNCHER].close()
            if own:
                await app[POOL].close()

    app.cleanup_ctx.append(resources)
    app.add_routes(routes)
    app.router.add_static("/static", STATIC, name="static")
    return app


async def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM. The database is reached first: an unreachable one
    raises ``DatabaseUnavailableError`` before anything listens."""
    pool = await connect_pool(settings.database_url)
    runner = web.AppRunner(create_app(settings, pool=pool), access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        print(f"console: http://{host if ':' not in host else f'[{host}]'}:{port}/", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        await pool.close()
