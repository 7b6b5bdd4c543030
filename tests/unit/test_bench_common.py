"""The benchmarks' CPU accounting (bench/_common.py) counts a server's forked workers.

ocserv forks a worker per client; bench/peers.py must add their CPU to the server's, also
after they exit. Here a child process burns CPU: the tree's total must rise by about that
much while it runs and must not fall back once it has exited and been reaped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench._common import process_tree, tree_cpu

BURN = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.4: pass\ntime.sleep(30)"


def test_tree_includes_live_and_reaped_children() -> None:
    me = os.getpid()
    own0 = time.process_time()
    before = tree_cpu(me)
    child = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        deadline = time.monotonic() + 20
        while tree_cpu(me) - before < 0.35 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in process_tree(me)
        running = tree_cpu(me)
    finally:
        child.kill()
        child.wait()
    own = time.process_time() - own0
    assert running - before - own >= 0.3  # the child's 0.4 s, not our own polling
    assert tree_cpu(me) >= running - 0.02  # reaped: now in our cutime/cstime
    assert child.pid not in process_tree(me)
