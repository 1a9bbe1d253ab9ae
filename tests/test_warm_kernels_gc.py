"""Warm kernels forked from the fork server do not scan the preloaded modules' objects in their garbage
collections (``gc.freeze()`` in the server after the preload)."""
import sys

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")), reason="fork server: POSIX only")


def test_a_forked_kernel_starts_with_the_preloaded_objects_frozen():
    from helpers.reports.warm_kernels import ForkServer, fork_kernel_manager_class

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import gc\nprint(gc.get_freeze_count())"))
    with ForkServer() as server:
        client = NotebookClient(nb, kernel_name="python3", timeout=120,
                                kernel_manager_class=fork_kernel_manager_class(server.socket_path))
        client.execute()
    frozen = int(nb.cells[0].outputs[0]["text"].strip())
    assert frozen > 100_000  # pandas, numpy, scipy, statsmodels, matplotlib, the kit...


def test_a_forked_kernel_imports_almost_nothing_itself():
    """Whatever a kernel imports after the fork it pays for in every report. Before ipykernel.debugger was
    preloaded, each kernel imported debugpy (~130 modules, 0.16 s CPU) while starting."""
    from helpers.reports.warm_kernels import ForkServer, fork_kernel_manager_class

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(
        "import sys, json\n"
        "from helpers.reports import warm_kernels\n"
        "print(json.dumps(sorted(set(sys.modules) - warm_kernels.FORKED_WITH_MODULES)))"))
    with ForkServer() as server:
        client = NotebookClient(nb, kernel_name="python3", timeout=120,
                                kernel_manager_class=fork_kernel_manager_class(server.socket_path))
        client.execute()
    import json
    imported = json.loads(nb.cells[0].outputs[0]["text"])
    assert not [m for m in imported if m.split(".")[0] in ("debugpy", "_pydevd_bundle", "pydevd")
                or m.startswith("ipykernel.")], imported
    assert len(imported) < 40, imported  # the inline backend and a few small modules, not a library
