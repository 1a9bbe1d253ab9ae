"""The papermill engine of report runs: papermill's own (nbclient), writing the executed notebook when the run
ends instead of at every cell's start and end.

papermill writes the whole executed notebook (JSON with every chart as base64) at the start, at each cell's
start and at each cell's end: about 55 writes of a notebook growing to 1-2 MB per department page, ~0.5 s of
each page's time. A report run only reads the executed notebook after the run, so :class:`FinalSaveEngine`
writes it once at the end, which papermill does in a ``finally`` whatever happened (completed, a cell error, a
kernel that died, a cell timeout): the cell statuses the error page reads (which cell ran, which failed) are all
in that write. A cell that runs long is still saved every ``autosave_cell_every`` seconds (papermill's autosave
on output, 30 s by default), so a run stopped from outside leaves a recent notebook.

Used by :func:`helpers.reports.runner.execute_report` as ``engine_name=ENGINE_NAME``.
"""
from __future__ import annotations

from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

ENGINE_NAME = "kit-final-save"


class FinalSaveExecutionManager(NotebookExecutionManager):
    """papermill's execution manager without the writes at notebook start and at each cell's start and end;
    the final write (:meth:`notebook_complete`) and the periodic autosave stay."""

    _deferring = False

    def save(self, **kwargs):
        if self._deferring:
            return
        super().save(**kwargs)

    def _without_save(self, method, *args, **kwargs):
        self._deferring = True
        try:
            return method(*args, **kwargs)
        finally:
            self._deferring = False

    def notebook_start(self, **kwargs):
        return self._without_save(super().notebook_start, **kwargs)

    def cell_start(self, cell, cell_index=None, **kwargs):
        return self._without_save(super().cell_start, cell, cell_index, **kwargs)

    def cell_complete(self, cell, cell_index=None, **kwargs):
        return self._without_save(super().cell_complete, cell, cell_index, **kwargs)


class FinalSaveEngine(NBClientEngine):
    """:class:`papermill.engines.NBClientEngine` with :class:`FinalSaveExecutionManager` (papermill's
    ``Engine.execute_notebook`` builds its manager inline, so its eight lines are repeated here)."""

    @classmethod
    def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False,
                         autosave_cell_every=30, **kwargs):
        nb_man = FinalSaveExecutionManager(nb, output_path=output_path, progress_bar=progress_bar,
                                           log_output=log_output, autosave_cell_every=autosave_cell_every)
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


papermill_engines.register(ENGINE_NAME, FinalSaveEngine)

__all__ = ["ENGINE_NAME", "FinalSaveEngine", "FinalSaveExecutionManager"]
