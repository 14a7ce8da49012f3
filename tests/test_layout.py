"""The package's layout: the import contracts of pyproject.toml, no import cycle, and
run-time code that loads no SymPy."""
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold():
    command = [sys.executable, "-c", "import sys, importlinter.cli as c; sys.exit(c.lint_imports_command())",
               "--no-cache", "--config", str(ROOT / "pyproject.toml")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout
    assert any(c["source_modules"] == ["symbackprop.checker"] and "symbackprop.codegen" in c["forbidden_modules"]
               for c in contracts if c["type"] == "forbidden")


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), every import counted:
    deferred ones, inside functions, too."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if not w.startswith("symbackprop"):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module.startswith("symbackprop") and module not in index:
            visit(module)
    return found


def test_no_module_takes_part_in_an_import_cycle():
    graph = grimp.build_graph("symbackprop", exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = grimp.build_graph("symbackprop", exclude_type_checking_imports=True)
    graph.add_import(importer="symbackprop.lang.parser", imported="symbackprop.cli")
    assert any("symbackprop.lang.parser" in c and "symbackprop.cli" in c for c in _cycles(graph))


def _fresh_python(code: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_package_and_its_help_loads_no_sympy(tmp_path):
    code = ("import sys, symbackprop; from symbackprop.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('sympy', 'mpmath', 'hypothesis', 'numpy') if m in sys.modules))")
    assert _fresh_python(code, tmp_path) == "[]"
    code = ("import sys, contextlib, io; from symbackprop.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit): main(['--help'])\n"
            "print(sorted(m for m in ('sympy', 'mpmath', 'hypothesis', 'numpy') if m in sys.modules))")
    assert _fresh_python(code, tmp_path) == "[]"  # the whole of main, as `symbackprop --help` runs it


def test_a_generated_fused_module_runs_without_sympy(tmp_path):
    source = _fresh_python("import symbackprop; print(symbackprop.load('sigmoid').generate('fused'))", tmp_path)
    (tmp_path / "fast_sigmoid.py").write_text(source + "\n")
    code = ("import sys, numpy as np, fast_sigmoid; layer = fast_sigmoid.Sigmoid(); "
            "y = layer.forward(np.zeros(4)); dx = layer.backward(np.ones(4)); "
            "print(float(y[0]), float(dx[0]), 'sympy' in sys.modules, 'symbackprop.derivation' in sys.modules)")
    assert _fresh_python(code, tmp_path) == "0.5 0.25 False False"
