"""Ray start-up: an address where nothing listens is refused within seconds; a local Ray is its own."""

import os

import pytest


def test_a_ray_address_where_nothing_listens_fails_within_seconds():
    import socket
    import time

    import ray

    from ferray.errors import FerrayError
    from ferray.runtime import ensure_ray

    if ray.is_initialized():
        pytest.skip("this process is already connected to a Ray cluster")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    start = time.monotonic()
    with pytest.raises(
        FerrayError,
        match=rf"no Ray cluster answers at 127.0.0.1:{port} \(connection refused\); is "
        r"the head running\? --address takes the head's GCS address",
    ):
        ensure_ray(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 10 and not ray.is_initialized()


@pytest.mark.parametrize("users, expected", [(None, "0.25"), ("1.5", "1.5")])
def test_train_environment_is_set_where_a_run_is_fit_and_a_users_own_value_wins(monkeypatch, users, expected):
    import os

    from ferray.runtime import use_train_environment

    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "restored after the test")
    if users is None:
        monkeypatch.delenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")
    else:
        monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", users)
    assert use_train_environment() == {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": expected}
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == expected


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_a_local_ray_is_its_own_where_ray_start_left_an_address_behind():
    """``ray start`` writes its address to ``$TMPDIR/ray/ray_current_cluster``, and a bare ``ray.init()``
    attaches to it (here: nothing listens there). ferray's local Ray starts its own instead."""
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp(prefix="frt-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        (tmp / "ray").mkdir()
        (tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")
        code = (
            "import ray\n"
            "from ferray.runtime import ensure_ray\n"
            "print('CPU', ensure_ray(num_cpus=1)['CPU'])\n"
            "ray.shutdown()\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        out = subprocess.run(
            [sys.executable, "-c", code], env={**env, "TMPDIR": str(tmp)}, capture_output=True, text=True, timeout=150
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert "CPU 1.0" in out.stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
