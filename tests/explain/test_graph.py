"""Computational graphs: the seed's figure 5-9 node by node, arrow by arrow, number by number.

Oracles: the seed's printed numbers, typed by hand; a real render by Graphviz's ``dot``.
"""
import json
import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest

import symbackprop
from symbackprop.cli import main
from symbackprop.explain import graph
from symbackprop.explain import GraphvizMissing

NODE = re.compile(r'^\s*"(\w+)" \[label="([^"]*)"', re.M)
EDGE = re.compile(r'^\s*"(\w+)" -> "(\w+)" \[label="([^"]*)"([^\]]*)\];', re.M)


def parse(dot):
    """Nodes (id -> label), forward arrows and backward arrows as (from, to, label), in the
    direction the arrow points (a ``dir=back`` arrow points from its head to its tail)."""
    nodes = dict(NODE.findall(dot))
    forward, backward = [], []
    for a, b, label, attrs in EDGE.findall(dot):
        if 'color="red"' in attrs:
            assert 'style="bold"' in attrs
            backward.append((b, a, label) if 'dir="back"' in attrs else (a, b, label))
        else:
            forward.append((a, b, label))
    return nodes, forward, backward


def test_apple_orange_is_the_seeds_figure_5_9():
    nodes, forward, backward = parse(graph(symbackprop.load("apple_orange")).dot)
    label = {v: k for k, v in nodes.items() if v not in ("×", "+")}
    apple, apple_num, orange, orange_num, tax = (label[n] for n in ("apple", "apple_num", "orange", "orange_num", "tax"))
    price = label["price"]
    into = {a: b for a, b, _ in forward}
    mul_apple, mul_orange = into[apple], into[orange]
    add = into[mul_apple]
    mul_tax = into[add]
    assert [nodes[n] for n in (mul_apple, mul_orange, add, mul_tax)] == ["×", "×", "+", "×"]
    assert len(nodes) == 10  # five inputs, four operations, the total
    # the seed's figure 5-9, typed by hand: forward 100, 2, 150, 3, 200, 450, 650, 1.1, 715
    assert Counter(forward) == Counter([
        (apple, mul_apple, "100"), (apple_num, mul_apple, "2"), (orange, mul_orange, "150"),
        (orange_num, mul_orange, "3"), (mul_apple, add, "200"), (mul_orange, add, "450"),
        (add, mul_tax, "650"), (tax, mul_tax, "1.1"), (mul_tax, price, "715")])
    # backward 1, 1.1, 650, 1.1, 1.1, 2.2, 110, 3.3, 165 (the seed's DOT says 2 for the apple: its figure, 2.2)
    assert Counter(backward) == Counter([
        (price, mul_tax, "1"), (mul_tax, add, "1.1"), (mul_tax, tax, "650"), (add, mul_apple, "1.1"),
        (add, mul_orange, "1.1"), (mul_apple, apple, "2.2"), (mul_apple, apple_num, "110"),
        (mul_orange, orange, "3.3"), (mul_orange, orange_num, "165")])


def test_apple_is_the_seeds_figure_5_4():
    nodes, forward, backward = parse(graph(symbackprop.load("apple")).dot)
    assert sorted(label for *_, label in forward) == sorted(["100", "2", "200", "1.1", "220"])
    assert sorted(label for *_, label in backward) == sorted(["1", "1.1", "2.2", "110", "200"])


def test_forward_only_draws_no_red_arrow():
    _, forward, backward = parse(graph(symbackprop.load("apple_orange"), backward=False).dot)
    assert len(forward) == 9 and backward == []


def test_sigmoid_symbolic_is_the_seeds_figure_5_10():
    nodes, forward, backward = parse(graph(symbackprop.load("sigmoid")).dot)
    ops = [nodes[f"op{i}"] for i in range(1, 5)]
    assert ops == ["×(-1)", "exp", "+1", "/"]
    assert [label for *_, label in forward] == ["x", "-x", "exp(-x)", "1 + exp(-x)", "y"]
    assert [label for *_, label in backward] == [
        "∂L/∂y", "-∂L/∂y·y²", "-∂L/∂y·y²", "-∂L/∂y·y²·exp(-x)", "∂L/∂y·y²·exp(-x)"]


def test_collapsed_sigmoid_is_figures_5_11_and_5_12():
    _, _, chosen = parse(graph(symbackprop.load("sigmoid"), collapse=True).dot)
    _, _, product = parse(graph(symbackprop.load("sigmoid"), collapse="product").dot)
    assert chosen[-1][2] == "∂L/∂y·y·(1 - y)"
    assert product[-1][2] == "∂L/∂y·y²·exp(-x)"


