"""Notebooks run top to bottom (on tiny fixtures)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["names.ipynb"])
def test_notebook_runs(name, env, monkeypatch):
    monkeypatch.setenv("RNNLAB_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("RNNLAB_ROOT", str(ROOT))
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(env)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "test/acc" in outputs and "->" in outputs
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
