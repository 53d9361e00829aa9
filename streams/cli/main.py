"""The ``tipstream`` command line: one sub-command per job, ``--help`` on each.

Exit codes: 0 ok, 2 bad usage or bad input, 1 failure.
"""

from __future__ import annotations

import typer

from streams.cli import compare, evaluate, sim, worker
from streams.dev import devstack

__all__ = ["app", "main"]

app = typer.Typer(
    name="tipstream",
    help="Learn which tip to show from user feedback, in real time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# Every command, mounted in one place. Each module keeps its heavy imports (faust for the
# worker, matplotlib for reports, anthropic for the LLM judge) inside the command.
app.add_typer(devstack.dev_app, name="dev")
worker.register(app)
sim.register(app)
evaluate.register(app)
compare.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
