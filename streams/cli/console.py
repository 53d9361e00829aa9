"""``tipstream console``: the web page over the simulation runs (``streams.console``).

Exit codes: 0 stopped by SIGINT/SIGTERM, 2 bad usage (a bad setting; a non-loopback
``--host`` with the public default admin token), 1 failure (PostgreSQL unreachable, the
port taken).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from streams.cli.failures import fail, failure_line, settings_or_exit
from streams.console.app import serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "console_command", "register"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6070


def console_command(
    host: Annotated[
        str,
        typer.Option(
            help="address to listen on; anything but loopback needs TIPSTREAM_ADMIN_TOKEN "
            "set to a secret of your own"
        ),
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=1, max=65_535, help="port to listen on")] = DEFAULT_PORT,
) -> None:
    """Serve the simulation runs page: runs with live status, a page per run (reward curve,
    per-persona and per-action tables), paired comparisons, and a form that starts a run."""
    settings = settings_or_exit()
    problem = settings.admin_token_problem(host, where="--host")
    if problem:
        raise fail(problem, 2)
    try:
        asyncio.run(serve(settings, host, port))
    except KeyboardInterrupt:
        pass
    except OSError as err:  # the address is taken or cannot be bound
        if not isinstance(err, ConnectionError):
            raise fail(f"cannot listen on {host}:{port}: {err.strerror or err}", 1) from None
        raise fail(failure_line(err, settings), 1) from None
    except Exception as err:  # one line that names the database and its address
        raise fail(failure_line(err, settings), 1) from None


def register(app: typer.Typer) -> None:
    app.command("console")(console_command)
