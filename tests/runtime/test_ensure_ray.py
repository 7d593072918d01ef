"""Ray start-up: an address where nothing listens is refused within seconds."""

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
