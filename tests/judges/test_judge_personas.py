"""Persona files: the shipped sets, and every way a file can be wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from judges.personas import (
    ALTERNATE_PERSONAS,
    STANDARD_PERSONAS,
    Persona,
    PersonaFileError,
    load_personas,
)

TABLE = [  # docs/simulation.md, "Personas (the standard five)"
    ("deadline-driven", 0.9, 0.9, True, False),
    ("evening-relaxed", 0.2, 0.4, False, True),
    ("low-priority-first", -0.8, 0.5, False, False),
    ("consistent-responder", 0.5, 0.6, False, False),
    ("overdue-ignorer", 0.6, 0.0, True, False),
]


def entry(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "tester",
        "description": "Tests things.",
        "prefers_high_priority": 0.1,
        "prefers_overdue": 0.2,
        "morning_active": False,
        "evening_active": True,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "personas.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def test_standard_five_match_the_spec() -> None:
    personas = load_personas()
    assert [
        (p.name, p.prefers_high_priority, p.prefers_overdue, p.morning_active, p.evening_active)
        for p in personas
    ] == TABLE
    assert all(1 <= p.description.count(".") <= 2 for p in personas)  # one or two sentences
    assert load_personas(STANDARD_PERSONAS) == personas
    assert load_personas(str(STANDARD_PERSONAS)) == personas


def test_alternate_five_are_different_people() -> None:
    alternate = load_personas(ALTERNATE_PERSONAS)
    standard = load_personas()
    assert len(alternate) == 5
    assert not {p.name for p in alternate} & {p.name for p in standard}
    params = {
        (p.prefers_high_priority, p.prefers_overdue, p.morning_active, p.evening_active)
        for p in standard
    }
    assert all(
        (p.prefers_high_priority, p.prefers_overdue, p.morning_active, p.evening_active)
        not in params
        for p in alternate
    )
    # Covers the case the standard set lacks: a persona active morning and evening.
    assert any(p.morning_active and p.evening_active for p in alternate)


def test_a_user_file_loads(tmp_path: Path) -> None:
    [p] = load_personas(write(tmp_path, [entry(prefers_high_priority=1, prefers_overdue=0)]))
    assert p == Persona("tester", "Tests things.", 1.0, 0.0, False, True)
    assert isinstance(p.prefers_high_priority, float)


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ([entry(), entry(name="b", mood="sunny")], ["entry 1 ('b')", "'mood'", "unknown field"]),
        ([entry(evening_active=_DROP)], ["entry 0 ('tester')", "'evening_active'", "missing"]),
        ([entry(name=_DROP)], ["entry 0,", "'name'", "missing"]),
        ([entry(prefers_overdue="0.5")], ["entry 0 ('tester')", "'prefers_overdue'"]),
        ([entry(prefers_overdue=True)], ["'prefers_overdue'", "True"]),
        ([entry(morning_active=1)], ["'morning_active'", "boolean"]),
        ([entry(morning_active="yes")], ["'morning_active'"]),
        ([entry(prefers_high_priority=-1.5)], ["'prefers_high_priority'", "-1.5"]),
        ([entry(prefers_overdue=1.01)], ["'prefers_overdue'", "1.01"]),
        ([entry(name="")], ["entry 0 ('')", "'name'"]),
        ([entry(name=" padded")], ["'name'"]),
        ([entry(name=7)], ["entry 0,", "'name'"]),
        ([entry(description=None)], ["'description'"]),
        (
            [entry(name="a"), entry(name="b"), entry(name="a")],
            ["entry 2 ('a')", "'name'", "duplicate", "entry 0"],
        ),
        ([entry(), "not an object"], ["entry 1", "object"]),
        ({"name": "x"}, ["list"]),
        ([], ["no persona"]),
    ],
)
def test_bad_files_name_the_entry_and_field(
    tmp_path: Path, data: Any, fragments: list[str]
) -> None:
    with pytest.raises(PersonaFileError) as info:
        load_personas(write(tmp_path, data))
    message = str(info.value)
    assert str(tmp_path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_nan_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        '[{"name": "n", "description": "d", "prefers_high_priority": NaN, '
        '"prefers_overdue": 0.5, "morning_active": false, "evening_active": false}]'
    )
    with pytest.raises(PersonaFileError, match="prefers_high_priority"):
        load_personas(path)


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('[\n  {"name": "a",\n   "description": "d",,\n}]\n', encoding="utf-8")
    with pytest.raises(PersonaFileError, match=r"invalid JSON at line 3, column 23"):
        load_personas(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PersonaFileError, match="cannot read"):
        load_personas(tmp_path / "absent.json")


def test_error_is_a_value_error() -> None:
    assert issubclass(PersonaFileError, ValueError)
