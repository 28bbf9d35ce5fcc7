"""The package's shape: imports flow one way, the CLI (its modules, ``CLI``) alone knows argparse, every job is
listed, no function is longer than 80 lines and no module reaches into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from segapp.cli import build_parser

PACKAGE = Path(__file__).resolve().parent.parent / "segapp"
JOBS = {"data", "train", "train-reader", "train-context", "train-ink", "evaluate", "predict", "export", "score", "demo"}
CLI = {"cli", "cli_parser", "cli_train_flags"}  # the command line: its runners, its parser, train's flags


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
    assert {m for m, deps in graph.items() if deps & CLI} <= CLI | {"__main__"}  # the entry points only
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


def stdlib_imports(source: str) -> set[str]:
    """Top-level names of every module ``source`` imports absolutely (``import a.b`` and ``from a.b import c``
    both give ``a``), at module level, inside functions or under ``if TYPE_CHECKING``."""
    found = set()
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.Import):
            found |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
            found.add(n.module.split(".")[0])
    return found


def test_only_the_cli_knows_argparse():
    users = {p.stem for p in PACKAGE.glob("*.py") if "argparse" in stdlib_imports(p.read_text(encoding="utf-8"))}
    assert users == CLI


def test_the_argparse_check_sees_every_form_of_import():
    assert "argparse" in stdlib_imports("import argparse")
    assert "argparse" in stdlib_imports("def f():\n    from argparse import Namespace")
    assert "argparse" not in stdlib_imports("from .argparse_free import x")


NAMESPACE_NAMES = {"a", "args"}  # what this code base calls parsed arguments


def namespace_parameters(source: str) -> list[str]:
    """``function(parameter)`` for every parameter in ``source`` that carries parsed command-line arguments: one
    annotated as a ``Namespace`` (argparse's or types'), or one named ``a`` or ``args`` with no annotation (an
    annotated ``a: np.ndarray`` is an array, not the flags). Outside the CLI a job takes a typed config or plain
    values, so what it reads is declared, checked and can be built without argparse."""
    found = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            name = getattr(n, "name", "lambda")
            for arg in n.args.posonlyargs + n.args.args + n.args.kwonlyargs:  # not *args: a tuple
                note = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                if "Namespace" in note or (arg.arg in NAMESPACE_NAMES and not note):
                    found.append(f"{name}({arg.arg})")
    return found


def test_only_the_cli_handles_parsed_arguments():
    found = {p.name: names for p in sorted(PACKAGE.glob("*.py"))
             if p.stem != "cli" and (names := namespace_parameters(p.read_text("utf-8")))}
    assert found == {}, f"take a typed config (see segapp.cli.config_from) instead: {found}"


def test_the_namespace_check_sees_names_and_annotations():
    assert namespace_parameters("def run(a):\n    return a.out") == ["run(a)"]
    assert namespace_parameters("def f(x, *, args):\n    pass") == ["f(args)"]
    assert namespace_parameters("def f(opts: argparse.Namespace): pass") == ["f(opts)"]
    assert namespace_parameters("class C:\n    def m(self, o: 'SimpleNamespace'): pass") == ["m(o)"]
    assert namespace_parameters("g = lambda a: a.x") == ["lambda(a)"]
    assert namespace_parameters("def f(a: np.ndarray, cfg: PredictConfig, *args, **kw): pass") == []


def module_constants(source: str) -> set[str]:
    """UPPER_CASE names ``source`` assigns at module level (``A = 1``, ``A, B = 1, 2``, ``A: int = 1``)."""
    found = set()
    for n in ast.parse(source).body:
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AnnAssign) else []
        for t in targets:
            found |= {e.id for e in (t.elts if isinstance(t, ast.Tuple) else [t])
                      if isinstance(e, ast.Name) and e.id.isupper()}
    return found


def test_no_constant_is_defined_in_two_modules():
    """One idea, one definition: a constant two modules need lives in one and is imported by the other."""
    where: dict[str, list[str]] = {}
    for p in sorted(PACKAGE.glob("*.py")):
        for name in module_constants(p.read_text(encoding="utf-8")):
            where.setdefault(name, []).append(p.stem)
    assert {k: v for k, v in where.items() if len(v) > 1} == {}


def test_the_constant_check_sees_every_form_of_assignment():
    assert module_constants("A = 1\nB, C = 2, 3\nD: int = 4\nlower = 5\ndef f():\n    E = 6") == {"A", "B", "C", "D"}


MAX_FUNCTION_LINES = 80


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """Functions (methods and nested ones included) in ``source`` longer than ``limit`` lines, def to last line:
    name -> lines. A function that long does several jobs and hides the state they share."""
    return {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(ast.parse(source))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > limit}


def test_no_function_is_longer_than_80_lines():
    found = {f"{p.name}:{name}": lines for p in sorted(PACKAGE.glob("*.py"))
             for name, lines in long_functions(p.read_text(encoding="utf-8")).items()}
    assert found == {}, f"split these into named steps: {found}"


def test_the_length_check_counts_nested_functions_and_methods():
    body = "\n".join(["    x = 1"] * MAX_FUNCTION_LINES)
    assert long_functions(f"def f():\n{body}\n") == {"f": MAX_FUNCTION_LINES + 1}
    nested = "\n".join("    " + line for line in f"def g():\n{body}".splitlines())
    assert "g" in long_functions(f"class C:\n{nested}\n")
    assert long_functions(f"def f():\n{body[:-10]}\n") == {}


def private_imports(source: str) -> list[str]:
    """``module.name`` for every ``_private`` name (not ``__dunder__``) that ``source`` imports from segapp, by a
    relative import or by ``segapp.x``: a name with a leading underscore belongs to its module alone, so a helper
    other modules need is made public (and documented) where it is defined."""
    found = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.ImportFrom) and (n.level > 0 or (n.module or "").split(".")[0] == "segapp"):
            where = "." * n.level + (f"{n.module}." if n.module else "")
            found += [where + a.name for a in n.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_module_imports_another_modules_private_names():
    found = {p.name: names for p in sorted(PACKAGE.glob("*.py")) if (names := private_imports(p.read_text("utf-8")))}
    assert found == {}


def test_the_private_import_check_sees_relative_and_absolute_imports():
    assert private_imports("from .engines import _store") == [".engines._store"]
    assert private_imports("def f():\n    from segapp.train import _shown") == ["segapp.train._shown"]
    assert private_imports("from . import _x") == ["._x"]
    assert private_imports("from .engines import store_cache_file, __version__") == []
    assert private_imports("from os import _exit") == []


@pytest.mark.parametrize("module", sorted(CLI))
def test_no_subcommand_hides_behind_an_import_error(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    caught = [ast.unparse(h.type) for n in ast.walk(tree) if isinstance(n, ast.Try) for h in n.handlers if h.type]
    assert not [c for c in caught if "ImportError" in c or "ModuleNotFoundError" in c]


def test_help_lists_every_job(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    listed = capsys.readouterr().out
    assert all(f"    {job} " in listed for job in JOBS), listed
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == JOBS
