"""Warm kernels: a fork server that has imported the scientific stack once and forks a fresh kernel per report.

Why: in a cold start every report pays for a new Python process importing ipykernel, pandas, numpy, scipy,
statsmodels, matplotlib and seaborn (several seconds each time on a laptop). The fork server imports them once;
each report then gets a *fresh process* forked from it (copy-on-write memory), so reports stay isolated from
each other exactly as with separate cold kernels: no variables, open files, matplotlib state or random state is
shared between two reports, and a crash in one kernel cannot touch another.

How it plugs into Jupyter: :class:`ForkKernelManager` is a ``jupyter_client.KernelManager`` whose kernel command
is the tiny stdlib-only script ``fork_kernel_client.py``. That process asks the server (over a Unix socket,
passing its stdin/stdout/stderr file descriptors) to fork a kernel with the given connection file, working
directory and environment; it forwards signals (interrupt, terminate) to the kernel and exits with the kernel's
exit status, so jupyter_client manages it like any kernel process. papermill/nbclient talk to the kernel over
ZeroMQ exactly as usual, so the executed notebook is the one papermill would produce.

In the child: the random modules are re-seeded from the OS (as a new process would be), ``sys.argv``,
``sys.path[0]``, the environment and the working directory are set as for ``python -m ipykernel_launcher``.
Only Linux/macOS (``os.fork``); elsewhere the runner uses cold kernels.

Nothing outlives the runner: the server ends when its stdin closes, on SIGTERM, and when its parent (the
runner) dies, even by SIGKILL (:func:`helpers.reports.die_with_parent`); on the way out it kills its kernels and
removes its ``kit-forksrv-*`` temporary folder. Every forked kernel dies with the server, and the fork client
dies with the worker that started it (the server then kills that client's kernel).
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIENT_SCRIPT = Path(__file__).with_name("fork_kernel_client.py")

# Modules imported once in the server; a module that fails to import is skipped (reported in the log).
PRELOAD_MODULES = (
    "ipykernel.kernelapp", "ipykernel.ipkernel", "IPython",
    "numpy", "pandas", "scipy.stats", "scipy.optimize", "statsmodels.api", "statsmodels.formula.api",
    "matplotlib.pyplot", "seaborn", "pyarrow", "pyarrow.parquet", "duckdb", "yaml", "pydantic",
    # what the report pages import later, inside functions (measured with -X importtime: about a second per
    # kernel, paid by every report): pydantic's models (lazy in ``import pydantic``), the statsmodels parts the
    # analyses use, the comment analysis' scikit-learn and VADER, matplotlib's Agg backend. Not the inline
    # backend: importing it hooks it into the running IPython shell, and the server has none (plt.show() would
    # then display no image in the kernels; tests/test_reports_run.py compares warm and cold kernels)
    "pydantic.main", "pydantic.fields", "statsmodels.tsa.statespace.mlemodel", "statsmodels.duration.survfunc",
    "statsmodels.duration.hazard_regression", "statsmodels.miscmodels.ordinal_model",
    "statsmodels.stats.proportion", "sklearn.feature_extraction.text", "sklearn.decomposition",
    "vaderSentiment.vaderSentiment", "matplotlib.backends.backend_agg", "PIL.PngImagePlugin",
    # the kit's modules the reports import. None has an import-time effect that depends on the process: the one
    # module-level action (helpers.charts choosing the Agg backend) applies only outside a kernel, and
    # ipykernel is imported above, as it is in every kernel before a notebook runs; nothing reads the
    # environment, the working directory or a file at import (tests/test_speed_kernels.py checks this list)
    "helpers.config", "helpers.data", "helpers.formatting", "helpers.charts", "helpers.kpis",
    "helpers.objectives", "helpers.objectives_forecast", "helpers.objectives_backtest", "helpers.objectives_report",
    "helpers.kpi_tiles", "helpers.funnel", "helpers.impact_report", "helpers.drivers_report",
    "helpers.retention_report", "helpers.voice_report", "helpers.voice_effects", "helpers.engine.aggregates",
    "helpers.reports.loader", "helpers.engine.retention_queries", "helpers.engine.worth_sample",
    "pyarrow.pandas_compat", "pandas.core.reshape.reshape",
    # what every kernel imports while it starts: IPythonKernel resolves its debugger class (debugpy, ~130
    # modules, no thread started) at init, 0.16 s CPU of a kernel's 0.2 s start
    "ipykernel.debugger",
)

FORKED_WITH_MODULES: frozenset = frozenset()
"""In a forked kernel: the names in ``sys.modules`` at the fork (what the kernel did not import itself)."""


def _recv_json_line(conn: socket.socket, fds: list[int] | None = None, maxfds: int = 0) -> dict:
    buf = b""
    while not buf.endswith(b"\n"):
        if maxfds and fds is not None and not buf:
            msg, got, _flags, _addr = socket.recv_fds(conn, 65536, maxfds)
            fds.extend(got)
            chunk = msg
        else:
            chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("fork server connection closed")
        buf += chunk
    return json.loads(buf.decode())


def _child_main(conn: socket.socket, listener: socket.socket, request: dict, fds: list[int]) -> None:
    """Runs in the forked child: become a fresh ipykernel."""
    try:
        forked_with = frozenset(sys.modules)
        try:  # the server runs as __main__: record it on the importable module (only informative)
            import importlib  # noqa: PLC0415

            importlib.import_module("helpers.reports.warm_kernels").FORKED_WITH_MODULES = forked_with
        except Exception:  # noqa: BLE001 - never a reason for a kernel not to start
            pass
        server_pid = os.getppid()
        listener.close()
        conn.close()
        os.setsid()  # own process group: the server's signals do not reach it
        from helpers.reports import die_with_parent
        die_with_parent(signal.SIGKILL, parent=request.get("server_pid") or server_pid)  # no orphan kernels
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        sys.argv = [sys.executable] + request["argv"]
        sys.path[0] = ""  # as `python -m ipykernel_launcher` from the working directory
        import random
        random.seed()
        try:
            import numpy as np
            np.random.seed()
        except Exception:  # pragma: no cover - numpy is in the venv
            pass
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        from ipykernel.kernelapp import IPKernelApp
        parent = int(os.environ.get("JPY_PARENT_PID") or 0)  # the trait default was read in the server
        IPKernelApp.launch_instance(argv=request["argv"], parent_handle=parent)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001 - report and exit, never return into the server loop
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush() if sys.stdout else None
        sys.stderr.flush() if sys.stderr else None
    os._exit(code)


def serve(socket_path: str, parent_pid: int | None = None) -> None:
    """Fork-server main loop: preload, then fork one kernel per request until stdin closes, SIGTERM arrives or
    the parent process (pid ``parent_pid``, the runner) dies; then kill the kernels and remove the socket's
    ``kit-forksrv-*`` folder."""
    from helpers.reports import die_with_parent

    stopping = False

    def stop(signum, _frame):
        # once only: when the runner dies, its stdin's EOF, the parent-death SIGTERM and the watchdog's SIGTERM
        # arrive together, and a second SystemExit raised inside the clean-up below would abort it half-way
        # (kernels not killed, the folder left behind; tests/test_warm_kernels_stop.py sends a burst of SIGTERMs)
        nonlocal stopping
        if not stopping:
            stopping = True
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides; Ctrl-C reaches it, not us
    die_with_parent(signal.SIGTERM, parent=parent_pid)
    children: dict[int, socket.socket] = {}  # kernel pid -> client connection
    try:
        _serve(socket_path, children)
    finally:
        stopping = True  # no bytecode in between checks for signals: from here on a SIGTERM is a no-op
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        folder = os.path.dirname(socket_path)
        if os.path.basename(folder).startswith("kit-forksrv-"):
            shutil.rmtree(folder, ignore_errors=True)


def _serve(socket_path: str, children: dict[int, socket.socket]) -> None:
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    skipped = []
    for name in PRELOAD_MODULES:
        try:
            __import__(name)
        except Exception as exc:  # noqa: BLE001 - an optional module; the kernel imports it itself
            skipped.append(f"{name} ({type(exc).__name__})")
    import gc  # noqa: PLC0415
    gc.collect()
    gc.freeze()  # the ~300,000 preloaded objects: never scanned (nor written to) by a forked kernel's full
    # collections (Python's gc docs for fork servers); a department page spent ~0.15 s CPU in them
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "skipped": skipped}) + "\n")
    sys.stdout.flush()
    while True:
        readable = [listener, sys.stdin] + list(children.values())
        r, _, _ = select.select(readable, [], [], 0.05)
        if sys.stdin in r and not sys.stdin.buffer.read1(1):
            break  # the runner went away: stop
        if listener in r:
            conn, _ = listener.accept()
            fds: list[int] = []
            try:
                request = _recv_json_line(conn, fds, maxfds=3)
            except Exception:  # noqa: BLE001
                conn.close()
                for fd in fds:
                    os.close(fd)
                continue
            request["server_pid"] = os.getpid()
            pid = os.fork()
            if pid == 0:
                _child_main(conn, listener, request, fds)
            for fd in fds:
                os.close(fd)
            conn.sendall((json.dumps({"pid": pid}) + "\n").encode())
            children[pid] = conn
        for pid, conn in list(children.items()):
            if conn in r:  # client closed (killed): kill its kernel
                try:
                    if not conn.recv(1):
                        os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall((json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n").encode())
                except OSError:
                    pass
                conn.close()


# ForkServer instances of this process: pool workers forked from the runner close their copies of the servers'
# stdin pipes (helpers.reports.runner), so that the server sees EOF as soon as the runner is gone.
RUNNING: "list[ForkServer]" = []


class ForkServer:
    """Start/stop the fork server process; use as a context manager."""

    def __init__(self, python: str | None = None, start_timeout: float = 120.0):
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.socket_path = ""
        self.skipped: list[str] = []
        self.ready = False  # the server said it has preloaded and listens
        self._tmp: str | None = None

    def start(self) -> "ForkServer":
        self._tmp = tempfile.mkdtemp(prefix="kit-forksrv-")
        self.socket_path = os.path.join(self._tmp, "s")
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [self.python, "-Xfrozen_modules=off", "-m", "helpers.reports.warm_kernels", self.socket_path,
             str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True)
        RUNNING.append(self)
        return self

    def close_inherited_pipes(self) -> None:
        """In a process forked from the one that started the server: drop the copies of its pipes."""
        if self.proc is not None:
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass

    def wait_ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                line = self.proc.stdout.readline()
                if not line:
                    break
                info = json.loads(line)
                self.skipped = info.get("skipped", [])
                self.ready = True
                return
            if self.proc.poll() is not None:
                break
        raise RuntimeError("the warm-kernel fork server did not start")

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to end (stdin closed, then SIGTERM; SIGKILL after ``timeout`` s); it kills its kernels.
        A server still preloading (not :attr:`ready`: a run stopped by bad input) reads its stdin only after the
        preload, so it gets SIGTERM at once."""
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=min(timeout, 2.0) if self.ready else 0.05)
            except Exception:  # noqa: BLE001 - still running (or the pipe is gone): terminate it
                try:
                    self.proc.terminate()
                    self.proc.wait(timeout=timeout)
                except Exception:  # noqa: BLE001
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self in RUNNING:
            RUNNING.remove(self)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "ForkServer":
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


