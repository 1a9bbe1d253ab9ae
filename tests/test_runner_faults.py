"""The report runner under faults (issue 16): signals, orphans, locks, disk full, read-only output, bad
department sets, dead kernels and timeouts, and the documented exit codes.

Signal tests run ``python -m helpers.reports run`` in a subprocess on a tiny fake notebook
(tests/reports_support.write_fake_notebooks) and find every process of the run by a marker in its environment
(/proc; psutil is not installed). Disk full is injected at the write points (an ``OSError(ENOSPC)``); a
read-only output folder is a real read-only bind mount in a private mount namespace (``unshare -m``), with an
injected ``EACCES`` as the portable variant.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from helpers.errors import DataContractError
from helpers.reports import (EXIT_ENVIRONMENT, RunEnvironmentError, export, runner)
from helpers.reports.__main__ import main as cli_main
from reports_support import (REPO, fake_previous_run, processes_with_marker, write_fake_notebooks, write_params)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("reports_e2e")]

DEPARTMENTS = {"sales": "Sales", "delivery": "Delivery", "billing": "Billing"}


@pytest.fixture
def setup(tmp_path, small_demo):
    params = write_params(tmp_path, DEPARTMENTS)
    notebooks = write_fake_notebooks(tmp_path / "notebooks")
    out = tmp_path / "reports"
    out.mkdir()
    previous = fake_previous_run(out)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    return {"params": params, "notebooks": notebooks, "out": out, "data": small_demo, "previous": previous,
            "tmpdir": tmpdir, "root": tmp_path}


def _cli_args(s, *extra) -> list[str]:
    return ["run", "--params", str(s["params"]), "--data", str(s["data"]), "--out", str(s["out"]),
            "--notebooks", str(s["notebooks"]), "--no-company", *extra]


def _start(s, *extra, marker: str) -> subprocess.Popen:
    env = dict(os.environ, KIT_TEST_MARKER=marker, TMPDIR=str(s["tmpdir"]),
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "helpers.reports", *_cli_args(s, *extra)], cwd=str(REPO),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _kernel_started(s, department: str = "billing") -> int:
    """Wait until the report's kernel runs the long cell; returns the kernel's pid."""
    def started():
        for marker in s["out"].glob(f".tmp-*/started-{department}"):
            text = marker.read_text().strip()
            if text:
                return int(text)
        return 0
    return started


def _no_process_left(marker: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while processes_with_marker(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with_marker(marker) == []


def _holding(path: Path, pids: list[int]) -> list[int]:
    """The pids among ``pids`` with an open descriptor on ``path``."""
    holders = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == str(path):
                    holders.append(pid)
                    break
            except OSError:
                continue
    return sorted(holders)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# ---------------------------------------------------------------------------------------------- signals

@pytest.mark.parametrize("signum, kernels", [(signal.SIGTERM, "warm"), (signal.SIGINT, "cold")])
def test_sigterm_and_sigint_stop_the_run_cleanly(setup, signum, kernels):
    """Regression (item 4): after SIGTERM the workers and the fork server kept running and writing into
    .tmp-<run>, kit-forksrv-* folders were left and nothing was printed."""
    marker = uuid.uuid4().hex
    extra = ("--cold-kernels",) if kernels == "cold" else ()
    proc = _start(setup, "--only", "billing", "--workers", "1", *extra, marker=marker)
    try:
        kernel_pid = _wait_for(_kernel_started(setup), 180, "the kernel to start", proc)
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole process group
        else:
            proc.send_signal(signum)
        _stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"interrupted ({signal.Signals(signum).name})"), stderr
    assert f"still points at {setup['previous']}" in lines[-1]
    assert "Traceback" not in stderr
    assert not list(setup["out"].glob(".tmp-*"))
    assert os.readlink(setup["out"] / "latest") == setup["previous"]
    _no_process_left(marker, timeout=5)
    assert not _alive(kernel_pid)
    assert not list(setup["tmpdir"].glob("kit-forksrv-*"))
    # the lock was released: the next run does not wait
    assert cli_main(_cli_args(setup, "--only", "sales", "--cold-kernels", "--if-locked", "fail")) == 0


@pytest.mark.parametrize("kernels", ["warm", "cold"])
def test_after_sigkill_every_helper_process_exits_and_the_next_run_cleans_up(setup, kernels, capsys):
    """Regression (item 4): after SIGKILL of the runner its pool workers and fork server ran on for good, and
    the .tmp-<run> folder stayed until it was a day old."""
    marker = uuid.uuid4().hex
    extra = ("--cold-kernels",) if kernels == "cold" else ()
    proc = _start(setup, "--only", "billing", "--workers", "1", *extra, marker=marker)
    try:
        kernel_pid = _wait_for(_kernel_started(setup), 180, "the kernel to start", proc)
        helpers_before = processes_with_marker(marker)
        assert len(helpers_before) >= 3  # runner, worker, kernel (+ fork server and fork client when warm)
        # only the runner holds the output folder's lock: a lingering helper must not keep the next run out
        assert _holding(setup["out"] / ".lock", [pid for pid, _ in helpers_before]) == [proc.pid]
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    _no_process_left(marker, timeout=10)
    # a process in the middle of exiting no longer shows its environment (so no marker) but is not a zombie yet
    deadline = time.monotonic() + 10
    while _alive(kernel_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(kernel_pid)
    assert not list(setup["tmpdir"].glob("kit-forksrv-*"))  # the server removed its folder on the way out
    left = list(setup["out"].glob(".tmp-*"))
    assert len(left) == 1  # nothing could remove it: the runner was killed
    mtime = max(p.stat().st_mtime for p in left[0].rglob("*"))
    time.sleep(1.5)
    assert max(p.stat().st_mtime for p in left[0].rglob("*")) == mtime  # nobody writes into it any more
    # the next run holds the lock, so the leftover is stale: removed at once (not after 24 h)
    capsys.readouterr()
    assert cli_main(_cli_args(setup, "--only", "sales", "--cold-kernels")) == 0
    assert not list(setup["out"].glob(".tmp-*"))
    assert f"removed what an interrupted run left in {setup['out']}: {left[0].name}" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- the lock

def _hold_lock(out: Path, run_id: str = "other-run"):
    import fcntl
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"pid": 4242, "run_id": run_id, "started_at": "2026-11-30T06:00:00+00:00"}).encode())
    return fd


def test_a_locked_output_folder_fails_with_a_clear_message(setup, capsys):
    fd = _hold_lock(setup["out"])
    try:
        code = cli_main(_cli_args(setup, "--only", "sales", "--cold-kernels"))
    finally:
        os.close(fd)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_ENVIRONMENT == 3
    assert err[-1].startswith(f"error: {setup['out']}: another report run is writing there (pid 4242, run "
                              "other-run")
    assert "--if-locked wait" in err[-1]
    assert sorted(p.name for p in setup["out"].iterdir()) == [".lock", setup["previous"], "latest"]


def test_if_locked_wait_waits_for_the_other_run(setup):
    fd = _hold_lock(setup["out"])
    released = []

    def release():
        time.sleep(1.0)
        released.append(time.monotonic())
        os.close(fd)

    calls = []

    def data_preparer(*a):  # runs only once the lock is ours; a data error then ends the run (exit 2)
        calls.append(time.monotonic())
        raise DataContractError("responses", "deliberately invalid")

    messages: list[str] = []
    threading.Thread(target=release, daemon=True).start()
    opts = runner.RunOptions(params=setup["params"], data=str(setup["data"]), out=setup["out"],
                             notebooks=setup["notebooks"], only=["sales"], company_reports=False,
                             warm_kernels=False, if_locked="wait", progress=False)
    with pytest.raises(DataContractError):
        runner.run_reports(opts, data_preparer=data_preparer, echo=messages.append)
    assert released and calls and calls[0] >= released[0]
    assert any(m.startswith(f"waiting for the other run in {setup['out']}") for m in messages)
    assert not list(setup["out"].glob(".tmp-*"))  # its own temporary folder removed on the data error


def test_if_locked_wait_gives_up_after_the_lock_timeout(setup, capsys):
    """Regression (issue 11 item 7): --if-locked wait waited forever behind a stuck run."""
    fd = _hold_lock(setup["out"])
    try:
        t0 = time.monotonic()
        code = cli_main(_cli_args(setup, "--only", "sales", "--cold-kernels", "--if-locked", "wait",
                                  "--lock-timeout", "1.5"))
        waited = time.monotonic() - t0
    finally:
        os.close(fd)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_ENVIRONMENT
    assert waited >= 1.5
    assert err[-1].startswith(f"error: {setup['out']}: another report run still holds the output folder after 1.5 s "
                              "(pid 4242, run other-run")
    assert "gave up waiting (--lock-timeout)" in err[-1]
    assert sorted(p.name for p in setup["out"].iterdir()) == [".lock", setup["previous"], "latest"]


def test_console_messages_carry_no_terminal_control_characters(setup, capsys):
    """Regression (issue 11 item 7): department names from the data were printed raw, so a name with an escape
    sequence could clear or recolour the operator's terminal."""
    import pandas as pd
    data = setup["out"].parent / "ctl-data"
    shutil.copytree(setup["data"], data)
    hostile = "Evil\x1b[2J\x1b]0;pwned\x07 Dept\r\x9b31m"
    for table in ("responses", "tickets", "org"):
        frame = pd.read_parquet(data / f"{table}.parquet")
        frame.loc[frame["department"] == "Marketing", "department"] = hostile
        frame.to_parquet(data / f"{table}.parquet", index=False)
    code = cli_main(["run", "--params", str(setup["params"]), "--data", str(data), "--out", str(setup["out"]),
                     "--notebooks", str(setup["notebooks"]), "--no-company", "--only", "sales", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 0
    messages = []
    runner.run_reports(runner.RunOptions(params=setup["params"], data=str(data), out=setup["out"],
                                         notebooks=setup["notebooks"], only=["sales"], company_reports=False,
                                         warm_kernels=False, progress=False), echo=messages.append)
    text = err + "\n".join(messages)
    assert "Evil Dept" in "\n".join(messages)  # the name is still shown, without its control characters
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text)


def test_two_runs_in_the_same_second_get_distinct_run_ids(setup, monkeypatch):
    """Regression (item 7): a second run started in the same second crashed with FileExistsError."""
    monkeypatch.setattr(runner, "new_run_id", lambda now=None: "2026-11-30T060000Z")
    (setup["out"] / ".tmp-2026-11-30T060000Z").mkdir()  # left by a killed run in that very second
    fake_previous_run(setup["out"], "2026-11-30T060000Z", link=False)  # a run that started that second
    opts = runner.RunOptions(params=setup["params"], data=str(setup["data"]), out=setup["out"],
                             notebooks=setup["notebooks"], only=["sales"], company_reports=False,
                             warm_kernels=False, progress=False, workers=1)
    result = runner.run_reports(opts, echo=lambda m: None)
    assert result.exit_code == 0 and result.run_id == "2026-11-30T060000Z-2"
    assert os.readlink(setup["out"] / "latest") == "2026-11-30T060000Z-2"
    p = result.manifest["reports"][0]["parameters"]
    assert p["run_id"] == result.run_id  # the jobs moved to the final run id
    assert p["data_source"] == str(setup["out"] / ".tmp-2026-11-30T060000Z-2" / "data.duckdb")
    assert not list(setup["out"].glob(".tmp-*"))


# ---------------------------------------------------------------------------------------------- disk full, read-only

def _assert_clean_environment_fault(setup, code: int, err: str, reason: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 3, err
    assert len(lines) == 1 and reason in lines[0] and str(setup["out"]) in lines[0], err
    assert f"still points at {setup['previous']}" in lines[0]
    assert "Traceback" not in err
    assert not list(setup["out"].glob(".tmp-*"))
    assert sorted(p.name for p in setup["out"].iterdir()) == [".lock", setup["previous"], "latest"]
    assert os.readlink(setup["out"] / "latest") == setup["previous"]


def _enospc(path=""):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.mark.parametrize("write_point", ["snapshot", "report page", "executed notebook", "manifest"])
def test_disk_full_is_one_line_exit_3_and_removes_partial_output(setup, monkeypatch, capsys, write_point):
    """Regression (item 7): ENOSPC gave a raw traceback, exit 1, and left .tmp-<run> behind."""
    if write_point == "snapshot":
        from helpers import data
        monkeypatch.setattr(data.Dataset, "snapshot", lambda self, path, **kw: (_ for _ in ()).throw(_enospc(path)))
    elif write_point == "executed notebook":  # papermill saves the notebook after every cell (in the worker)
        import papermill.engines
        monkeypatch.setattr(papermill.engines, "write_ipynb", lambda nb, path: (_ for _ in ()).throw(_enospc(path)))
    else:
        suffix = ".html" if write_point == "report page" else "manifest.json"
        real = runner.atomic_write_text

        def atomic_write_text(path, text):
            if str(path).endswith(suffix):
                raise _enospc(path)
            return real(path, text)

        monkeypatch.setattr(runner, "atomic_write_text", atomic_write_text)
    code = cli_main(_cli_args(setup, "--only", "sales", "--cold-kernels", "--workers", "1"))
    _assert_clean_environment_fault(setup, code, capsys.readouterr().err, "disk full (ENOSPC)")


def test_disk_full_inside_the_notebook_is_an_environment_fault(setup, capsys):
    """A cell that cannot write (ENOSPC inside the kernel) stops the run like any other disk-full fault."""
    params = write_params(setup["root"] / "p2", {"full": "Sales"})  # file "full", data department "Sales"
    args = _cli_args(setup, "--cold-kernels")
    args[args.index("--params") + 1] = str(params)
    code = cli_main(args)
    _assert_clean_environment_fault(setup, code, capsys.readouterr().err, "disk full (ENOSPC)")


def test_environment_message_names_a_file_outside_the_output_folder(tmp_path):
    state = runner._RunState(started=None, t0=0.0, out=tmp_path / "reports", run_id="r1")
    exc = PermissionError(errno.EACCES, "Permission denied", "/srv/data/responses.parquet")
    message = runner._environment_message(exc, (errno.EACCES, "permission denied"), state)
    assert message.startswith("permission denied (EACCES) at /srv/data/responses.parquet: check its permissions")
    assert "output folder" not in message and "the unfinished run r1 was removed" in message
    inside = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "reports" / ".tmp-r1" / "x.html"))
    message = runner._environment_message(inside, (errno.ENOSPC, "disk full"), state)
    assert f"the output folder {tmp_path / 'reports'} cannot take the reports; free space" in message


