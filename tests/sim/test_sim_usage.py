"""Bad usage and bad input exit with 2 and say what is wrong (no stack needed).

These are plain (sync) tests: the command runs its own event loop, as from a terminal.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from streams.cli.sim import register

GOOD = {
    "name": "ok", "description": "d", "prefers_high_priority": 0.5, "prefers_overdue": 0.5,
    "morning_active": False, "evening_active": True,
}  # fmt: skip


def invoke(*args: str) -> tuple[int, str, str]:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_bad_persona_file_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "personas.json"
    path.write_text(json.dumps([GOOD, {**GOOD, "name": "broken", "prefers_overdue": 1.5}]))
    code, out, err = invoke("simulate", "--policy", "random", "--personas", str(path), "--json")
    assert code == 2
    assert "entry 1 ('broken')" in err
    assert "prefers_overdue" in err
    assert out == ""
    path.write_text("[{")
    code, _, err = invoke("simulate", "--policy", "random", "--personas", str(path))
    assert code == 2
    assert "invalid JSON" in err


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    for args, message in [
        (("--judge", "psychic"), "--judge must be"),
        (("--policy", "oracle", "--judge", "llm"), "oracle"),
        (("--policy", "random", "--via", "worker"), "does not serve"),
        (("--policy", "no-such-policy", "--via", "inprocess"), "no-such-policy"),
        (("--rounds", "0", "--via", "inprocess"), "--rounds"),
        (("--rate", "100"), "both --rate and --duration"),
        (("--judge", "external"), "--requests-out"),
        (("--judgments-in", str(tmp_path / "j.jsonl")), "--run-id"),
        (("--exploration-floor", "1.5", "--via", "inprocess"), "--exploration-floor must be"),
        (("--exploration-floor", "0.05", "--via", "worker"), "TIPSTREAM_EXPLORATION_FLOOR"),
        (("--policy", "oracle", "--exploration-floor", "0.1"), "learning policy"),
    ]:
        code, _, err = invoke("simulate", *args)
        assert code == 2, (args, err)
        assert message in err, (args, err)