IOPUB_SETTLE_SECONDS = 0.02
"""After the kernel_info reply, how long IOPub must stay quiet before the kernel counts as ready."""


def quick_ready_client_class():
    """``AsyncKernelClient`` whose ``wait_for_ready`` drains IOPub with a short quiet time.

    jupyter_client's ``wait_for_ready`` (8.x) ends by reading IOPub until it has been quiet for 0.2 s, which every
    report waits for (measured: kernel_info answered 0.14 s after the fork, ready 0.2 s later). The drained
    messages are the kernel_info request's own busy/idle status; nbclient keeps only the messages whose parent is
    the cell it executes, so a shorter quiet time changes no output. Otherwise the same steps: kernel_info until
    a reply arrives with IOPub connected (a status message received), a RuntimeError when the kernel died or
    did not answer within ``timeout``."""
    from queue import Empty

    from jupyter_client.asynchronous import AsyncKernelClient

    class QuickReadyKernelClient(AsyncKernelClient):
        async def wait_for_ready(self, timeout: float | None = None) -> None:
            abs_timeout = time.time() + (float("inf") if timeout is None else timeout)
            while True:
                self.kernel_info()
                try:
                    msg = await self.shell_channel.get_msg(timeout=1)
                except Empty:
                    pass
                else:
                    if msg["msg_type"] == "kernel_info_reply":
                        try:  # IOPub connected? (its status message arrives), else start over
                            await self.iopub_channel.get_msg(timeout=0.2)
                        except Empty:
                            pass
                        else:
                            self._handle_kernel_info_reply(msg)
                            break
                if not await self._async_is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.time() > abs_timeout:
                    raise RuntimeError("Kernel didn't respond in %d seconds" % timeout)
            while True:  # drain IOPub until it is quiet
                try:
                    await self.iopub_channel.get_msg(timeout=IOPUB_SETTLE_SECONDS)
                except Empty:
                    break

    return QuickReadyKernelClient