def test_unwritable_output_folder_injected_eacces(setup, monkeypatch, capsys):
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **k):
        if self.name.startswith(".tmp-"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    code = cli_main(_cli_args(setup, "--only", "sales", "--cold-kernels"))
    _assert_clean_environment_fault(setup, code, capsys.readouterr().err, "permission denied (EACCES)")


def _can_mount_read_only(folder: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind '{folder}' '{folder}' && "
                            f"mount -o remount,bind,ro '{folder}' && ! touch '{folder}/probe' 2>/dev/null"],
                           capture_output=True)
    return probe.returncode == 0


def test_read_only_output_folder_real_mount(setup):
    """A real read-only file system (EROFS): a read-only bind mount of the output folder in a private mount
    namespace, so the runner's own code meets the fault (root ignores chmod)."""
    out = setup["out"]
    if not _can_mount_read_only(out):
        pytest.skip("needs unshare -m and mount (root in a namespace that allows mounts)")
    cmd = " ".join(["exec", sys.executable, "-m", "helpers.reports", *[f"'{a}'" for a in _cli_args(
        setup, "--only", "sales", "--cold-kernels")]])
    env = dict(os.environ, TMPDIR=str(setup["tmpdir"]),
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind '{out}' '{out}' && "
                           f"mount -o remount,bind,ro '{out}' && {cmd}"], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 3, proc.stderr
    assert len(lines) == 1 and "read-only file system (EROFS)" in lines[0] and str(out) in lines[0]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [setup["previous"], "latest"]