def test_symbolic_labels_for_a_declaration_with_values():
    _, forward, backward = parse(graph(symbackprop.load("apple"), symbolic=True).dot)
    assert ("apple_price" in {label for *_, label in forward})
    assert "∂L/∂price·apple_num·tax" in {label for *_, label in backward}


@pytest.mark.parametrize("name", ["apple", "apple_orange"])
def test_numbers_are_short(name):
    _, forward, backward = parse(graph(symbackprop.load(name)).dot)
    for *_, label in forward + backward:
        assert re.fullmatch(r"-?\d+(\.\d{1,6})?", label), label


@pytest.mark.needs("dot")
def test_dot_renders_svg_and_png(tmp_path):
    drawing = graph(symbackprop.load("apple_orange"))
    svg = drawing.svg()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for number in ("715", "650", "2.2", "110", "3.3", "165"):
        assert f">{number}</text>" in svg
    assert drawing.render("png")[:8] == b"\x89PNG\r\n\x1a\n"
    bundle = drawing._repr_mimebundle_()
    assert bundle["image/svg+xml"] == svg and bundle["text/plain"] == drawing.dot
    # the same bytes as dot itself draws, run by hand
    by_hand = subprocess.run([shutil.which("dot"), "-Tsvg"], input=drawing.dot.encode(), capture_output=True, timeout=30)
    assert by_hand.stdout.decode() == svg


@pytest.mark.needs("dot")
def test_graph_command_writes_files_and_never_overwrites(tmp_path, capsys):
    assert main(["graph", "apple_orange"]) == 0
    assert capsys.readouterr().out.startswith('digraph "Apples and oranges"')
    for suffix in ("svg", "png", "dot"):
        out = tmp_path / f"fig.{suffix}"
        assert main(["graph", "apple_orange", "-o", str(out)]) == 0
        assert out.stat().st_size > 100
        before = out.read_bytes()
        assert main(["graph", "sigmoid", "-o", str(out)]) == 2
        assert out.read_bytes() == before
        assert main(["graph", "sigmoid", "--symbolic", "-o", str(out), "--force"]) == 0
    assert main(["graph", "sigmoid", "--collapse"]) == 0
    assert '"layer" [label="sigmoid"' in capsys.readouterr().out
    assert main(["graph", "--expr", "tanh(x)", "--collapse", "product"]) == 0
    assert "∂L/∂y·(1 - y²)" in capsys.readouterr().out
    assert main(["graph", "sigmoid", "-o", str(tmp_path / "fig.jpg")]) == 2
    assert not (tmp_path / "fig.jpg").exists()
    capsys.readouterr()
    assert main(["graph", "affine"]) == 0  # array layers too (tests/explain/test_arrays.py)
    assert capsys.readouterr().out.startswith('digraph "Affine"')


def test_without_graphviz_dot_text_and_a_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "fig.svg"
    result = subprocess.run([sys.executable, "-m", "symbackprop", "graph", "apple_orange", "-o", str(out)],
                            capture_output=True, text=True, timeout=120, env={"PATH": str(tmp_path)})
    assert result.returncode == 2 and not out.exists()
    assert result.stdout.startswith("digraph")
    assert len(result.stderr.strip().splitlines()) == 1 and "apt-get install graphviz" in result.stderr
    drawing = graph(symbackprop.load("sigmoid"))
    assert drawing._repr_svg_() is None and set(drawing._repr_mimebundle_()) == {"text/plain"}
    with pytest.raises(GraphvizMissing):
        drawing.render("svg")


@pytest.mark.needs("dot")
def test_check_markdown_report(tmp_path, capsys):
    report = tmp_path / "report.md"
    assert main(["check", "sigmoid", "apple_orange", "affine", "--examples", "3", "--markdown", str(report)]) == 0
    text = report.read_text()
    assert "no graph" not in text
    for piece in ("## Sigmoid", "`y = 1/(1 + exp(-x))`", "`dx = dout*y*(1 - y)`", "| cache | `y` |",
                  "max rel. error", "![computational graph of Sigmoid](report_files/sigmoid.svg)",
                  "## Apples and oranges", "report_files/apples-and-oranges.svg",
                  "## Affine", "`db = sum(dout, axis=0)`", "![computational graph of Affine](report_files/affine.svg)"):
        assert piece in text
    assert "<svg" in (tmp_path / "report_files" / "sigmoid.svg").read_text()
    affine = (tmp_path / "report_files" / "affine.svg").read_text()
    assert ">N×D</text>" in affine and ">dW</text>" in affine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "report_files"]  # nothing strewn beside it
    assert len(list((tmp_path / "report_files").iterdir())) == 3
    capsys.readouterr()
    assert main(["check", "sigmoid", "--examples", "3", "--markdown", str(report)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["check", "sigmoid", "--examples", "3", "--markdown", str(report), "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert "Apples" not in report.read_text()