def fork_kernel_manager_class(socket_path: str):
    """A ``jupyter_client`` ``AsyncKernelManager`` subclass whose kernels are forked by the server listening on ``socket_path``."""
    # the async manager is what nbclient/papermill use by default (its client polls liveness via the manager)
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ForkKernelManager(AsyncKernelManager):
        @default("client_factory")
        def _quick_ready_client(self):
            return quick_ready_client_class()

        @property
        def kernel_spec(self):
            spec = super().kernel_spec
            if spec is not None and not getattr(spec, "_kit_forked", False):
                argv = list(spec.argv)
                # `python [-X...] -m ipykernel_launcher -f {connection_file}` -> the fork client
                if "ipykernel_launcher" in argv:
                    tail = argv[argv.index("ipykernel_launcher") + 1:]
                    spec.argv = [sys.executable, "-I", "-S", str(CLIENT_SCRIPT), socket_path] + tail
                spec._kit_forked = True
            return spec

    ForkKernelManager.__name__ = "ForkKernelManager"
    return ForkKernelManager


def main(argv: list[str]) -> None:
    """Serve, then leave without the interpreter's teardown of the preloaded stack (about 0.4 s of module
    finalisation, waited for by :meth:`ForkServer.stop` at the end of every run); the kernels are killed and
    the socket folder removed by :func:`serve` before that. The exit code is kept (SIGTERM: 143)."""
    code = 0
    try:
        serve(argv[0], int(argv[1]) if len(argv) > 1 else None)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - report it, as an uncaught exception would
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