# ---------------------------------------------------------------------------------------------- departments, kernels

def test_departments_dead_kernel_timeout_and_missing_data(setup, capsys):
    """Items 9 and 11 in one run: a kernel that dies in cell 4 is diagnosed as such (not "kernel start-up"),
    a cell timeout is named with its limit (not "KeyboardInterrupt"), a params department with no rows in the
    data gets a clear failure page without executing its notebook, and data departments without a params file
    are named in a warning and on the index page. The other report is still produced; exit code 1."""
    (setup["params"] / "departments" / "ghost.yaml").write_text(
        (setup["params"] / "departments" / "sales.yaml").read_text().replace("department: Sales",
                                                                            "department: Ghost Team"))
    code = cli_main(_cli_args(setup, "--cold-kernels", "--timeout", "3", "--workers", "2"))
    err = capsys.readouterr().err
    assert code == 1, err
    run_dir = setup["out"] / "latest"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    reports = {r["name"]: r for r in manifest["reports"]}
    assert reports["department_sales"]["status"] == "ok"
    assert {n for n, r in reports.items() if r["status"] != "ok"} == {
        "department_delivery", "department_billing", "department_ghost"}

    dead = (run_dir / "department_delivery.html").read_text()
    assert "Kernel died" in dead and "kernel died in cell 4 of 5" in dead
    assert "kernel start-up" not in dead and "os._exit(3)" in dead  # the failing cell's source is shown

    slow = (run_dir / "department_billing.html").read_text()
    assert "timed out after 3 s in cell 4 of 5" in slow and "KeyboardInterrupt:" not in slow
    assert reports["department_billing"]["error"]["where"] == "timed out after 3 s in cell 4 of 5"

    ghost = (run_dir / "department_ghost.html").read_text()
    assert "department &#39;Ghost Team&#39; has no rows in the data; departments in the data: " in ghost
    assert "&#39;Billing&#39;, &#39;Customer Service&#39;" in ghost
    assert not (run_dir / "notebooks" / "department_ghost.ipynb").exists()  # not executed
    assert reports["department_ghost"]["executed_notebook"] == ""
    assert "has no rows in the data" in err

    warning = "Departments in the data without a params file (no report): Customer Service, Marketing, " \
              "Technical Support"
    assert f"warning: {warning}" in err
    assert warning in (run_dir / "index.html").read_text()
    assert manifest["warnings"] == [warning + ". Add params/departments/<slug>.yaml to report on them."]


