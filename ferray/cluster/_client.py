"""Talking to a Ray cluster's job server: its address, its token, and waits that always end.

Ray's ``JobSubmissionClient`` sends no request with a timeout and adds a token only when
this process runs with ``RAY_AUTH_MODE=token``. :func:`connect` first asks the head (with a
timeout) whether it requires a token, finds the token where Ray's own CLI looks for it
(``RAY_AUTH_TOKEN``, then the file named by ``RAY_AUTH_TOKEN_PATH``, then
``~/.ray/auth_token``), checks that the head accepts it, and only then builds the client
with an ``Authorization`` header. :func:`bounded` runs each client call on a helper thread
and gives up after a timeout with a message that names what it waited for.

The token is never printed, logged or written: messages name where it came from.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ferray.cluster._errors import ClusterError

__all__ = [
    "Connection",
    "connect",
    "find_token",
    "normalise_address",
    "bounded",
    "resolve_address",
    "DEFAULT_TIMEOUT_S",
]

#: Seconds one request to the job server may take before ferray gives up on it.
DEFAULT_TIMEOUT_S = 30.0
_TOKEN_HELP = (
    "set RAY_AUTH_TOKEN to the token, or RAY_AUTH_TOKEN_PATH to a file that holds it, or put it in "
    "~/.ray/auth_token (`ray get-auth-token` prints it on the head node; on KubeRay it is in the "
    "Secret the operator made for the cluster's authOptions)"
)

T = TypeVar("T")


def resolve_address(address: str | None) -> str:
    """``address``, else ``RAY_API_SERVER_ADDRESS`` / ``RAY_ADDRESS`` when they hold a job server URL."""
    if address:
        return address
    for var in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(var, "")
        if value.startswith(("http://", "https://")):
            return value
    raise ClusterError(
        "no cluster address: pass --address http://HEAD:8265 (the head's dashboard port), or set RAY_API_SERVER_ADDRESS"
    )


def normalise_address(address: str) -> str:
    """The job server URL for ``address`` (``HEAD:8265`` -> ``http://HEAD:8265``).

    >>> normalise_address("10.0.0.5:8265/")
    'http://10.0.0.5:8265'
    """
    address = str(address).strip().rstrip("/")
    if not address:
        raise ClusterError("empty cluster address: pass --address http://HEAD:8265")
    if "://" not in address:
        address = "http://" + address
    scheme = address.split("://", 1)[0]
    if scheme not in ("http", "https"):
        raise ClusterError(
            f"--address {address}: ferray submits jobs over HTTP to the head's dashboard port "
            f"(http://HEAD:8265), not {scheme}://"
        )
    return address


def find_token() -> tuple[str | None, str]:
    """``(token, where it came from)`` in the order Ray's CLI uses, or ``(None, "")``.

    Raises:
        ClusterError: ``RAY_AUTH_TOKEN_PATH`` names a file that cannot be read or is empty
            (Ray itself treats that as fatal rather than falling back).
    """
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token, "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
    if path:
        try:
            with open(os.path.expanduser(path)) as f:
                token = f.read().strip()
        except OSError as exc:
            raise ClusterError(f"RAY_AUTH_TOKEN_PATH={path}: cannot read the token file ({exc.strerror})") from None
        if not token:
            raise ClusterError(f"RAY_AUTH_TOKEN_PATH={path}: the token file is empty")
        return token, f"RAY_AUTH_TOKEN_PATH ({path})"
    default = os.path.expanduser(os.path.join("~", ".ray", "auth_token"))
    try:
        with open(default) as f:
            token = f.read().strip()
    except OSError:
        return None, ""
    return (token, default) if token else (None, "")


def bounded(call: Callable[[], T], what: str, timeout: float = DEFAULT_TIMEOUT_S, *, address: str = "") -> T:
    """``call()``, or :class:`ClusterError` saying ``what`` was awaited when it takes over ``timeout`` s.

    Connection and HTTP errors from Ray's client become :class:`ClusterError` naming the
    address and what was being done.
    """
    import requests

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferray-job-client")
    try:
        future = pool.submit(call)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise ClusterError(
                f"the Ray job server at {address or '(cluster)'} did not answer within {timeout:.0f} s while {what}"
            ) from None
        except requests.exceptions.ConnectionError:
            raise ClusterError(
                f"lost the connection to the Ray job server at {address or '(cluster)'} while {what}"
            ) from None
        except ClusterError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray's client raises RuntimeError, AuthenticationError, ...
            if type(exc).__name__ == "AuthenticationError":
                raise ClusterError(
                    f"the Ray cluster at {address} refused ferray's credentials while {what}: "
                    f"{_first_line(exc)}. {_TOKEN_HELP[0].upper()}{_TOKEN_HELP[1:]}"
                ) from None
            raise ClusterError(
                f"the Ray job server at {address or '(cluster)'} failed while {what}: {_first_line(exc)}"
            ) from None
    finally:
        pool.shutdown(wait=False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class Connection:
    """A checked connection to a cluster's job server (:func:`connect` makes one)."""

    address: str
    client: Any  # ray.job_submission.JobSubmissionClient
    ray_version: str | None = None
    token_source: str = ""  # where the token came from ("" = the cluster needs none)
    timeout: float = DEFAULT_TIMEOUT_S
    notes: list[str] = field(default_factory=list)

    def call(self, fn: Callable[..., T], *args, what: str, timeout: float | None = None, **kwargs) -> T:
        """``fn(*args, **kwargs)`` with :func:`bounded`'s timeout and messages."""
        return bounded(
            lambda: fn(*args, **kwargs), what, self.timeout if timeout is None else timeout, address=self.address
        )

    def dashboard_url(self, job_id: str) -> str:
        return f"{self.address}/#/jobs/{job_id}"


def _probe(address: str, timeout: float) -> str | None:
    """The head's authentication mode ("disabled", "token", ...), ``None`` if it does not say."""
    import requests

    port = address.rsplit(":", 1)[-1].split("/")[0]
    hint = ""
    if port in ("6379", "10001"):
        hint = (
            f" ({port} is the head's {'GCS' if port == '6379' else 'Ray Client'} port; jobs are submitted to "
            "its dashboard port, 8265 by default)"
        )
    try:
        r = requests.get(f"{address}/api/authentication_mode", timeout=timeout)
    except requests.exceptions.Timeout:
        raise ClusterError(
            f"the Ray head at {address} did not answer within {timeout:.0f} s{hint}; is the address "
            "right and the dashboard reachable from here (`ray dashboard CLUSTER.yaml`, or "
            "`kubectl port-forward svc/CLUSTER-head-svc 8265:8265`)?"
        ) from None
    except requests.exceptions.ConnectionError as exc:
        reason = "connection refused" if "refused" in str(exc).lower() else _first_line(exc)
        raise ClusterError(
            f"no Ray job server answers at {address} ({reason}){hint}; is the head running with its "
            "dashboard, and is this its dashboard address (default port 8265; forward it with "
            "`ray dashboard CLUSTER.yaml` or `kubectl port-forward svc/CLUSTER-head-svc "
            "8265:8265`)?"
        ) from None
    if r.status_code == 200:
        try:
            return str(r.json().get("authentication_mode", "")).lower() or None
        except ValueError:
            return None
    return None  # an older Ray without the endpoint (404), or a proxy in front of it


def connect(address: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S) -> Connection:
    """A :class:`Connection` to the job server at ``address`` (``http://HEAD:8265``).

    Raises:
        ClusterError: nothing answers there within ``timeout`` s; the head requires a token
            and none was found (the message says how to supply one), or it refused the token.
    """
    import requests

    address = normalise_address(resolve_address(address))
    mode = _probe(address, timeout)
    headers: dict[str, str] = {}
    source = ""
    wants_token = mode not in (None, "disabled") or (mode is None and os.environ.get("RAY_AUTH_MODE") == "token")
    if wants_token:
        token, source = find_token()
        if token is None:
            local = os.environ.get("RAY_AUTH_MODE", "")
            extra = (
                f" (RAY_AUTH_MODE={local} in this shell does not turn the cluster's authentication off)"
                if local and local != "token"
                else ""
            )
            raise ClusterError(
                f"the Ray cluster at {address} requires a token (token authentication is on) and "
                f"none was found{extra}: {_TOKEN_HELP}"
            )
        headers["Authorization"] = f"Bearer {token}"
    try:
        r = requests.get(f"{address}/api/version", headers=headers, timeout=timeout)
    except requests.exceptions.RequestException as exc:
        raise ClusterError(f"the Ray head at {address} stopped answering ({_first_line(exc)})") from None
    if r.status_code in (401, 403):
        if headers:
            raise ClusterError(
                f"the Ray cluster at {address} refused the token from {source} (HTTP {r.status_code}); "
                f"it is not this cluster's token: {_TOKEN_HELP}"
            )
        raise ClusterError(f"the Ray cluster at {address} requires a token (HTTP {r.status_code}): {_TOKEN_HELP}")
    if r.status_code != 200:
        raise ClusterError(f"{address} answered HTTP {r.status_code} to /api/version; is it a Ray dashboard?")
    try:
        version = r.json().get("ray_version")
    except ValueError:
        raise ClusterError(f"{address} is not a Ray dashboard (its /api/version is not JSON)") from None

    from ray.job_submission import JobSubmissionClient

    client = bounded(
        lambda: JobSubmissionClient(address, headers=headers or None), "connecting", timeout, address=address
    )
    conn = Connection(address=address, client=client, ray_version=version, token_source=source, timeout=timeout)
    import ray

    if version and version.split(".")[:2] != ray.__version__.split(".")[:2]:
        conn.notes.append(
            f"the cluster runs Ray {version}, this machine Ray {ray.__version__}; ferray is tested "
            "with matching versions"
        )
    return conn
