"""The warm-kernel server's preload (helpers.reports.warm_kernels.PRELOAD_MODULES): every module imports, and the
kit's own modules in it do nothing at import that depends on the process a kernel will be (its environment, its
working directory, its files), so importing them once in the server gives each forked kernel what a cold kernel
would get by importing them itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers.reports.warm_kernels import PRELOAD_MODULES

SRC = str(Path(__file__).resolve().parents[1] / "src" / "helpers")

PROBE = r"""
import builtins, json, os, sys
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"   # as in every kernel and the server
modules = json.loads(sys.argv[1])
src = sys.argv[2]
third_party = [m for m in modules if not m.startswith("helpers")]
failed = []
for m in third_party:
    try:
        __import__(m)
    except Exception as exc:
        failed.append(f"{m}: {type(exc).__name__}: {exc}")
reads = []
def from_helpers():
    # the helpers file:line that asked, when the first caller outside os / collections.abc is the kit
    f = sys._getframe(2)
    while f is not None and ("_collections_abc" in f.f_code.co_filename or f.f_code.co_filename.endswith("os.py")):
        f = f.f_back
    if f is not None and f.f_code.co_filename.startswith(src):
        return f.f_code.co_filename + ":" + str(f.f_lineno)
    return None
class Watched(type(os.environ)):
    def __getitem__(self, key):
        where = from_helpers()
        if where:
            reads.append(f"environ[{key!r}] at {where}")
        return super().__getitem__(key)
os.environ.__class__ = Watched
real_getcwd = os.getcwd
def getcwd():
    where = from_helpers()
    if where:
        reads.append(f"getcwd at {where}")
    return real_getcwd()
os.getcwd = getcwd
def audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)) and not str(args[0]).endswith((".py", ".pyc", ".so")):
        where = from_helpers()
        if where:
            reads.append(f"open {args[0]!r} at {where}")
sys.addaudithook(audit)
for m in modules:
    if m.startswith("helpers"):
        try:
            __import__(m)
        except Exception as exc:
            failed.append(f"{m}: {type(exc).__name__}: {exc}")
print(json.dumps({"failed": failed, "reads": reads}))
"""


def test_preloaded_modules_import_and_the_kits_read_nothing_of_the_process_at_import(tmp_path):
    assert any(m.startswith("helpers.") for m in PRELOAD_MODULES)
    assert PRELOAD_MODULES.index("ipykernel.kernelapp") < min(
        PRELOAD_MODULES.index(m) for m in PRELOAD_MODULES if m.startswith("helpers"))
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(PRELOAD_MODULES)), SRC], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["failed"] == []
    # helpers.charts reads MPLBACKEND (set alike in the server and in every kernel); nothing else
    assert [r for r in got["reads"] if "'MPLBACKEND'" not in r] == []


def test_the_probe_sees_a_module_that_reads_the_environment_at_import(tmp_path):
    """The check above can fail: a module of the kit that reads a variable at import is caught."""
    pkg = tmp_path / "helpers_probe_src"
    (pkg / "helpers").mkdir(parents=True)
    (pkg / "helpers" / "__init__.py").write_text("")
    (pkg / "helpers" / "envreader.py").write_text("import os\nDATA = os.environ['HOME']\n")
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(["json", "helpers.envreader"]),
                           str(pkg / "helpers")], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(pkg)})
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert any("'HOME'" in r for r in got["reads"])
