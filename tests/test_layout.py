"""The layout's promises, checked on the source: rooms, sizes, imports, purity, docs.

A newcomer finds the data flow in the folder names (docs/architecture.md); these checks keep
it that way as code is added: no god-files, no import cycles, no imports hidden in
functions to dodge one, bandit/ and judges/ free of I/O, and no pointers outside the
repository.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("streams", "bandit", "judges", "schemas")
MAX_LINES = 600
MAX_LOOSE_STREAMS_MODULES = 4
MAX_FUNCTION_LEVEL_IMPORTS = 5
# Only what has a real start-up cost may be imported inside a function (faust's worker).
PURE = ("bandit", "judges")
IMPURE_MODULES = ("streams", "faust", "aiokafka", "asyncpg", "aiohttp", "time", "datetime")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(node: ast.Import | ast.ImportFrom, module: str, known: dict[str, Path]) -> set[str]:
    """Project modules an import statement loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".")[: -node.level] if module else []
            base = ".".join([*package, base] if base else package)
        names = [f"{base}.{alias.name}" for alias in node.names] + [base]
    return {name for name in names if name in known}


def module_level_imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found |= imported(node, module, known)
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody
    return found


def function_level_imports(path: Path, module: str, known: dict[str, Path]) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.Import | ast.ImportFrom) and imported(node, module, known):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return sorted(set(found))


def test_no_module_is_a_god_file() -> None:
    big = {
        str(path.relative_to(REPO)): n
        for path in modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}


def test_streams_is_rooms_not_loose_modules() -> None:
    loose = sorted(p.name for p in (REPO / "streams").glob("*.py"))
    assert len(loose) <= MAX_LOOSE_STREAMS_MODULES, loose
    rooms = sorted(p.name for p in (REPO / "streams").iterdir() if (p / "__init__.py").exists())
    assert rooms == ["analysis", "cli", "console", "dev", "sim", "worker"]


def test_there_is_no_import_cycle() -> None:
    known = modules()
    graph = {name: module_level_imports(name, path, known) - {name} for name, path in known.items()}
    # A package imports its parent packages implicitly: that is not a cycle of ours.
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_few_function_level_imports_of_project_modules() -> None:
    known = modules()
    found = [
        where for name, path in known.items() for where in function_level_imports(path, name, known)
    ]
    assert len(found) <= MAX_FUNCTION_LEVEL_IMPORTS, found


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_do_no_io(package: str) -> None:
    offenders = []
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for name in names:
                    if name.split(".")[0] in IMPURE_MODULES:
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
            if isinstance(node, ast.Attribute) and node.attr == "environ":
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} os.environ")
    assert offenders == []


def test_nothing_points_outside_the_repository() -> None:
    texts = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for package in (*PACKAGES, "tests", "bench"):
        texts += sorted((REPO / package).rglob("*.py"))
    outside = ("../shared", "CONTRACTS.md", "SIMULATION.md", "FIELD-NOTES.md")
    hits = [
        f"{path.relative_to(REPO)}: {marker}"
        for path in texts
        if path != Path(__file__).resolve()
        for marker in outside
        if marker in path.read_text()
    ]
    assert hits == []
