"""The three dependency lists (pyproject.toml, requirements/constraints.txt, environment.yml) agree."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from the PyPI name
CONDA_NAMES = {"duckdb": "python-duckdb"}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    return {_canon(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in deps}


def _locked_versions() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements/constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_canon(name)] = version
    return pins


def _conda_versions() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name, _, version = dep.partition("=")
            out[_canon(name)] = version
    return out


def test_every_dependency_is_locked():
    locked = _locked_versions()
    missing = sorted(p for p in _pyproject_packages() if p not in locked)
    assert not missing, f"in pyproject.toml but not pinned in requirements/constraints.txt: {missing}"


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
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor = project["requires-python"].removeprefix(">=")
    assert _conda_versions()["python"] == floor
