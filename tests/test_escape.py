"""User text shown or generated is escaped: a path cannot inject code into a generated
module, an exception message cannot forge a report line or drive the terminal.

Oracles: Python's own parser (the docstring reads back as the text), the file system
(the injected code would have left a file), the lines of the report.
"""
import ast
import os
import subprocess
import sys

from hypothesis import given, strategies as st

from symbackprop.cli import main
from symbackprop.escape import in_docstring, markdown_text, shown
from symbackprop.spec.catalog import resolve

ANY_TEXT = st.text(st.characters(), max_size=60)


@given(ANY_TEXT)
def test_a_docstring_reads_back_as_the_text_and_nothing_else(text):
    source = f'"""{in_docstring(text)}"""'
    tree = ast.parse(source)
    assert len(tree.body) == 1  # one expression statement: the string, no injected code
    assert ast.literal_eval(source) == text


@given(ANY_TEXT)
def test_shown_text_is_one_printable_line(text):
    out = shown(text)
    assert out.isprintable()
    assert text.isprintable() <= (out == text)  # printable text is left as it is


@given(ANY_TEXT)
def test_markdown_text_opens_no_tag_and_no_cell(text):
    out = markdown_text(text)
    assert not set("<>|`") & set(out) and out.isprintable()


def test_a_path_cannot_inject_code_into_generated_source(tmp_path):
    marker = tmp_path / "injected"
    folder = tmp_path / 'evil"""; open("injected", "w"); """\n'  # run from tmp_path
    folder.mkdir()
    declaration = folder / "sigmoid.toml"
    declaration.write_text(resolve("sigmoid").read_text())
    out = tmp_path / "layer.py"
    assert main(["generate", str(declaration), "-o", str(out)]) == 0
    run = subprocess.run([sys.executable, str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert not marker.exists()
    tree = ast.parse(out.read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert str(declaration) in ast.get_docstring(cls)  # the path still says where it came from


def test_an_exception_message_forges_no_report_line(tmp_path, capsys):
    forged = "/elsewhere/layers.py:Sigmoid  ok"
    (tmp_path / "layers.py").write_text(
        "import numpy as np\n\n\n"
        "class Sigmoid:\n"
        "    def forward(self, x):\n"
        "        self.out = 1 / (1 + np.exp(-x))\n"
        "        return self.out\n\n"
        "    def backward(self, dout):\n"
        f"        raise ValueError({chr(10) + forged + chr(27) + '[2J'!r})\n")
    code = main(["verify-layer", f"{tmp_path}/layers.py:Sigmoid", "--against", "sigmoid"])
    out = capsys.readouterr().out
    assert code == 1
    assert "\x1b" not in out
    assert not any(line.startswith(forged) for line in out.splitlines())
    assert "\\n" + forged in out  # still shown, escaped, so the student can read it
    assert os.path.exists(tmp_path / "layers.py")
