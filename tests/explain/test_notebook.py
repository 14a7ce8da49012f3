"""The chapter 5 notebook runs top to bottom, and shows its figures and formulas.

Executed with nbclient in a temporary folder (a real Jupyter kernel), so that it can never
fall out of date with the package.  Its numbers are held to the seed's (the apples,
``dB = [5, 7, 9]``, ``y - t = (0.3, -0.8, 0.5)``) and to the bars of 5.7.3 and 5.7.4: the
gradient check's mean absolute differences below 1e-9, test accuracy on the digits above 0.9.
"""
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "chapter5.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notebook")
    copy = folder / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return nb, time.perf_counter() - start


def outputs(nb):
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def printed(nb):
    return "".join(o.get("text", "") for o in outputs(nb))


@pytest.mark.needs("dot", "latex", "dvipng")
def test_chapter5_notebook_executes(executed):
    nb, seconds = executed
    assert seconds < 60
    found = outputs(nb)
    assert not [o for o in found if o.output_type == "error"]
    pictures = [o for o in found if "image/svg+xml" in o.get("data", {})]
    formulas = [o for o in found if "text/latex" in o.get("data", {})]
    assert len(pictures) >= 16          # figures 5-1 to 5-4, 5-6 to 5-12, ReLU's, Affine (5-25), the rest of 5.6, 5.7
    assert len(formulas) >= 10          # chain-rule steps and derivations, typeset, scalar and array
    text = printed(nb)
    for seed_output in ("220.00000000000003", "2.2 110.00000000000001 200", "715.0000000000001"):
        assert seed_output in text
    headings = [c.source for c in nb.cells if c.cell_type == "markdown"]
    for section in ("## 5.1", "## 5.2", "## 5.3", "## 5.4", "## 5.5", "## 5.6", "## 5.7", "### 5.6.1", "### 5.6.2",
                    "### 5.6.3", "### 5.7.1", "### 5.7.2", "### 5.7.3", "### 5.7.4"):
        assert any(h.startswith(section) or f"\n{section}" in h for h in headings), section
    assert not any("Comes with the array issue" in h for h in headings)
    assert all(c.source.strip() for c in nb.cells)   # no empty cells


@pytest.mark.needs("dot", "latex", "dvipng")
def test_array_layers_of_section_5_6(executed):
    nb, _ = executed
    text = printed(nb)
    assert "[5. 7. 9.]" in text                          # the seed's batch Affine bias gradient
    assert "dx [[ 0.3 -0.8  0.5]]" in text               # Softmax-with-Loss sends back y - t
    svg = [o["data"]["image/svg+xml"] for o in outputs(nb) if "image/svg+xml" in o.get("data", {})]
    assert any(">N×D</text>" in s and ">dW</text>" in s for s in svg)        # Affine: shapes and statements
    assert any(">dW1</text>" in s and ">a1: N×H</text>" in s for s in svg)   # the two-layer network
    latex = [o["data"]["text/latex"] for o in outputs(nb) if "text/latex" in o.get("data", {})]
    assert any(r"\frac{\partial L}{\partial W} &= x^{T} \frac{\partial L}{\partial y}" in t for t in latex)


def test_gradient_check_and_training_of_section_5_7(executed):
    nb, _ = executed
    text = printed(nb)
    figures = dict(re.findall(r"^(W1|b1|W2|b2): (\S+)   \(complex step", text, re.MULTILINE))
    assert set(figures) == {"W1", "b1", "W2", "b2"}
    assert all(float(v) < 1e-9 for v in figures.values()), figures
    book = re.findall(r"^(W1|b1|W2|b2): (\S+)$", text, re.MULTILINE)      # the book's procedure on three images
    assert len(book) == 4 and all(float(v) < 1e-9 for _, v in book), book
    accuracy = float(re.search(r"final test accuracy (\S+)", text).group(1))
    assert accuracy > 0.9
    plots = [o for o in outputs(nb) if "image/png" in o.get("data", {})]
    assert len(plots) == 1                               # the loss and accuracy curves
