"""Sweeps as Ray jobs against a real, token-protected Ray head on loopback (started by ``ray_head``)."""

from __future__ import annotations

import time

import pytest

from ferray.cli import main as _cli
from ferray.cluster import ClusterError, connect, jobs, logs, stop, submit

pytestmark = pytest.mark.ray


@pytest.fixture
def with_token(ray_head, token_env):
    return token_env(ray_head)


@pytest.mark.timeout(180)
def test_a_client_without_the_token_is_refused_with_how_to_supply_it(ray_head, monkeypatch, tmp_path):
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(
        ClusterError,
        match=rf"the Ray cluster at {ray_head.address} requires a token \(token "
        r"authentication is on\) and none was found: set RAY_AUTH_TOKEN",
    ):
        connect(ray_head.address, timeout=10)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "wrong")
    with pytest.raises(ClusterError, match=r"refused the token from RAY_AUTH_TOKEN \(HTTP 403\)"):
        connect(ray_head.address, timeout=10)


@pytest.mark.timeout(180)
def test_submit_ships_the_spec_and_ferray_then_jobs_logs_and_stop(with_token, tmp_path, capsys):
    conn = connect(with_token.address, timeout=30)
    lines: list[str] = []
    job = submit(None, conn, storage=f"file://{tmp_path / 'store'}", name="q1", echo=lines.append)
    assert lines[0] == f"submitted job {job.job_id} to {with_token.address}"
    assert f"follow: ferray logs {job.job_id} --address {with_token.address} --follow" in lines
    assert job.run == f"file://{tmp_path / 'store'}/q1"
    # the job's first line: the spec arrived in its working dir, ferray came with the job (py_modules)
    deadline, seen = time.monotonic() + 90, []
    while not any(line.startswith("ferray job: search") for line in seen):
        assert time.monotonic() < deadline, f"no first line from the job within 90 s: {seen[-10:]}"
        time.sleep(1)
        seen = []
        logs(job.job_id, conn, echo=seen.append)
    first = next(line for line in seen if line.startswith("ferray job: search"))
    assert "runtime_resources/py_modules_files" in first, first
    assert any("python -m ferray.cluster search quickstart.yaml --storage file://" in line for line in seen)
    listed = {j.job_id: j for j in jobs(conn)}
    assert listed[job.job_id].run == "q1" and listed[job.job_id].command == "search"
    assert listed[job.job_id].storage == f"file://{tmp_path / 'store'}"
    assert _cli(["jobs", "--address", with_token.address]) == 0
    assert job.job_id in capsys.readouterr().out
    assert stop(job.job_id, conn, timeout=90) == "STOPPED"
    assert stop(job.job_id, conn) == "STOPPED"  # stopping a stopped job is a no-op


@pytest.mark.timeout(180)
def test_submit_wait_follows_a_failing_job_to_its_end_and_exits_1(with_token, tmp_path, capsys):
    code = _cli(["submit", "--resume", f"file://{tmp_path / 'no-such-run'}", "--address", with_token.address, "--wait"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "nothing there (give the run folder on storage: STORAGE/NAME)" in out
    assert out.rstrip().splitlines()[-1].endswith(f"FAILED; run directory: file://{tmp_path / 'no-such-run'}")


@pytest.mark.timeout(60)
def test_an_unknown_job_is_named(with_token):
    with pytest.raises(
        ClusterError,
        match=r"no job 'raysubmit_nope' on http://127.0.0.1:\d+; `ferray jobs "
        r"--address http://127.0.0.1:\d+` lists them",
    ):
        logs("raysubmit_nope", with_token.address)
