"""Optuna behind Ray Tune: a seeded sampler, a study in the run directory, honest trial states.

Ray's stock ``OptunaSearch`` tells Optuna that a trial ASHA stopped early is COMPLETE
with its last (low-fidelity) value, so TPE learns from a 1-epoch accuracy as if it were a
finished run. Here the scheduler records the trials it stops and the searcher tells
Optuna those are PRUNED (their per-epoch values are already stored as intermediate
values), errored trials FAIL, and only trials that ran to their end are COMPLETE.
"""

from __future__ import annotations

import math
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from ferray.search._spec import SearchSpec

__all__ = ["PruningASHA", "PruneAwareOptunaSearch", "trial_state", "make_sampler", "study_storage",
           "startup_trials"]


def startup_trials(spec: SearchSpec) -> int:
    """Random trials before TPE starts modelling: ``search.n_startup_trials`` or a share of the budget."""
    if spec.search.n_startup_trials is not None:
        return spec.search.n_startup_trials
    return min(10, max(2, spec.budget.trials // 3))


def make_sampler(spec: SearchSpec):
    """The seeded Optuna sampler of ``spec.search``."""
    import optuna

    if spec.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.search.seed)
    multivariate = spec.search.multivariate
    conditional = any(p.when for p in spec.space.values())
    import warnings

    with warnings.catch_warnings():
        # multivariate/group are marked experimental in Optuna; they are what conditional spaces need.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=spec.search.seed,
            n_startup_trials=startup_trials(spec),
            multivariate=multivariate,
            group=multivariate and conditional,
            constant_liar=True,  # concurrent trials: do not all sample the same promising point
        )


def study_storage(run_dir: str | Path):
    """An Optuna ``RDBStorage`` on ``<run_dir>/optuna.db`` (open it with optuna-dashboard)."""
    import optuna

    path = Path(run_dir).absolute() / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path}")


def finished(result: dict | None, max_epochs: int) -> bool:
    """Whether a trial's last report is its own end: its last epoch, or its own early stopping.

    The fold workers mark that report ``final`` (Tune overwrites a result's ``done`` key when
    it stops a trial, so ``done`` cannot tell).
    """
    if not result:
        return False
    epoch = result.get("epoch")
    return bool(result.get("final") or result.get("stopped_early")) or (isinstance(epoch, (int, float)) and epoch >= max_epochs)


def trial_state(result: dict | None, *, error: bool, pruned: bool, metric: str,
                max_epochs: int) -> tuple[str, float | None]:
    """The Optuna state name and value to tell for a finished Tune trial.

    ``error`` -> FAIL; stopped by the scheduler (``pruned``) or ended before its last epoch
    without an error (time limit, interrupt) -> PRUNED, with no value (Optuna takes the
    last intermediate value); a finite final value -> COMPLETE; NaN/inf/missing -> FAIL.

    >>> trial_state({"metric": 0.5, "epoch": 3}, error=False, pruned=False, metric="metric", max_epochs=3)
    ('COMPLETE', 0.5)
    >>> trial_state({"metric": 0.3, "epoch": 1}, error=False, pruned=True, metric="metric", max_epochs=3)
    ('PRUNED', None)
    """
    if error:
        return "FAIL", None
    if pruned or (result is not None and not finished(result, max_epochs)):
        return "PRUNED", None
    value = (result or {}).get(metric)
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "FAIL", None
    return "COMPLETE", float(value)


class PruningASHA(ASHAScheduler):
    """ASHA that remembers which trials it stopped before their last epoch.

    ``pruned`` holds their Tune trial ids and ``pruned_at`` the epoch each was stopped at.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pruned: set[str] = set()
        self.pruned_at: dict[str, int] = {}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and not result.get("stopped_early"):
            at = result.get(self._time_attr)
            if at is not None and at < self._max_t:
                self.pruned.add(trial.trial_id)
                self.pruned_at[trial.trial_id] = int(at)
        return action


class PruneAwareOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells PRUNED for trials the scheduler stopped, FAIL for errors.

    Args:
        scheduler: the :class:`PruningASHA` of the same run (``None``: nothing is pruned by
            a scheduler, e.g. TPE without early stopping).
        **kwargs: :class:`ray.tune.search.optuna.OptunaSearch` arguments.
    """

    def __init__(self, *args, max_epochs: int, scheduler: PruningASHA | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._scheduler = scheduler
        self._max_epochs = max_epochs
        self._reported: dict[str, set[int]] = {}
        self.states: dict[str, str] = {}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        super().on_trial_result(trial_id, result)
        self._reported.setdefault(trial_id, set()).add(int(result.get("training_iteration", 0)))

    def _pruned(self, trial_id: str) -> bool:
        scheduler = getattr(self, "_scheduler", None)
        if scheduler is not None:
            return trial_id in scheduler.pruned
        return trial_id in getattr(self, "_pruned_ids", ())

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        import optuna

        state, value = trial_state(result, error=error, pruned=self._pruned(trial_id), metric=self._metric,
                                   max_epochs=self._max_epochs)
        ot_trial = self._ot_trials[trial_id]
        # Tune hands the result that made the scheduler stop a trial (and a trial's last
        # result) to on_trial_complete only: record it as an intermediate value too.
        step = int((result or {}).get("training_iteration", 0))
        value_now = (result or {}).get(self._metric)
        if (not error and step and step not in self._reported.get(trial_id, set())
                and isinstance(value_now, (int, float)) and math.isfinite(value_now)):
            ot_trial.report(float(value_now), step)
        try:
            self._ot_study.tell(ot_trial, value, state=getattr(optuna.trial.TrialState, state))
        except Exception as exc:  # never let bookkeeping stop the sweep; keep the reason visible
            import logging

            logging.getLogger(__name__).warning("could not tell Optuna trial %s %s: %s", trial_id, state, exc)
        self.states[trial_id] = state
        self._completed_trials.add(trial_id)

    def ot_number(self, trial_id: str) -> int | None:
        """The Optuna trial number of a Tune trial (for the results table)."""
        t = self._ot_trials.get(trial_id)
        return None if t is None else t.number

    def save(self, checkpoint_path: str) -> None:
        # Tune checkpoints the searcher with the experiment state; the scheduler is saved
        # on its own, so keep only the ids it pruned.
        import pickle

        state = self.__dict__.copy()
        scheduler = state.pop("_scheduler", None)
        state["_pruned_ids"] = set(getattr(scheduler, "pruned", ()))
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)
