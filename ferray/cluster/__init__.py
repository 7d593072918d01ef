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

from typing import TYPE_CHECKING

from ferray._lazy import lazy_exports

_EXPORTS = {
    # jobs
    "submit": "ferray.cluster._submit",
    "submit_resume": "ferray.cluster._submit",
    "jobs": "ferray.cluster._submit",
    "logs": "ferray.cluster._submit",
    "stop": "ferray.cluster._submit",
    "wait": "ferray.cluster._submit",
    "exit_code": "ferray.cluster._submit",
    "SubmittedJob": "ferray.cluster._submit",
    "JobInfo": "ferray.cluster._submit",
    "TERMINAL": "ferray.cluster._submit",
    "connect": "ferray.cluster._client",
    "Connection": "ferray.cluster._client",
    "find_token": "ferray.cluster._client",
    "ClusterError": "ferray.cluster._errors",
    # storage
    "push_run": "ferray.cluster._storage",
    "pull_run": "ferray.cluster._storage",
    "join_uri": "ferray.cluster._storage",
    # configurations
    "check_launcher_config": "ferray.cluster._config",
    "check_kuberay_manifest": "ferray.cluster._config",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
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
