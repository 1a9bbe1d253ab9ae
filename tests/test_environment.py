"""The dependency lists agree, and the set-up installs what each command needs.

pyproject.toml declares the dependencies (what a scheduled server needs for `make reports`) and the `lab` and
`test` extras; requirements/constraints.txt pins every one of them and everything they pull in (plus the
installers uv and pip the Makefile uses); environment.yml lists the same packages at the same versions for
conda users; the Makefile installs no extras for `make reports` and all of them for `make test`, prints one
timed line per set-up step (the whole output when a step fails) and hands pip's index settings to uv.
"""
import ast
import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from the PyPI name
CONDA_NAMES = {"duckdb": "python-duckdb"}
# what the Makefile installs besides the project (pinned in the lock, not dependencies of the kit)
INSTALLERS = {"uv", "pip"}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements) -> set[str]:
    return {_canon(Requirement(r).name) for r in requirements}


def _core_packages() -> set[str]:
    return _names(_project()["dependencies"])


def _extras() -> dict[str, set[str]]:
    return {extra: _names(reqs) for extra, reqs in _project()["optional-dependencies"].items()}


def _pyproject_packages() -> set[str]:
    return _core_packages().union(*_extras().values())


def _locked_versions() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements/constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version and ";" not in version, f"requirements/constraints.txt: not an exact pin: {line!r}"
            pins[_canon(name)] = version.strip()
    return pins


def _conda_versions() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name, _, version = dep.partition("=")
            out[_canon(name)] = version
    return out


def _makefile_extras() -> dict[str, list[str]]:
    """``EXTRAS_<command> := a,b`` lines of the Makefile: the extras each command's set-up installs."""
    found = re.findall(r"^EXTRAS_(\w+)\s*:?=[ \t]*(.*)$", (ROOT / "Makefile").read_text(), flags=re.M)
    return {command: [e.strip() for e in value.split(",") if e.strip()] for command, value in found}


def test_every_dependency_is_locked():
    locked = _locked_versions()
    missing = sorted(p for p in _pyproject_packages() | INSTALLERS if p not in locked)
    assert not missing, f"in pyproject.toml or installed by the Makefile but not pinned in requirements/constraints.txt: {missing}"


def test_environment_yml_matches_pyproject_and_lock():
    locked, conda = _locked_versions(), _conda_versions()
    problems = []
    for pkg in sorted(_pyproject_packages()):
        conda_name = _canon(CONDA_NAMES.get(pkg, pkg))
        if conda_name not in conda:
            problems.append(f"{pkg}: missing from environment.yml (as {conda_name})")
        elif conda[conda_name] != locked.get(pkg):
            problems.append(f"{pkg}: environment.yml has {conda[conda_name]}, lock has {locked.get(pkg)}")
    extra = set(conda) - {_canon(CONDA_NAMES.get(p, p)) for p in _pyproject_packages()} - {"python", "pip"}
    problems += [f"{e}: in environment.yml but not a dependency in pyproject.toml" for e in sorted(extra)]
    assert not problems, "\n".join(problems)


def test_environment_python_matches_requires_python():
    floor = _project()["requires-python"].removeprefix(">=")
    assert _conda_versions()["python"] == floor


def test_scheduled_server_dependencies_leave_out_lab_and_test_tools():
    """`make reports` installs the dependencies only: JupyterLab and the test tools are extras."""
    core, extras = _core_packages(), _extras()
    assert set(extras) == {"lab", "test", "spark"}
    assert "jupyterlab" in extras["lab"]
    assert {"pytest", "pytest-xdist", "nbval", "hypothesis", "websocket-client"} <= extras["test"]
    both = sorted(core & set().union(*extras.values()))
    assert not both, f"both a dependency and in an extra: {both}"
    assert not core & {"jupyterlab", "notebook", "pytest", "hypothesis", "nbval"}


