"""The report runs' papermill engine writes the executed notebook once, at the end, whatever happened."""
from __future__ import annotations

import nbformat
import papermill
import papermill.engines
import pytest

from helpers.reports import export
from helpers.reports.papermill_engine import ENGINE_NAME


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A page")]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def writes(monkeypatch):
    """Paths written by papermill's execution manager (its saves during the run)."""
    written = []
    real = papermill.engines.write_ipynb

    def counting(nb, path):
        written.append(path)
        return real(nb, path)

    monkeypatch.setattr(papermill.engines, "write_ipynb", counting)
    return written


def test_default_engine_writes_at_every_cell_and_ours_once(tmp_path, writes):
    source = _notebook(tmp_path / "in.ipynb", "x = 1", "print(x + 1)", "x * 3")
    papermill.execute_notebook(str(source), str(tmp_path / "default.ipynb"), kernel_name="python3",
                               progress_bar=False)
    default_writes = len(writes)
    writes.clear()
    executed = papermill.execute_notebook(str(source), str(tmp_path / "ours.ipynb"), kernel_name="python3",
                                          progress_bar=False, engine_name=ENGINE_NAME)
    assert default_writes >= 2 * 4  # papermill: start + each of 4 cells' start and end + end
    assert len(writes) == 1  # the final write in papermill's `finally`
    saved = nbformat.read(str(tmp_path / "ours.ipynb"), as_version=4)
    assert [c.get("outputs") for c in saved.cells] == [c.get("outputs") for c in executed.cells]
    assert saved.cells[2].outputs[0]["text"] == "2\n"
    assert saved.cells[3].outputs[0]["data"]["text/plain"] == "3"
    assert all(c.metadata.papermill["status"] == "completed" for c in saved.cells)


def test_a_cell_error_is_saved_with_its_cell(tmp_path, writes):
    source = _notebook(tmp_path / "in.ipynb", "x = 1", "raise KeyError('missed')", "x")
    with pytest.raises(papermill.PapermillExecutionError):
        papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                   progress_bar=False, engine_name=ENGINE_NAME)
    saved = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4)
    details = export.failure_details(saved, {"kind": "error"})
    assert details["error_name"] == "KeyError"
    assert "raise KeyError" in details["failing_source"]


def test_a_dead_kernel_is_saved_with_the_cell_it_died_in(tmp_path, writes):
    source = _notebook(tmp_path / "in.ipynb", "x = 1", "import os\nos._exit(1)", "x")
    with pytest.raises(Exception) as caught:
        papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                   progress_bar=False, engine_name=ENGINE_NAME)
    assert "DeadKernel" in type(caught.value).__name__
    assert len(writes) == 1
    saved = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4)
    details = export.failure_details(saved, {"kind": "dead kernel", "name": "DeadKernelError"})
    assert details["where"] == "kernel died in cell 3 of 4"  # the markdown cell is cell 1
    assert "os._exit" in details["failing_source"]
