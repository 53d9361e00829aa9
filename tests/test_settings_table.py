"""The settings tables in README.md and docs/contracts.md are generated from the settings'
field descriptions, cover every ``TIPSTREAM_*`` variable, and nothing reads one elsewhere."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from streams.cli.settings_table import (
    BEGIN,
    END,
    MODELS,
    REGENERATE,
    documented_variables,
    settings_markdown,
)

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/contracts.md")
VARIABLE = re.compile(r"\bTIPSTREAM_[A-Z0-9_]*[A-Z0-9]\b")


@pytest.mark.parametrize("doc", DOCS)
def test_the_settings_table_is_up_to_date(doc: str) -> None:
    text = (REPO / doc).read_text(encoding="utf-8")
    assert BEGIN in text, f"{doc} lost its settings table's first marker"
    assert END in text, f"{doc} lost its settings table's last marker"
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == settings_markdown(), (
        f"{doc}'s settings table is out of date with streams/settings.py; regenerate it: "
        f"{REGENERATE}"
    )


def test_every_setting_has_a_description() -> None:
    missing = [
        f"{model.__name__}.{name}"
        for model in MODELS
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert missing == [], "give each setting Field(description=...)"


def _mentioned() -> dict[str, set[str]]:
    files = [
        REPO / "Dockerfile",
        REPO / "docker-compose.yml",
        REPO / "Makefile",
        REPO / "README.md",
        *sorted((REPO / "docs").glob("*.md")),
        *sorted((REPO / "streams").rglob("*.py")),
        *sorted((REPO / "bench").rglob("*.py")),
    ]
    found: dict[str, set[str]] = {}
    for path in files:
        for name in VARIABLE.findall(path.read_text(encoding="utf-8")):
            found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_variable_named_anywhere_is_a_documented_setting() -> None:
    documented = set(documented_variables())
    # "TIPSTREAM_DEV_*_PORT" and the like are patterns, not variables.
    unknown = {
        name: sorted(where)
        for name, where in _mentioned().items()
        if name not in documented and name != "TIPSTREAM_DEV"
    }
    assert unknown == {}, "a TIPSTREAM_* variable that is no setting (add it to the settings)"
    for name in ("TIPSTREAM_DATA_DIR", "TIPSTREAM_SESSION_TIMEOUT_S", "TIPSTREAM_MAX_EVENT_BYTES"):
        assert name in documented


def _environment_reads(path: Path) -> list[str]:
    """``os.environ.get("TIPSTREAM_...")``, ``os.getenv(...)`` and ``os.environ[...]``."""
    reads = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        key: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            is_get = isinstance(func, ast.Attribute) and (
                func.attr == "getenv"
                or (
                    func.attr == "get"
                    and isinstance(func.value, ast.Attribute)
                    and func.value.attr == "environ"
                )
            )
            key = node.args[0] if is_get else None
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            key = node.slice if node.value.attr == "environ" else None
        if isinstance(key, ast.Constant) and str(key.value).startswith("TIPSTREAM_"):
            reads.append(f"{path.relative_to(REPO)}:{node.lineno} {key.value}")
    return reads


def test_no_tipstream_variable_is_read_outside_the_settings() -> None:
    reads = [
        read
        for package in ("streams", "bandit", "judges", "schemas", "bench")
        for path in sorted((REPO / package).rglob("*.py"))
        for read in _environment_reads(path)
    ]
    assert reads == [], "read it through streams.settings.Settings (or DevSettings)"
