"""Kernel process stand-in: asks the warm-kernel fork server for a kernel and mirrors its life.

Usage (as a kernelspec argv): python -I -S fork_kernel_client.py SOCKET -f CONNECTION_FILE
Standard library only, so it starts in milliseconds. See helpers.reports.warm_kernels.
"""
import json
import os
import signal
import socket
import sys


def main() -> int:
    sock_path, argv = sys.argv[1], sys.argv[2:]
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