def test_only_does_not_warn_about_departments_it_leaves_out(setup):
    jobs = [runner.ReportJob(name="department_sales", kind="department", title="Sales report",
                             department="Sales", notebook="nb", parameters={"department": "sales"})]
    catalog = [("sales", "Sales"), ("delivery", "Delivery"), ("customer_service", "Customer Service")]
    no_data, unreported = runner.check_departments(jobs, catalog, ["Customer Service", "Delivery", "Sales", "Zeta"])
    assert no_data == [] and unreported == ["Zeta"]
    no_data, unreported = runner.check_departments(jobs, catalog, ["Delivery"])
    assert [j.name for j in no_data] == ["department_sales"] and unreported == []
    assert runner.check_departments(jobs, catalog, []) == ([], [])  # the data lists none: nothing to check


# ---------------------------------------------------------------------------------------------- diagnosis (unit)

def _executed(kind: str) -> nbformat.NotebookNode:
    """An executed notebook as papermill leaves it (injected-parameters cell, per-cell papermill metadata)."""
    nb = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("x = ''"),
             nbformat.v4.new_code_cell("x = 'injected'"), nbformat.v4.new_code_cell("a = 1"),
             nbformat.v4.new_markdown_cell("## s"), nbformat.v4.new_code_cell("work()"),
             nbformat.v4.new_code_cell("print(2)")]
    cells[1].metadata["tags"] = ["parameters"]
    cells[2].metadata["tags"] = ["injected-parameters"]
    for i, c in enumerate(cells):
        ran = i <= 5
        c.metadata["papermill"] = {"start_time": "2026-11-30T10:00:00" if ran else None, "status": "completed"}
    if kind == "timeout":  # nbclient interrupted the kernel after the timeout
        cells[5].outputs = [nbformat.v4.new_output("error", ename="KeyboardInterrupt", evalue="", traceback=[])]
    if kind == "error":
        cells[5].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=["tb"])]
        marker = nbformat.v4.new_markdown_cell("error here")
        marker.metadata["tags"] = ["papermill-error-cell-tag"]
        cells.insert(5, marker)
        cells.insert(0, nbformat.v4.new_markdown_cell("An Exception was encountered"))
        cells[0].metadata["tags"] = ["papermill-error-cell-tag"]
    nb.cells = cells
    return nb


