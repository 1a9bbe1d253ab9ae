"""Kernel process stand-in: asks the warm-kernel fork server for a kernel and mirrors its life.

Usage (as a kernelspec argv): python -I -S fork_kernel_client.py SOCKET -f CONNECTION_FILE
Standard library only, so it starts in milliseconds. See helpers.reports.warm_kernels.
"""
import json
import os
import signal
import socket
import sys
import threading
import time


def die_with_parent() -> None:
    """End this process (SIGKILL) when its parent, the worker running papermill, ends; the server then kills
    the kernel. prctl(PR_SET_PDEATHSIG) on Linux plus a portable thread polling os.getppid() (a stdlib-only copy
    of helpers.reports.die_with_parent: this script runs with -I -S)."""
    # jupyter_client starts this script directly (no shell) and names itself in JPY_PARENT_PID
    parent = int(os.environ.get("JPY_PARENT_PID") or 0) or os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001 - the thread below still works
            pass

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)

    if os.getppid() != parent:  # the worker died before we got here
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, daemon=True).start()


def main() -> int:
    sock_path, argv = sys.argv[1], sys.argv[2:]
    die_with_parent()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(sock_path)
    request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
    socket.send_fds(conn, [(json.dumps(request) + "\n").encode()], [0, 1, 2])
    reader = conn.makefile("r")
    pid = json.loads(reader.readline())["pid"]

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, forward)
    while True:
        try:
            line = reader.readline()
        except InterruptedError:
            continue
        if not line:
            return 1
        msg = json.loads(line)
        if "exit" in msg:
            code = msg["exit"]
            return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
