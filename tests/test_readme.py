"""The README and the guides in ``docs/`` run as written.

Every ``console`` block is a session: each ``$ command`` runs in a shell, in order, in a
fresh copy of the repository (so the files a command uses must be shipped, and what one
command writes is there for the next), and its output (stdout and stderr together) must
be what the block shows after the output's timings and error figures are normalized. A
line ``...`` in a block stands for any number of lines. Each document is one test: its
sessions build on each other.
"""
from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"^```console\n(.*?)^```", re.S | re.M)
_PYTHON = re.compile(r"^```python\n((?:import|from) .*?)^```", re.S | re.M)  # a complete program
GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTS = [d for d in GUIDES if "```console" in d.read_text(encoding="utf-8")]
PROGRAMS = [(d, m.group(1)) for d in GUIDES for m in _PYTHON.finditer(d.read_text(encoding="utf-8"))]
SKIPPED_IN_COPY = shutil.ignore_patterns(".git", ".venv*", "__pycache__", ".hypothesis", ".pytest_cache",
                                         "build", "dist", "*.egg-info", ".ci")
TIMEOUT = 180  # seconds a command may take; a slower one fails the test


# What varies from run to run or machine to machine: timings and error figures.
_NORMALIZATIONS = [
    (re.compile(r"\b\d+(?:\.\d+)?e[-+]?\d+\b"), "<e>"),              # 3.9e-16: an error figure
    (re.compile(r"\(\d+(?:\.\d+)? s\)"), "(<t> s)"),                 # (0.05 s): a timing
    (re.compile(r"\bin \d+(?:\.\d+)? ?s\b"), "in <t> s"),           # graded 8 in 11.0 s; pytest's 5 passed in 2.26s
    (re.compile(r"\(CPU \d+(?:\.\d+)? s\)"), "(CPU <t> s)"),         # a training example's CPU time
    (re.compile(r"\d+(?:\.\d+)? per second"), "<n> per second"),
    (re.compile(r'"seconds": \d+(?:\.\d+)?'), '"seconds": <t>'),
    (re.compile(r"(\s)\d+\.\d\d$"), r"\1<t>"),                       # check's last column: seconds
    (re.compile(r"[ \t]+"), " "),                                      # column widths follow the figures
]


@dataclass
class Command:
    """One ``$ command`` of a console block and the output the block shows for it."""
    document: str
    line: int
    text: str
    expected: list[str]


def commands(document: Path) -> list[Command]:
    """The commands of every console block of ``document``, in order."""
    source = document.read_text(encoding="utf-8")
    found: list[Command] = []
    for block in _BLOCK.finditer(source):
        first_line = source.count("\n", 0, block.start()) + 2
        lines = block.group(1).splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                raise AssertionError(f"{document.name}:{first_line + i}: output before any command")
            start, text = i, lines[i][2:]
            while text.endswith("\\"):
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            i += 1
            output_start = i
            while i < len(lines) and not lines[i].startswith("$ "):
                i += 1
            found.append(Command(document.name, first_line + start, text, lines[output_start:i]))
    return found


def normalized(line: str) -> str:
    for pattern, replacement in _NORMALIZATIONS:
        line = pattern.sub(replacement, line)
    return line.strip()


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` is ``expected`` line by line, an ``...`` line matching any lines."""
    expected = [normalized(e) for e in expected]
    actual = [normalized(a) for a in actual]
    pattern = "".join(".*?" if e == "..." else re.escape(e + "\n") for e in expected)
    return re.fullmatch(pattern, "".join(a + "\n" for a in actual), re.S) is not None


def run(command: Command, workspace: Path, env: dict[str, str]) -> list[str]:
    try:
        result = subprocess.run(command.text, shell=True, cwd=workspace, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return [f"<still running after {TIMEOUT} s>"]
    return result.stdout.decode("utf-8", "replace").splitlines()


def environment(workspace: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["SYMBACKPROP_CACHE"] = str(workspace.parent / "cache")
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr interleave in the order they were written
    env["COLUMNS"] = "100"
    env.pop("FORCE_COLOR", None)
    return env


#: The system tools a document's commands run (graphs, typesetting, the grading sandbox).
NEEDS = {"README.md": ("dot", "latex", "dvipng", "bwrap"), "docs/explaining.md": ("dot", "latex", "dvipng"),
         "docs/grading.md": ("bwrap",)}


def _with_needs(document: Path):
    name = document.relative_to(ROOT).as_posix()
    return pytest.param(document, id=name, marks=pytest.mark.needs(*NEEDS[name]) if name in NEEDS else ())


@pytest.mark.parametrize("document", [_with_needs(d) for d in DOCUMENTS])
def test_every_command_of_the_document_runs_as_written(document: Path, tmp_path: Path) -> None:
    session = commands(document)
    workspace = tmp_path / "repo"
    shutil.copytree(ROOT, workspace, ignore=SKIPPED_IN_COPY)
    env = environment(workspace)
    failures = []
    for command in session:
        actual = run(command, workspace, env)
        if not matches(command.expected, actual):
            diff = "\n".join(difflib.unified_diff(command.expected, actual, "README", "actual", lineterm="", n=1))
            failures.append(f"{command.document}:{command.line}: $ {command.text}\n{diff}")
    assert not failures, f"{len(failures)} of {len(session)} commands differ:\n\n" + "\n\n".join(failures)


@pytest.mark.parametrize("document, program", PROGRAMS,
                         ids=[f"{d.name}:{p.splitlines()[0]}" for d, p in PROGRAMS])
def test_every_python_example_runs(document: Path, program: str, tmp_path: Path) -> None:
    """Each Python block that is a whole program (it starts with an import) runs without error,
    its asserts included, with ``examples/`` importable (``import my_layers``)."""
    env = environment(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "examples"), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"{document.name}: the example starting {program.splitlines()[0]!r} " \
                                   f"failed:\n{result.stderr[-3000:]}"


_LINK = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")  # a relative link or picture: [text](path)


@pytest.mark.parametrize("document", GUIDES, ids=lambda d: d.relative_to(ROOT).as_posix())
def test_every_relative_link_points_to_a_shipped_file(document: Path) -> None:
    links = _LINK.findall(document.read_text(encoding="utf-8"))
    missing = [link for link in links if not (document.parent / link).exists()]
    assert not missing, f"{document.name}: links to missing files: {missing}"


def test_the_parser_reads_commands_outputs_and_continuations(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("text\n```console\n$ echo a \\\n   b\na b\n$ true\n```\n```sh\n$ not a session\n```\n")
    found = commands(doc)
    assert [(c.line, c.text, c.expected) for c in found] == [(3, "echo a  b", ["a b"]), (6, "true", [])]


def test_normalization_hides_timings_and_error_figures_only() -> None:
    assert matches(["ok  (0.05 s)", "max 3.9e-16", "graded 8 in 11.0 s (0.7 per second, 2 jobs)"],
                   ["ok  (1.20 s)", "max 1.0e-15", "graded 8 in 9.5 s (1.3 per second, 2 jobs)"])
    assert not matches(["dx = dout*y*(1 - y)"], ["dx = dout*y*(1 + y)"])
    assert not matches(["2 claims, 1 chain: all hold"], ["2 claims, 1 chain: 1 wrong"])
    assert matches(["first", "...", "last"], ["first", "a", "b", "last"])
    assert matches(["first", "...", "last"], ["first", "last"])
    assert not matches(["first", "...", "last"], ["first", "a"])