def test_failure_details_counts_the_cells_of_the_original_notebook():
    assert export.original_cell_numbers(_executed("error"))[1] == 6
    d = export.failure_details(_executed("error"), {"name": "ValueError", "message": "bad", "kind": "error"})
    assert d["where"] == "cell 5 of 6" and d["error_name"] == "ValueError" and d["failing_source"] == "work()"


def test_failure_details_dead_kernel_and_timeout():
    d = export.failure_details(_executed("dead"), {"name": "DeadKernelError", "message": "Kernel died",
                                                  "kind": "dead kernel"})
    assert d["where"] == "kernel died in cell 5 of 6" and d["error_name"] == "Kernel died"
    d = export.failure_details(_executed("timeout"), {
        "name": "CellTimeoutError", "kind": "timeout",
        "message": "A cell timed out while it was being executed, after 30 seconds."}, timeout=99)
    assert d["where"] == "timed out after 30 s in cell 5 of 6" and "KeyboardInterrupt" not in str(d)
    nb = _executed("dead")
    for c in nb.cells:
        c.metadata["papermill"]["start_time"] = None
    d = export.failure_details(nb, {"name": "RuntimeError", "message": "Kernel didn't respond", "kind": "other"})
    assert d["where"] == "kernel start-up (before the first cell ran)"


