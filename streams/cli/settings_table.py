"""``tipstream settings``: the settings in effect, and the documentation table of every one.

The table in README.md and docs/contracts.md is generated here from the field descriptions
of :class:`~streams.settings.Settings` and :class:`~streams.dev.local.DevSettings`, so a
setting's documentation lives in one place, next to its type and default. After changing a
setting, regenerate both tables:

    uv run tipstream settings --update README.md --update docs/contracts.md

``tests/test_settings_table.py`` fails while a table is out of date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from streams.cli.failures import fail, settings_or_exit
from streams.dev.local import DevSettings
from streams.settings import Settings

__all__ = [
    "BEGIN",
    "END",
    "REGENERATE",
    "documented_variables",
    "register",
    "replace_table",
    "settings_command",
    "settings_markdown",
]

BEGIN = (
    "<!-- settings-table: generated from streams/settings.py by `tipstream settings "
    "--markdown`; edit the descriptions there -->"
)
END = "<!-- /settings-table -->"
REGENERATE = "uv run tipstream settings --update README.md --update docs/contracts.md"
MODELS: tuple[type[BaseSettings], ...] = (Settings, DevSettings)


def _variable(model: type[BaseSettings], name: str) -> str:
    return f"{model.model_config.get('env_prefix', '')}{name.upper()}"


def _default(field: FieldInfo) -> str:
    """The default as the docs show it (``doc_default`` for one computed at run time).

    >>> from pydantic import Field
    >>> [_default(Field(default=v)) for v in (None, "", "x", 86_400.0, 0.05, 8)]
    ['unset', 'empty', '`x`', '86400', '0.05', '8']
    """
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "doc_default" in extra:
        return str(extra["doc_default"])
    value: Any = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, str):
        return f"`{value}`" if value else "empty"
    return str(value)


def documented_variables() -> list[str]:
    """Every ``TIPSTREAM_*`` variable the table documents, in its order."""
    return [_variable(m, name) for m in MODELS for name in m.model_fields]


def settings_markdown() -> str:
    """The settings table (Markdown) of every ``TIPSTREAM_*`` variable."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for model in MODELS:
        for name, field in model.model_fields.items():
            meaning = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{_variable(model, name)}` | {_default(field)} | {meaning} |")
    return "\n".join(lines)


def replace_table(text: str, table: str) -> str:
    """``text`` with the block between :data:`BEGIN` and :data:`END` replaced by ``table``.

    >>> replace_table(f"a\\n{BEGIN}\\nold\\n{END}\\nb", "new").splitlines()[2]
    'new'
    """
    head, begin, rest = text.partition(BEGIN)
    _old, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"no settings table markers ({BEGIN} ... {END})")
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def _shown(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "(set, hidden)" if value.get_secret_value() else "(empty)"
    return "(unset)" if value is None else str(value)


def settings_command(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="print the documentation table instead")
    ] = False,
    update: Annotated[
        list[Path] | None,
        typer.Option(help="rewrite the table between the markers in this file (repeatable)"),
    ] = None,
) -> None:
    """Print every TIPSTREAM_* setting with the value in effect (secrets hidden); a bad
    value is exit 2 naming the variable.

      tipstream settings --markdown        # the table README.md and docs/contracts.md show
    """
    if markdown or update:
        table = settings_markdown()
        for path in update or []:
            try:
                path.write_text(replace_table(path.read_text(encoding="utf-8"), table))
            except (OSError, ValueError) as err:
                raise fail(f"{path}: {err}", 1) from None
            typer.echo(f"updated the settings table in {path}", err=True)
        if markdown:
            typer.echo(table)
        return
    settings = settings_or_exit()
    for name, value in settings.model_dump().items():
        typer.echo(f"{_variable(Settings, name)}={_shown(value)}")


def register(app: typer.Typer) -> None:
    """Mount ``tipstream settings``."""
    app.command("settings")(settings_command)
