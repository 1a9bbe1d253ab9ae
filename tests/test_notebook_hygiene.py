"""Notebook hygiene: committed without outputs, a kernel that `make lab` registers, no logic in notebooks,
exactly one documented `parameters` cell in every report notebook."""
import ast
import io
import re
import tokenize
from pathlib import Path

import nbformat
import papermill
import pytest

from helpers.notebooks import hygiene_problems, strip_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").rglob("*.ipynb"))
REPORT_NOTEBOOKS = [p for p in NOTEBOOKS if p.parent.name == "reports"]
EXPECTED_REPORTS = {"department_report.ipynb", "satisfaction_drivers.ipynb", "retention_forecast.ipynb"}


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def _code(cell) -> str:
    """Cell source with IPython magics and shell escapes blanked so `ast` can parse it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())


def test_notebooks_exist():
    assert any(p.parent.name == "exploratory" for p in NOTEBOOKS)
    present = {p.name for p in REPORT_NOTEBOOKS}
    assert EXPECTED_REPORTS <= present, f"missing report notebooks: {EXPECTED_REPORTS - present}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    problems = hygiene_problems(nb)
    assert not problems, f"{problems}: run `.venv/bin/python -m helpers.notebooks strip {path}`"


def test_hygiene_check_catches_outputs_and_strip_removes_them():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("x = 1", execution_count=3,
                                  outputs=[nbformat.v4.new_output("stream", text="noise")]),
    ])
    assert hygiene_problems(nb) == ["cell 1 has committed outputs", "cell 1 has an execution count"]
    strip_notebook(nb)
    assert hygiene_problems(nb) == []
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None and nb.cells[1].source == "x = 1"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_kernelspec_is_the_kits(path):
    nb = nbformat.read(path, as_version=4)
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    makefile = (ROOT / "Makefile").read_text()
    registered = re.search(r"^KERNEL := (\S+)", makefile, re.M).group(1)
    assert re.search(r"ipykernel install --sys-prefix\s*\\?\s*--name \$\(KERNEL\)", makefile), \
        "the Makefile must register the kernel (ipykernel install --sys-prefix --name $(KERNEL))"
    assert kernel == registered, f"kernelspec {kernel!r}; `make lab` registers {registered!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_logic_in_notebooks(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tree = ast.parse(_code(cell))
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        assert not defs, f"cell {i} defines {[d.name for d in defs]}: move it into src/helpers/ with a test"


@pytest.mark.parametrize("path", REPORT_NOTEBOOKS, ids=_ids(REPORT_NOTEBOOKS))
def test_report_parameters_are_typed_and_documented(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{len(tagged)} cells tagged 'parameters'; expected exactly one"
    source = tagged[0].source
    tree = ast.parse(source)
    comments = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    for node in tree.body:
        assert isinstance(node, ast.AnnAssign), (
            f"line {node.lineno} of the parameters cell is not `name: type = value  # help`")
        assert node.lineno in comments, f"parameter {ast.unparse(node.target)} has no comment"
    params = papermill.inspect_notebook(str(path))
    for name in ("data_source", "report_config", "as_of", "run_id", "summary_path"):
        assert name in params, f"report notebooks take {name!r}"
    for name, spec in params.items():
        assert spec["inferred_type_name"] not in ("None", ""), f"{name} has no type"
        assert spec["help"], f"{name} has no help text"
