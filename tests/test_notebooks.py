"""The notebooks in colabs/ run top to bottom (small settings), so they cannot rot."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # executes the quickstart notebook in a kernel (~40 s)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_executes(tmp_path, digits_dir, monkeypatch):
  monkeypatch.setenv("SSLJAX_QUICKSTART_STEPS", "4")
  monkeypatch.setenv("SSLJAX_QUICKSTART_WORKDIR", str(tmp_path / "run"))
  monkeypatch.setenv("SSLJAX_DATA_DIR", digits_dir)
  path = os.path.join(ROOT, "colabs", "quickstart.ipynb")
  nb = nbformat.read(path, as_version=4)
  client = NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": os.path.join(ROOT, "colabs")}})
  client.execute()
  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
  assert "linear_top1" in text
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) == 2  # the loss/RankMe curves and the 2-D embedding map
  assert os.path.exists(tmp_path / "run" / "results.json")