# ---------------------------------------------------------------------------------------------- exit codes

def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli_main(["run", "--help"])
    text = capsys.readouterr().out
    for code, words in [("0", "every report"), ("1", "failed"), ("2", "invalid input"), ("3", "environment"),
                        ("130", "SIGINT"), ("143", "SIGTERM")]:
        assert re.search(rf"^\s+{code}\s+.*{words}", text, re.M | re.I), (code, text)
    assert "--if-locked" in text


def test_exit_code_2_for_invalid_options_before_anything_runs(setup, capsys):
    assert cli_main(_cli_args(setup, "--keep", "-1")) == 2
    assert "--keep: -1: keep at least the newest run" in capsys.readouterr().err
    assert sorted(p.name for p in setup["out"].iterdir()) == [setup["previous"], "latest"]


def test_run_environment_error_is_not_an_input_error():
    assert not issubclass(RunEnvironmentError, ValueError)


def test_environment_fault_recognises_only_real_file_system_faults():
    import duckdb
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError
    from helpers.reports import environment_fault

    assert environment_fault(OSError(errno.ENOSPC, "No space left on device")) == (errno.ENOSPC, "disk full")
    assert environment_fault(OSError(errno.EROFS, "Read-only file system"))[0] == errno.EROFS
    assert environment_fault(RuntimeError("wrapped")) is None
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("while saving") from inner
    except RuntimeError as outer:
        assert environment_fault(outer) == (errno.EDQUOT, "disk quota exceeded")
    # a cell that hit the full disk (papermill) and DuckDB's own IOException
    cell = dict(cell_index=3, exec_count=2, source="x", traceback=[])
    assert environment_fault(PapermillExecutionError(ename="OSError", evalue="[Errno 28] No space left on "
                                                     "device: 'a.json'", **cell))[0] == errno.ENOSPC
    assert environment_fault(duckdb.IOException('Could not write file "x": No space left on device'))
    # never by free text: a timeout quotes the cell's source, a ValueError may say anything
    assert environment_fault(CellTimeoutError("timed out; the cell: raise OSError('No space left on device')")) is None
    assert environment_fault(PapermillExecutionError(ename="ValueError", evalue="No space left on device",
                                                     **cell)) is None
    assert environment_fault(OSError(errno.ENOENT, "No such file")) is None


