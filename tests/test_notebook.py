"""The chapter 5 notebook runs top to bottom, and shows its figures and formulas.

Executed with nbclient in a temporary folder (a real Jupyter kernel), so that it can never
fall out of date with the package.
"""
import shutil
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "chapter5.ipynb"


def test_chapter5_notebook_executes(tmp_path):
    copy = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/svg+xml" in o.get("data", {})]
    formulas = [o for o in outputs if "text/latex" in o.get("data", {})]
    assert len(pictures) >= 12          # figures 5-1 to 5-4, 5-6 to 5-12 and ReLU's
    assert len(formulas) >= 5           # chain-rule steps and derivations, typeset
    text = "".join(o.get("text", "") for o in outputs)
    for seed_output in ("220.00000000000003", "2.2 110.00000000000001 200", "715.0000000000001"):
        assert seed_output in text
    headings = [c.source for c in nb.cells if c.cell_type == "markdown"]
    for section in ("## 5.1", "## 5.2", "## 5.3", "## 5.4", "## 5.5", "## 5.6", "## 5.7"):
        assert any(h.startswith(section) or f"\n{section}" in h for h in headings)
    assert all(c.source.strip() for c in nb.cells)   # no empty cells
