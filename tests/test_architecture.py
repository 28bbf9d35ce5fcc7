"""The package's shape (issue 10): imports flow one way, the CLI alone knows argparse, every job is listed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from segapp.cli import build_parser

PACKAGE = Path(__file__).resolve().parent.parent / "segapp"
JOBS = {"data", "train", "evaluate", "predict", "export", "score", "demo"}


def imports(path: Path) -> set[str]:
    """The segapp modules (and 'benchmarks') that ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif node.module and node.module.split(".")[0] in ("segapp", "benchmarks"):
                parts = node.module.split(".")
                found |= {parts[1]} if len(parts) > 1 and parts[0] == "segapp" else {parts[0]}
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "benchmarks":
                    found.add("benchmarks")
                elif parts[0] == "segapp" and len(parts) > 1:
                    found.add(parts[1])
    return found - {path.stem}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {p.stem: imports(p) for p in PACKAGE.glob("*.py")}


def test_no_module_imports_the_cli_or_the_benchmarks(graph):
    assert {m for m, deps in graph.items() if "cli" in deps} <= {"__main__"}  # the entry points only
    assert {m for m, deps in graph.items() if "benchmarks" in deps} == set()


def test_no_import_cycles(graph):
    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for dep in graph.get(todo.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    assert [m for m in graph if m in reach(m)] == []


def test_only_the_cli_knows_argparse(graph):
    users = {p.stem for p in PACKAGE.glob("*.py") if "argparse" in {
        a.name for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))) if isinstance(n, ast.Import)
        for a in n.names}}
    assert users == {"cli"}


def test_no_subcommand_hides_behind_an_import_error():
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    caught = [ast.unparse(h.type) for n in ast.walk(tree) if isinstance(n, ast.Try) for h in n.handlers if h.type]
    assert not [c for c in caught if "ImportError" in c or "ModuleNotFoundError" in c]


def test_help_lists_every_job(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    listed = capsys.readouterr().out
    assert all(f"    {job} " in listed for job in JOBS), listed
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == JOBS