def test_makefile_installs_no_extra_for_reports_and_every_extra_for_test():
    by_command = _makefile_extras()
    assert set(by_command) == {"reports", "lab", "test"}, by_command
    declared = set(_extras())
    for command, extras in by_command.items():
        unknown = set(extras) - declared
        assert not unknown, f"Makefile EXTRAS_{command} names extras pyproject.toml does not declare: {unknown}"
    assert by_command["reports"] == []
    assert by_command["lab"] == ["lab"]
    # CI runs `make test`: it installs (and so checks) the whole environment, JupyterLab included
    assert set(by_command["test"]) == declared


def _third_party_imports(source: str) -> set[str]:
    """Top-level module names imported anywhere in ``source`` (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"helpers", "__future__"}


def _report_code() -> dict[str, str]:
    """What runs on a scheduled server: the library and the report notebooks' code cells."""
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "src/helpers").rglob("*.py"))}
    for nb_path in sorted((ROOT / "notebooks/reports").glob("*.ipynb")):
        cells = json.loads(nb_path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        # IPython magics and shell escapes are not Python
        sources[str(nb_path.relative_to(ROOT))] = "\n".join(
            "" if line.lstrip().startswith(("%", "!")) else line for line in code.splitlines())
    return sources


def _closure(roots: set[str], extras: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """Installed distributions ``roots`` pull in (markers evaluated here), each with the extras asked of it."""
    wanted = {name: set((extras or {}).get(name, ())) for name in roots}
    processed: dict[str, set[str]] = {}
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if processed.get(name) == wanted[name]:
            continue
        processed[name] = set(wanted[name])
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # the callers report what is not installed
        envs = [{"extra": e} for e in sorted(wanted[name])] or [{"extra": ""}]
        for spec in requires:
            req = Requirement(spec)
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            dep = _canon(req.name)
            wanted.setdefault(dep, set()).update(req.extras)
            if processed.get(dep) != wanted[dep]:
                todo.append(dep)
    return wanted


def _pyproject_extras_of_dependencies() -> dict[str, set[str]]:
    project = _project()
    reqs = list(project["dependencies"]) + [r for rs in project["optional-dependencies"].values() for r in rs]
    out: dict[str, set[str]] = {}
    for r in reqs:
        req = Requirement(r)
        out.setdefault(_canon(req.name), set()).update(req.extras)
    return out


# modules that are the adapter of an optional extra (imported only when that extra is used): they may also import
# what the extra installs (the Spark engine: pyspark and sqlglot, imported inside its functions)
OPTIONAL_EXTRA_MODULES = {"src/helpers/engine/spark_engine.py": "spark"}


def test_report_code_imports_only_what_make_reports_installs():
    """A scheduled server has no JupyterLab and no test tools: the library and report notebooks must not
    import them (or anything else outside the dependencies' closure)."""
    core_closure = set(_closure(_core_packages()))
    by_module = metadata.packages_distributions()
    problems = []
    for where, source in _report_code().items():
        allowed = core_closure
        if where in OPTIONAL_EXTRA_MODULES:
            allowed = core_closure | set(_closure(_extras()[OPTIONAL_EXTRA_MODULES[where]]))
        for module in sorted(_third_party_imports(source)):
            dists = {_canon(d) for d in by_module.get(module, [])}
            if not dists:
                problems.append(f"{where}: imports {module!r}, which no installed distribution provides")
            elif not dists & allowed:
                problems.append(f"{where}: imports {module!r} (from {sorted(dists)}), not installed by `make reports`")
    assert not problems, "\n".join(problems)


def test_installed_environment_is_the_lock():
    """Every package the kit needs with all its extras is pinned, and installed at the pinned version."""
    locked = _locked_versions()
    needed = _closure(_pyproject_packages(), _pyproject_extras_of_dependencies())
    problems = []
    for name in sorted(needed):
        if name not in locked:
            problems.append(f"{name}: needed but not pinned in requirements/constraints.txt (run `make lock`)")
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: pinned but not installed (run `make test`, which installs every extra)")
            continue
        if installed != locked[name]:
            problems.append(f"{name}: installed {installed}, locked {locked[name]}")
    assert not problems, "\n".join(problems)


# --- the Makefile's machinery, run through make itself -------------------------------------------------------

def _make(tmp_path, recipe: str, target: str, env: dict | None = None, args=()) -> subprocess.CompletedProcess:
    """Run ``target`` of a makefile that includes the project's Makefile (cwd: the repository)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    mk = tmp_path / "probe.mk"
    mk.write_text(f"include {ROOT / 'Makefile'}\n{recipe}")
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("PIP_", "UV_", "MAKE", "MFLAGS")) and k not in {"SSL_CERT_FILE", "V"}}
    return subprocess.run(["make", "--no-print-directory", "-f", str(mk), target, *args], cwd=ROOT,
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=120)


STEP_RECIPES = """
probe-ok:
\t@$(call step,1/2,saying hello,echo hello; echo noise >&2)
probe-fail:
\t@$(call step,2/2,failing,echo first line; echo second line >&2; exit 3)
\t@echo not reached
"""


def test_make_step_prints_one_timed_line_and_hides_the_output(tmp_path):
    done = _make(tmp_path, STEP_RECIPES, "probe-ok")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\[1/2\] saying hello \.\.\. \d+\.\d s\n", done.stdout), done.stdout
    assert "noise" not in done.stderr


def test_make_step_shows_the_whole_output_and_stops_when_the_command_fails(tmp_path):
    done = _make(tmp_path, STEP_RECIPES, "probe-fail")
    assert done.returncode != 0
    assert "[2/2] failing ... FAILED (exit 3):" in done.stdout
    assert "first line\nsecond line" in done.stderr
    assert "not reached" not in done.stdout + done.stderr


def test_make_step_shows_everything_with_v1(tmp_path):
    done = _make(tmp_path, STEP_RECIPES, "probe-ok", args=["V=1"])
    assert done.returncode == 0, done.stderr
    assert "[1/2] saying hello\nhello\n[1/2] done in " in done.stdout
    assert "noise" in done.stderr


UV_ENV_RECIPE = """
probe-uv-env:
\t@$(uv_env_from_pip); env | grep -E '^(UV_[A-Z_]+|SSL_CERT_FILE)=' | sort
"""


def _uv_env(tmp_path, env) -> dict[str, str]:
    done = _make(tmp_path, UV_ENV_RECIPE, "probe-uv-env", env={"PIP_CONFIG_FILE": os.devnull, **env})
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def test_uv_gets_the_indexes_pip_is_configured_with(tmp_path):
    got = _uv_env(tmp_path, {"PIP_INDEX_URL": "https://mirror.example/simple",
                             "PIP_EXTRA_INDEX_URL": "file:///srv/a file:///srv/b",
                             "PIP_FIND_LINKS": "/srv/wheels /srv/more", "PIP_CERT": "/srv/ca.pem"})
    assert got == {"UV_INDEX_URL": "https://mirror.example/simple",
                   "UV_EXTRA_INDEX_URL": "file:///srv/a file:///srv/b",
                   "UV_INDEX_STRATEGY": "unsafe-best-match",  # pip's rule: best version across all indexes
                   "UV_FIND_LINKS": "/srv/wheels,/srv/more",
                   "SSL_CERT_FILE": "/srv/ca.pem"}


def test_uv_settings_win_over_pip_and_plain_pypi_sets_nothing(tmp_path):
    assert _uv_env(tmp_path, {}) == {}
    got = _uv_env(tmp_path, {"PIP_INDEX_URL": "https://mirror.example/simple",
                             "UV_INDEX_URL": "https://other.example/simple"})
    assert got == {"UV_INDEX_URL": "https://other.example/simple"}
