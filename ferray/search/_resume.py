"""What makes a folder a resumable ferray sweep, and the checks before one is resumed.

A sweep's run directory holds ``ferray_run.json`` (the manifest): the resolved spec the
sweep started with, where its spec came from, the data fingerprint, the trial budget and
the Tune experiment path. :func:`check_resumable` refuses a folder that is not a sweep, a
spec edited since the start (listing each changed key) and data whose content changed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferray._config import flatten_keys
from ferray.errors import ConfigError, DataError
from ferray.run.layout import RunLayout
from ferray.run.manifest import MANIFEST_FORMAT, read_manifest, resolved_spec, update_manifest
from ferray.run.spec import SearchSpec, load_search_spec, read_run_spec
from ferray.run.status import get_status
from ferray.run.trial_record import retry_notes
from ferray.search._run import SearchResult, _Sweep

__all__ = [
    "check_resumable",
    "spec_differences",
    "Resumable",
    "resume_search",
]

#: Files every sweep's run directory holds.
_REQUIRED = RunLayout.REQUIRED
#: Spec keys a resumed sweep may change (they do not change what is searched).
#: Sections that act after the trials (or only on what the run folder keeps): editing them
#: between a stop and ``ferray resume`` changes no trial.
#: A warm start is applied once, when the sweep starts (``--warm-start`` records it in
#: spec.yaml, not in the spec file): a resumed sweep never reads it again.
_FREE = ("retention.", "ensemble.", "distill.", "tracking.", "search.warm_start.")


def spec_differences(before: dict, after: dict) -> list[str]:
    """``key.path: old -> new`` for each leaf that differs between two resolved specs.

    >>> spec_differences({"budget": {"trials": 6, "max_epochs": 6}}, {"budget": {"trials": 6, "max_epochs": 8}})
    ['budget.max_epochs: 6 -> 8']
    """
    a, b = flatten_keys(before), flatten_keys(after)
    lines = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            lines.append(f"{key}: {a[key]!r} -> (removed)")
        elif key not in a:
            lines.append(f"{key}: (absent) -> {b[key]!r}")
        elif a[key] != b[key]:
            lines.append(f"{key}: {a[key]!r} -> {b[key]!r}")
    return lines


def _search_changes(before: dict, after: dict) -> list[str]:
    """:func:`spec_differences` that change what is searched.

    Not counted: the keys in :data:`_FREE`, and settings one side does not know (a ferray
    that added or removed a setting since the sweep started; an edit always shows as a
    changed value, as both sides are resolved specs with every default filled in).
    """
    return [
        c
        for c in spec_differences(before, after)
        if not c.startswith(_FREE) and ": (absent) -> " not in c and not c.endswith(" -> (removed)")
    ]


@dataclass
class Resumable:
    """A checked run directory: its spec, data, fold plan, manifest and how many trials ended."""

    spec: SearchSpec
    data: Any
    plan: Any
    manifest: dict
    finished_trials: int
    errored: tuple[str, ...] = ()  # the ids of the errored trials

    @property
    def errored_trials(self) -> int:
        return len(self.errored)


def check_resumable(run: str | os.PathLike, echo=print) -> Resumable:
    """Check that ``run`` is a ferray sweep that can continue as it started.

    Raises:
        ConfigError: no such folder, not a ferray sweep, or its spec.yaml was edited.
        DataError: the data source now holds different data than the sweep started with.
    """
    from ferray.data import FoldPlan
    from ferray.training import load_data

    run = Path(run)
    if not run.is_dir():
        raise ConfigError(f"{run}: no such run directory (give the folder `ferray search` printed)")
    missing = [name for name in _REQUIRED if not (run / name).exists()]
    if missing:
        raise ConfigError(
            f"{run} is not a ferray run directory: it lacks {', '.join(missing)} (a sweep's folder holds "
            f"{', '.join(_REQUIRED)}, results.parquet and the Tune experiment state)"
        )
    manifest = read_manifest(run)
    if manifest["format"] != MANIFEST_FORMAT:
        raise ConfigError(
            f"{RunLayout(run).manifest}: format {manifest['format']} is not one this ferray reads ({MANIFEST_FORMAT})"
        )
    spec = read_run_spec(run)
    # What the run directory keeps never changes what is searched: retention may differ (and
    # runs from before the section existed lack it).
    changed = _search_changes(manifest["spec"], resolved_spec(spec))
    if changed:
        raise ConfigError(
            f"{run / 'spec.yaml'} was edited since the sweep started, so resuming would mix two searches:\n  "
            + "\n  ".join(changed)
            + "\nRestore those values to resume, or start a new sweep with `ferray search` on the edited spec."
        )
    source = manifest.get("spec_source")
    if source and Path(source).is_file():
        try:
            now = resolved_spec(load_search_spec(source, check_backbones=False))
        except ConfigError:
            now = None
        later = _search_changes(manifest["spec"], now) if now is not None else []
        if later:
            echo(
                f"note: {source} changed since this sweep started ("
                + "; ".join(later[:5])
                + f"); the sweep continues with the spec it started with ({run / 'spec.yaml'})"
            )
    plan = FoldPlan.load(RunLayout(run).folds)
    data = load_data(spec.base_config())
    fingerprint = data.fingerprint()
    if fingerprint != plan.data_fingerprint:
        raise DataError(
            f"the data of {spec.data.source!r} changed since the sweep started: fingerprint "
            f"{plan.data_fingerprint} ({len(plan.fold)} rows) then, {fingerprint} ({len(data)} rows) now. "
            "Resuming would train new trials on other data than the finished ones; restore the data or "
            "start a new sweep."
        )
    plan.check_matches(data)
    status = get_status(run, intervals=False) if RunLayout(run).results.exists() else {"counts": {}, "trials": []}
    finished = sum(n for s, n in status["counts"].items() if s in ("COMPLETED", "PRUNED", "ERROR"))
    errored = tuple(t["trial_id"] for t in status["trials"] if t["state"] == "ERROR")
    return Resumable(spec=spec, data=data, plan=plan, manifest=manifest, finished_trials=finished, errored=errored)


def resume_search(
    run_dir: str | os.PathLike,
    *,
    extend: int = 0,
    retry_errored: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    live: bool = True,
    verbose: bool = False,
    echo=print,
) -> SearchResult:
    """Continue an interrupted sweep from its run directory (or add ``extend`` trials to a finished one).

    Finished trials are never run again; unfinished ones continue from their last epoch
    checkpoint with the same fold plan, Optuna study, ASHA rungs and spec. Errored trials
    stay errored (their reason is in ``ferray status``) unless ``retry_errored``: then they
    too continue from their last checkpoint (a new Optuna trial records the retry, as
    Optuna cannot reopen a failed one).

    Raises:
        ConfigError: not a ferray run, or its spec was edited since the sweep started.
        DataError: the data's fingerprint changed.
        SearchInterrupted: stopped again (Ctrl-C).
    """
    from ray import tune

    from ferray.runtime.compat import restored_tuner_internals
    from ferray.runtime.logs import ray_logs_to
    from ferray.search._plan import is_uri

    t0 = time.perf_counter()
    if extend < 0:
        raise ConfigError(f"--extend {extend}: the number of trials to add must be >= 0")
    run = Path(run_dir).absolute()
    timings: dict[str, float] = {}
    checked = check_resumable(run, echo=echo)
    spec, data, plan, manifest = checked.spec, checked.data, checked.plan, checked.manifest
    trials = int(manifest["trials"]) + extend
    done = checked.finished_trials - (checked.errored_trials if retry_errored else 0)
    if done >= trials:
        echo(
            f"{run}: all {trials} trials of this sweep have ended; nothing to resume "
            f"(add trials with `ferray resume {run} --extend N`"
            + (
                f", retry the {checked.errored_trials} errored with --retry-errored)"
                if checked.errored_trials and not retry_errored
                else ")"
            )
        )
        return SearchResult(
            run_dir=run, status=get_status(run), plan=None, wall_seconds=time.perf_counter() - t0, timings=timings
        )
    timings["load_data"] = time.perf_counter() - t0
    echo(f"resuming {run}: {done} of {trials} trials ended" + (f" ({extend} added)" if extend else ""))
    if retry_errored and checked.errored:
        for note in retry_notes(run, checked.errored):
            echo(f"retry {note}")
    layout = RunLayout(run)
    echo(f"logs: {layout.log} (Ray's own lines{'; also shown here' if verbose else '; --verbose shows them here'})")
    with ray_logs_to(layout.log, verbose=verbose):
        sweep = _Sweep(
            spec,
            run,
            data,
            plan,
            ray_storage=None if not is_uri(manifest["experiment"]) else manifest["experiment"].rsplit("/", 1)[0],
            address=address,
            num_cpus=num_cpus,
            live=live,
            echo=echo,
            timings=timings,
            trials=trials,
            resume=True,
            verbose=verbose,
        )
        sweep.searcher.retry_errored = retry_errored
        if extend:
            update_manifest(run, trials=trials)
        t = time.perf_counter()
        tuner = tune.Tuner.restore(
            manifest["experiment"], trainable=sweep.trainable, resume_unfinished=True, resume_errored=retry_errored
        )
        # Tuner.restore rebuilds the searcher, scheduler and callbacks from the pickle written
        # when the sweep started (the scheduler's rungs empty, the callbacks' actor handles
        # gone); use this process's, whose state Tune then restores from the experiment checkpoint.
        internal = restored_tuner_internals(tuner)
        internal._tune_config = sweep.tune_config
        internal._run_config.callbacks = sweep.run_config.callbacks
        internal._run_config.failure_config = sweep.run_config.failure_config
        internal._run_config.verbose = sweep.run_config.verbose
        timings["restore"] = time.perf_counter() - t
        return sweep.fit(tuner, t0)
