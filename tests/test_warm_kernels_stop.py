"""The fork server cleans up however many stop signals arrive at once.

When the runner dies, the server sees its stdin close and gets the parent-death SIGTERM at the same moment (and
its watchdog's SIGTERM half a second later). A second SystemExit raised inside the clean-up used to abort it, so
the ``kit-forksrv-*`` folder stayed behind (seen in CI as a flaky
``test_after_sigkill_every_helper_process_exits_and_the_next_run_cleans_up[warm]``)."""
import os
import signal
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")), reason="fork server: POSIX only")


@pytest.mark.parametrize("close_stdin_first", [False, True])
def test_a_burst_of_sigterms_still_removes_the_servers_folder(close_stdin_first):
    from helpers.reports.warm_kernels import ForkServer

    server = ForkServer().start()
    try:
        server.wait_ready()
        folder, proc = server._tmp, server.proc
        assert os.path.isdir(folder)
        if close_stdin_first:  # what the runner's death looks like: EOF and SIGTERM together
            proc.stdin.close()
        signals = 0
        while proc.poll() is None:  # SIGTERM after SIGTERM until the server has exited
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except OSError:
                break
            signals += 1
        proc.wait(timeout=30)
        assert signals > 1  # the burst reached the server during its clean-up, not only before it
        assert proc.returncode in (128 + signal.SIGTERM, -signal.SIGTERM, 0)
        assert not os.path.exists(folder)
    finally:
        server.stop()  # nothing left to do when the test passed
