"""The ``tipstream`` command line: one sub-command per job, ``--help`` on each.

Exit codes: 0 ok, 2 bad usage or bad input, 1 failure.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="tipstream",
    help="Learn which tip to show from user feedback, in real time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _mount() -> None:
    # Sub-commands live beside the code they drive; importing them here keeps start-up of
    # one command from paying for the others' imports.
    from streams.cli import worker  # noqa: PLC0415
    from streams.dev import devstack  # noqa: PLC0415

    app.add_typer(devstack.dev_app, name="dev")
    worker.register(app)
    __import__("streams.cli.sim", fromlist=["register"]).register(app)
    __import__("streams.cli.evaluate", fromlist=["register"]).register(app)
    __import__("streams.cli.compare", fromlist=["register"]).register(app)


def main() -> None:
    _mount()
    app()


if __name__ == "__main__":
    main()
