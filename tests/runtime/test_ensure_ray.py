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
