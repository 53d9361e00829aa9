"""The ``tipstream`` command line: one sub-command per job, ``--help`` on each.

Exit codes: 0 ok, 2 bad usage or bad input (a bad ``TIPSTREAM_*`` value included), 1 failure.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer
from pydantic import ValidationError

from streams.cli import compare, console, evaluate, settings_table, sim, worker
from streams.cli.failures import settings_error_exit
from streams.dev import devstack

__all__ = ["app", "main", "package_version"]

app = typer.Typer(
    name="tipstream",
    help="Learn which tip to show from user feedback, in real time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def package_version() -> str:
    """The installed distribution's version (package metadata), or ``unknown``."""
    try:
        return version("tipstream")
    except PackageNotFoundError:
        return "unknown (not installed: run `uv sync` or `uv tool install .`)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tipstream {package_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Learn which tip to show from user feedback, in real time."""


# Every command, mounted in one place. Each module keeps its heavy imports (faust for the
# worker, matplotlib for reports, anthropic for the LLM judge) inside the command.
app.add_typer(devstack.dev_app, name="dev")
worker.register(app)
sim.register(app)
evaluate.register(app)
compare.register(app)
console.register(app)
settings_table.register(app)


def main() -> None:
    """Run the command line. A bad setting read anywhere below a command (each reads its
    settings through ``settings_or_exit`` first) is still exit 2 naming the variable."""
    try:
        app()
    except ValidationError as err:
        if err.title != "Settings":
            raise
        exit_ = settings_error_exit(err)
        raise SystemExit(exit_.exit_code) from None


if __name__ == "__main__":
    main()
