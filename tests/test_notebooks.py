"""Notebooks run top to bottom (on tiny fixtures)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


EXPECTED = {"names.ipynb": ("test/acc", "->"), "tour.ipynb": ("test/acc", '"label"', "empty input")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs(name, env, monkeypatch):
    monkeypatch.setenv("RNNLAB_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("RNNLAB_ROOT", str(ROOT))
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(env)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert all(text in outputs for text in EXPECTED[name]), outputs[-2000:]
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def test_notebooks_are_committed_without_outputs():
    """Diffs stay readable: every committed notebook has its outputs cleared (the tests run them on fixtures)."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in cells), path.name
