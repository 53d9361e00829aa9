"""Personas: the synthetic users the simulator plays, loaded from JSON data files.

A persona file is a JSON list of objects with exactly the fields of :class:`Persona`.
The standard five (docs/simulation.md) ship as ``judges/personas/standard.json``; a second,
untuned set ships as ``judges/personas/alternate.json`` (see :data:`ALTERNATE_PERSONAS`).
Both are picked by name (:data:`PERSONA_SETS`): ``--personas standard|alternate|PATH``.

>>> print(", ".join(p.name for p in load_personas()))
deadline-driven, evening-relaxed, low-priority-first, consistent-responder, overdue-ignorer
>>> len(load_personas(ALTERNATE_PERSONAS)), load_personas("alternate")[0].name
(5, 'night-owl-procrastinator')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

PERSONA_DIR = Path(__file__).resolve().parent / "personas"
STANDARD_PERSONAS = PERSONA_DIR / "standard.json"
ALTERNATE_PERSONAS = PERSONA_DIR / "alternate.json"
# The shipped sets by name; anything else given as a persona set is a path to a file.
PERSONA_SETS: dict[str, Path] = {"standard": STANDARD_PERSONAS, "alternate": ALTERNATE_PERSONAS}
DEFAULT_PERSONA_SET = "standard"

__all__ = [
    "ALTERNATE_PERSONAS",
    "DEFAULT_PERSONA_SET",
    "PERSONA_DIR",
    "PERSONA_SETS",
    "STANDARD_PERSONAS",
    "Persona",
    "PersonaFileError",
    "load_personas",
    "parse_personas",
    "persona_file",
]


@dataclass(frozen=True, slots=True)
class Persona:
    """A synthetic user: a description (for the LLM judge) and the rule judge's preferences."""

    name: str
    description: str
    prefers_high_priority: float  # in [-1, 1]
    prefers_overdue: float  # in [0, 1]
    morning_active: bool
    evening_active: bool


class PersonaFileError(ValueError):
    """A persona file that cannot be used; the message names the entry and the field."""


class _PersonaEntry(BaseModel):
    """Validation schema of one entry: exact fields, strict types, ranges."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^\S(.*\S)?$")
    description: StrictStr = Field(min_length=1)
    # Strict floats still accept JSON integers (e.g. 0 or 1), never booleans or strings.
    prefers_high_priority: float = Field(ge=-1.0, le=1.0, allow_inf_nan=False)
    prefers_overdue: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    morning_active: StrictBool
    evening_active: StrictBool


def _entry_label(index: int, raw: Any) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f"entry {index} ({name!r})" if isinstance(name, str) else f"entry {index}"


def parse_personas(data: Any, source: str = "<data>") -> list[Persona]:
    """Validate already-decoded JSON (a list of objects) into personas.

    >>> parse_personas([{"name": "x", "description": "d", "prefers_high_priority": 2,
    ...   "prefers_overdue": 0, "morning_active": True, "evening_active": False}])
    ... # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    judges.personas.PersonaFileError: <data>: entry 0 ('x'), field 'prefers_high_priority':
    Input should be less than or equal to 1 (got 2)
    """
    if not isinstance(data, list):
        raise PersonaFileError(f"{source}: expected a JSON list of persona objects")
    if not data:
        raise PersonaFileError(f"{source}: the list holds no persona")
    personas: list[Persona] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(data):
        label = _entry_label(index, raw)
        if not isinstance(raw, dict):
            raise PersonaFileError(f"{source}: {label}: expected an object")
        try:
            entry = _PersonaEntry.model_validate(raw)
        except pydantic.ValidationError as err:
            error = err.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "?"
            if error["type"] == "extra_forbidden":
                detail = "unknown field"
            elif error["type"] == "missing":
                detail = "missing field"
            else:
                detail = f"{error['msg']} (got {error['input']!r})"
            raise PersonaFileError(f"{source}: {label}, field {field!r}: {detail}") from None
        if entry.name in first_index:
            raise PersonaFileError(
                f"{source}: {label}, field 'name': duplicate name "
                f"(first used by entry {first_index[entry.name]})"
            )
        first_index[entry.name] = index
        personas.append(Persona(**entry.model_dump()))
    return personas


def persona_file(spec: str | Path | None) -> Path:
    """The file of a persona set: a shipped set's name, or a path (``None``: the standard).

    A word that is neither a shipped name nor an existing file is an unknown name:

    >>> persona_file("alternate").name
    'alternate.json'
    >>> persona_file("nightowls")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    judges.personas.PersonaFileError: unknown persona set 'nightowls'; known: standard, ...
    """
    if spec is None:
        return PERSONA_SETS[DEFAULT_PERSONA_SET]
    if isinstance(spec, str) and spec in PERSONA_SETS:
        return PERSONA_SETS[spec]
    path = Path(spec)
    looks_like_a_path = len(path.parts) > 1 or path.suffix != "" or path.exists()
    if not looks_like_a_path:
        raise PersonaFileError(
            f"unknown persona set {str(spec)!r}; known: {', '.join(PERSONA_SETS)}, "
            "or a path to a JSON file"
        )
    return path


def load_personas(path: str | Path | None = None) -> list[Persona]:
    """Read and validate a persona set (:func:`persona_file`); ``None`` gives the standard
    five."""
    file = persona_file(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PersonaFileError(f"{file}: cannot read: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PersonaFileError(
            f"{file}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None
    return parse_personas(data, str(file))
