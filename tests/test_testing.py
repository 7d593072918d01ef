from __future__ import annotations

import subprocess
import sys
import time

from ferray.testing import _alive, descendants, kill_tree

# A process whose child starts a grandchild, all sleeping.
GRANDCHILD = "import time; time.sleep(60)"
CHILD = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}]); time.sleep(60)"
PARENT = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {CHILD!r}]); time.sleep(60)"


def test_kill_tree_kills_the_process_and_its_descendants():
    proc = subprocess.Popen([sys.executable, "-c", PARENT])
    deadline = time.time() + 20
    while len(descendants(proc.pid)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    below = descendants(proc.pid)
    assert len(below) == 2
    kill_tree(proc)
    assert proc.returncode == -9
    assert not any(_alive(pid) for pid in below)
