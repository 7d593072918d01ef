"""Reaching a cluster's job server: addresses, tokens, refusals and unreachable heads (no Ray cluster needed)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ferray.cluster import ClusterError, connect, find_token
from ferray.cluster._client import normalise_address, resolve_address

TOKEN = "s3cr3t-token-value-0123456789"


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    """No token anywhere Ray's CLI looks (HOME points to an empty folder)."""
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FakeHead(BaseHTTPRequestHandler):
    """The two endpoints `connect` reads, as a token-protected Ray 2.60 dashboard answers them."""

    mode = "token"

    def do_GET(self):  # http.server's name
        if self.path == "/api/authentication_mode":
            return self._send(200, {"authentication_mode": self.mode})
        auth = self.headers.get("Authorization", "")
        if self.mode == "token" and not auth:
            return self._send(401, "Unauthorized: Missing authentication token")
        if self.mode == "token" and auth != f"Bearer {TOKEN}":
            return self._send(403, "Forbidden: Invalid authentication token")
        if self.path == "/api/version":
            return self._send(200, {"version": "4", "ray_version": "2.60.0", "ray_commit": "x"})
        return self._send(404, "not found")

    def _send(self, status, body):
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_head():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHead)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "given, url",
    [("127.0.0.1:8265", "http://127.0.0.1:8265"), ("https://head.example:443/", "https://head.example:443")],
)
def test_addresses_are_job_server_urls(given, url):
    assert normalise_address(given) == url


def test_a_ray_client_address_is_refused_with_what_to_give():
    with pytest.raises(
        ClusterError,
        match=r"--address ray://head:10001: ferray submits jobs over HTTP to the head's "
        r"dashboard port \(http://HEAD:8265\), not ray://",
    ):
        normalise_address("ray://head:10001")


def test_the_address_comes_from_the_environment_when_not_given(no_token, monkeypatch):
    with pytest.raises(ClusterError, match=r"no cluster address: pass --address http://HEAD:8265"):
        resolve_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # a GCS address is not a job server
    with pytest.raises(ClusterError, match="no cluster address"):
        resolve_address(None)
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://10.0.0.5:8265")
    assert resolve_address(None) == "http://10.0.0.5:8265"


def test_the_token_is_found_where_rays_cli_looks(no_token, monkeypatch):
    assert find_token() == (None, "")
    (no_token / ".ray").mkdir()
    (no_token / ".ray" / "auth_token").write_text("from-home\n")
    assert find_token() == ("from-home", str(no_token / ".ray" / "auth_token"))
    path = no_token / "tok"
    path.write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    assert find_token() == ("from-path", f"RAY_AUTH_TOKEN_PATH ({path})")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert find_token() == ("from-env", "RAY_AUTH_TOKEN")


def test_an_unreadable_token_path_is_an_error_not_a_fallback(no_token, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(no_token / "missing"))
    with pytest.raises(ClusterError, match=r"RAY_AUTH_TOKEN_PATH=.*missing: cannot read the token file"):
        find_token()


def test_nothing_listening_fails_within_seconds_naming_the_address(no_token):
    port = _free_port()
    start = time.monotonic()
    with pytest.raises(
        ClusterError,
        match=rf"no Ray job server answers at http://127.0.0.1:{port} \(connection "
        r"refused\); is the head running with its dashboard",
    ):
        connect(f"127.0.0.1:{port}", timeout=5)
    assert time.monotonic() - start < 10


def test_a_gcs_port_gets_a_hint_about_the_dashboard_port(no_token):
    with pytest.raises(ClusterError, match=r"6379 is the head's GCS port; jobs are submitted to its dashboard port"):
        connect("http://127.0.0.1:6379", timeout=5) if _port_closed(6379) else _skip()


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _skip():
    pytest.skip("something listens on 6379 here")


def test_a_token_protected_head_without_a_token_says_how_to_supply_one(no_token, fake_head, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a local setting never turns the cluster's auth off
    with pytest.raises(
        ClusterError,
        match=r"requires a token \(token authentication is on\) and none was found "
        r"\(RAY_AUTH_MODE=disabled in this shell does not turn the cluster's "
        r"authentication off\): set RAY_AUTH_TOKEN to the token, or "
        r"RAY_AUTH_TOKEN_PATH to a file that holds it, or put it in "
        r"~/.ray/auth_token",
    ):
        connect(fake_head, timeout=5)


def test_a_wrong_token_is_refused_naming_where_it_came_from_not_its_value(no_token, fake_head, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    with pytest.raises(ClusterError, match=r"refused the token from RAY_AUTH_TOKEN \(HTTP 403\)") as info:
        connect(fake_head, timeout=5)
    assert "not-the-token" not in str(info.value)


def test_the_right_token_connects_and_is_sent_as_a_bearer_header(no_token, fake_head, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    conn = connect(fake_head, timeout=5)
    assert conn.ray_version == "2.60.0" and conn.token_source == "RAY_AUTH_TOKEN"
    assert TOKEN not in repr(conn.notes)


def test_a_head_that_does_not_answer_in_time_names_the_wait(no_token):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts the connection, never answers
    try:
        start = time.monotonic()
        with pytest.raises(ClusterError, match=r"did not answer within 1 s"):
            connect(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=1)
        assert time.monotonic() - start < 5
    finally:
        server.close()
