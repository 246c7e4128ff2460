"""The tutorial notebook runs top to bottom (nbclient), on a few hundred real images, so it cannot
rot: every cell executes without error and its own checks (asserts) hold."""

import os
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorials" / "batch-norm.ipynb"


@pytest.mark.slow
def test_tutorial_notebook_runs_top_to_bottom(tmp_path, monkeypatch, fashion_mnist):
    monkeypatch.setenv("BNLAB_TUTORIAL_LIMIT", "600")
    monkeypatch.setenv("BNLAB_TUTORIAL_SEEDS", "2")
    monkeypatch.setenv("BNLAB_TUTORIAL_EPOCHS", "1")
    monkeypatch.setenv("BNLAB_TUTORIAL_DIR", str(tmp_path / "work"))
    src = str(Path(__file__).resolve().parents[1] / "src")  # this checkout's bnlab in the kernel
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [src, os.environ.get(
        "PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "largest difference" in text and "bn-after" in text and "Comparisons" in text
    assert "BN layer" in text and "inference" in text  # bnlab check's table
    assert any("image/png" in o.get("data", {}) for o in outputs)
    runs = tmp_path / "work" / "runs" / "bn-placement"
    assert (runs / "curves.png").stat().st_size > 10_000
    assert len(list((runs / "models").glob("bn-after-s1-*.keras"))) == 1  # ARM-sSEED-TRIALID