@pytest.mark.parametrize("mechanism", ["prctl", "watchdog"])
def test_die_with_parent(tmp_path, mechanism):
    """A child that called die_with_parent ends within seconds of its parent's SIGKILL, both through Linux's
    PR_SET_PDEATHSIG and through the portable watchdog thread alone (as on macOS)."""
    if mechanism == "prctl" and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    pid_file = tmp_path / "child.pid"
    script = f"""
import os, signal, sys, time
pid = os.fork()
if pid == 0:
    if {mechanism!r} == "watchdog":
        sys.platform = "darwin"  # no prctl: the watchdog thread alone
    from helpers.reports import die_with_parent
    die_with_parent(signal.SIGKILL, interval=0.2)
    open({str(pid_file)!r}, "w").write(str(os.getpid()))
    time.sleep(600)
    os._exit(0)
time.sleep(600)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        child = int(_wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30, "the child", parent))
        assert _alive(child)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
        if pid_file.exists() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the test failed: leave nothing behind


def test_a_kernel_that_dies_at_start_up_is_retried_once_with_a_fresh_kernel(tmp_path, monkeypatch):
    """CI flake: a warm forked kernel died before answering kernel_info (no cell ran) and the report failed.
    One retry with a fresh kernel; a second start-up failure is still reported."""
    import papermill

    from helpers.reports import runner

    real = papermill.execute_notebook
    calls = []

    def flaky(*args, **kwargs):
        calls.append(kwargs.get("kernel_manager_class"))
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    repo = Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    job = runner.ReportJob(name="retention_forecast", kind="company", title="Retention forecast", department="",
                           notebook=str(repo / "tests" / "fixtures" / "notebooks" / "retention_forecast.ipynb"),
                           parameters={"__kernel__": "python3", "summary_path": str(run_dir / "s.json")},
                           html="retention_forecast.html", executed_notebook="notebooks/retention_forecast.ipynb",
                           log="logs/retention_forecast.log", summary="s.json")
    context = {"fork_socket": None, "cwd": str(repo), "timeout": 120, "as_of": "2026-10-31", "run_id": "r",
               "company": "Example", "freshness": "", "fingerprint": ""}
    result = runner.execute_report(job, str(run_dir), context)
    assert len(calls) == 2 and result["status"] == "ok", result
    assert "retrying once with a fresh kernel" in (run_dir / job.log).read_text()

    calls.clear()

    def dead(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("Kernel died before replying to kernel_info")

    monkeypatch.setattr(papermill, "execute_notebook", dead)
    failed = runner.execute_report(job, str(run_dir), context)
    assert len(calls) == 2 and failed["status"] == "failed"
    assert "kernel_info" in failed["error"]["message"]
