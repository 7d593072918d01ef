from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ferray.testing import Freezer, _alive, descendants, kill_tree, processes_below

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


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_freezer_stops_the_processes_it_finds_below_a_process_and_continues_them():
    proc = subprocess.Popen([sys.executable, "-c", PARENT])
    try:
        # The child's command line names subprocess.Popen; the grandchild's, once it has exec'd, does not.
        deadline = time.time() + 20
        while time.time() < deadline and not (
            len(descendants(proc.pid)) == 2 and len(processes_below(proc.pid, "subprocess.Popen")) == 1
        ):
            time.sleep(0.05)
        (child,) = processes_below(proc.pid, "subprocess.Popen")
        with Freezer() as freezer:
            freezer.watch(lambda: processes_below(proc.pid, "subprocess.Popen"))
            while not freezer.frozen and time.time() < deadline:
                time.sleep(0.05)
            assert freezer.frozen == [child] and _state(child) == "T"
            assert _state(proc.pid) != "T"
        assert _state(child) != "T"
    finally:
        kill_tree(proc)
