"""ferray on a Ray cluster: sweeps submitted as Ray jobs, run directories on remote storage.

>>> from ferray.cluster import submit, logs
>>> job = submit("search_spaces/affectnet.yaml", "http://head:8265",
...              storage="s3://my-bucket/ferray")                      # doctest: +SKIP
>>> logs(job.job_id, "http://head:8265", follow=True)                  # doctest: +SKIP
'SUCCEEDED'
>>> from ferray.cluster import pull_run
>>> pull_run(job.run)                                                  # doctest: +SKIP
PosixPath('runs/affectnet-20261130-120000')

Cluster configurations (Ray cluster launcher for AWS and GCP, KubeRay, SLURM) live in the
repository's ``clusters/`` folder; :func:`check_launcher_config` and
:func:`check_kuberay_manifest` check them.
"""

from ferray.cluster._client import Connection, connect, find_token
from ferray.cluster._config import check_kuberay_manifest, check_launcher_config
from ferray.cluster._errors import ClusterError
from ferray.cluster._storage import join_uri, pull_run, push_run
from ferray.cluster._submit import (
    TERMINAL,
    JobInfo,
    SubmittedJob,
    exit_code,
    jobs,
    logs,
    stop,
    submit,
    submit_resume,
    wait,
)

__all__ = [
    # jobs
    "submit",
    "submit_resume",
    "jobs",
    "logs",
    "stop",
    "wait",
    "exit_code",
    "SubmittedJob",
    "JobInfo",
    "TERMINAL",
    "connect",
    "Connection",
    "find_token",
    "ClusterError",
    # storage
    "push_run",
    "pull_run",
    "join_uri",
    # configurations
    "check_launcher_config",
    "check_kuberay_manifest",
]
