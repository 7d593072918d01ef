"""After a sweep, the stages its spec asks for: ensemble -> distill -> export.

:func:`finish_run` is what ``ferray search`` and ``ferray resume`` run once the trials have
ended (and what a Python user calls after :func:`ferray.search.run_search`): it ensembles
the best finished trials (``ensemble:`` section, ``enabled: true`` by default), distills the
chosen ensemble into a student when ``distill.enabled``, and exports the bundle
(``ensemble.export``, on by default) to ``RUN/bundle``. It sits above the stages it runs,
so none of them imports another stage's code to do this.

>>> from ferray.search import run_search
>>> from ferray.pipeline import finish_run
>>> result = run_search("search_spaces/quickstart.yaml")    # doctest: +SKIP
>>> finish_run(result.run_dir).bundle                         # doctest: +SKIP
PosixPath('runs/quickstart-.../bundle')
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferray.run.layout import RunLayout
from ferray.run.retention import apply_retention
from ferray.run.spec import read_run_spec
from ferray.run.status import get_status

__all__ = ["finish_run", "FinishResult", "ensemble_members_available"]


@dataclass
class FinishResult:
    """What :func:`finish_run` did: each stage's result, or why it was skipped."""

    run_dir: Path
    ensemble: Any = None
    distill: Any = None
    bundle: Path | None = None
    retention: Any = None
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def ensemble_members_available(run_dir: str | os.PathLike, include_pruned: bool = False) -> int:
    """Finished trials of a run that left the prediction files an ensemble needs."""

    layout = RunLayout(run_dir)
    if not layout.results.exists():
        return 0
    states = ("COMPLETED", "PRUNED") if include_pruned else ("COMPLETED",)
    return sum(
        1
        for t in get_status(layout.root, intervals=False)["trials"]
        if t["state"] in states
        and t["metric"] is not None
        and layout.trial(t["trial_id"]).oof.is_file()
        and layout.trial(t["trial_id"]).holdout.is_file()
    )


def finish_run(
    run_dir: str | os.PathLike, *, address: str | None = None, num_cpus: int | None = None, echo=print
) -> FinishResult:
    """Run the post-sweep stages the run's spec enables; return what each produced.

    A stage that cannot run (no finished trial, distillation off) is skipped with its reason
    in :attr:`FinishResult.skipped`; a stage that fails raises (its own error, naming the
    file or setting), leaving earlier stages' outputs in place.
    """
    layout = RunLayout(Path(run_dir).absolute())
    spec = read_run_spec(layout.root)
    out = FinishResult(run_dir=layout.root)
    if not spec.ensemble.enabled:
        out.skipped["ensemble"] = "ensemble.enabled is false"
        out.skipped["distill"] = out.skipped["export"] = "no ensemble"
        return out
    available = ensemble_members_available(layout.root)
    if available == 0:
        out.skipped["ensemble"] = "no trial finished with out-of-fold predictions"
        out.skipped["distill"] = out.skipped["export"] = "no ensemble"
        echo(f"ensemble: skipped ({out.skipped['ensemble']})")
        return out

    from ferray.ensemble import build_ensembles

    top = min(spec.ensemble.top_k, available)
    if top < spec.ensemble.top_k:
        echo(
            f"ensemble: {available} finished trial(s) with predictions, fewer than ensemble.top_k = "
            f"{spec.ensemble.top_k}; using {top}"
        )
    t = time.perf_counter()
    out.ensemble = build_ensembles(layout.root, top=top, echo=echo)
    out.seconds["ensemble"] = time.perf_counter() - t
    # Trials that are neither members nor near the top no longer need their weights.

    out.retention = apply_retention(layout.root)

    if spec.distill.enabled:
        from ferray.distill import distill_run

        t = time.perf_counter()
        out.distill = distill_run(layout.root, address=address, num_cpus=num_cpus, echo=echo)
        out.seconds["distill"] = time.perf_counter() - t
    else:
        out.skipped["distill"] = "distill.enabled is false"

    if spec.ensemble.export:
        from ferray.export import export_run

        t = time.perf_counter()
        out.bundle = Path(export_run(layout.root, echo=echo))
        out.seconds["export"] = time.perf_counter() - t
    else:
        out.skipped["export"] = "ensemble.export is false"
    return out
