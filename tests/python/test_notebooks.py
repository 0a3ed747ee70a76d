"""notebooks/: valid nbformat, executed top to bottom with nbclient against
a tiny synthetic model (paths through BITNET_MODEL/BITNET_TOKENIZER, read in
each notebook's one paths cell), with no errors and with their plots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
NAMES = ["01_basic_migration", "02_advanced_features", "03_production_deployment"]
TOPICS = {
    "01_basic_migration": ["Setup", "API compatibility", "Migration utilities", "Performance comparison"],
    "02_advanced_features": ["Async/await", "Streaming", "Batch processing", "Sampling strategies",
                             "Memory monitoring", "Errors"],
    "03_production_deployment": ["Production configuration", "Docker", "Load balancing", "Monitoring",
                                 "Security"],
}


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name: str, model_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    monkeypatch.setenv("PYTHONPATH", str(REPO / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    headings = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for topic in TOPICS[name]:
        assert topic in headings, topic
    path_cells = [c for c in nb.cells if c.cell_type == "code" and "MODEL_PATH =" in c.source]
    assert len(path_cells) == 1  # paths are set in one cell
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stored without outputs
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot"
