"""Optuna behind Ray Tune: a seeded sampler, a study in the run directory, honest trial states.

Ray's stock ``OptunaSearch`` tells Optuna that a trial ASHA stopped early is COMPLETE
with its last (low-fidelity) value, so TPE learns from a 1-epoch accuracy as if it were a
finished run. Here the scheduler records the trials it stops and the searcher tells
Optuna those are PRUNED (their per-epoch values are already stored as intermediate
values), errored trials FAIL, and only trials that ran to their end are COMPLETE.
"""

from __future__ import annotations

import logging
import math
import pickle
import warnings
from pathlib import Path

import numpy as np
from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from ferray.run.layout import RunLayout
from ferray.run.spec import SearchSpec
from ferray.run.warm_start import COLD, ORIGIN_ATTR

__all__ = [
    "PruningASHA",
    "PruneAwareOptunaSearch",
    "SchedulerState",
    "trial_state",
    "make_sampler",
    "seed_sampler",
    "study_storage",
    "startup_trials",
    "TUNE_TRIAL_ATTR",
]

#: Optuna user attribute naming the Tune trial an Optuna trial belongs to.
TUNE_TRIAL_ATTR = "tune_trial_id"


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

    path = RunLayout(Path(run_dir).absolute()).study
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
    return bool(result.get("final") or result.get("stopped_early")) or (
        isinstance(epoch, (int, float)) and epoch >= max_epochs
    )


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def trial_state(
    result: dict | None, *, error: bool, pruned: bool, metric: str | list[str], max_epochs: int
) -> tuple[str, float | list[float] | None]:
    """The Optuna state name and value(s) to tell for a finished Tune trial.

    ``error`` -> FAIL; stopped by the scheduler (``pruned``) or ended before its last epoch
    without an error (time limit, interrupt) -> PRUNED, with no value (Optuna takes the
    last intermediate value); a finite final value -> COMPLETE; NaN/inf/missing -> FAIL.
    With several objectives (``metric`` a list) the value is the list of their values, every
    one finite for COMPLETE.

    >>> trial_state({"metric": 0.5, "epoch": 3}, error=False, pruned=False, metric="metric", max_epochs=3)
    ('COMPLETE', 0.5)
    >>> trial_state({"metric": 0.3, "epoch": 1}, error=False, pruned=True, metric="metric", max_epochs=3)
    ('PRUNED', None)
    >>> trial_state({"a": 0.5, "b": 2.0, "epoch": 3}, error=False, pruned=False, metric=["a", "b"], max_epochs=3)
    ('COMPLETE', [0.5, 2.0])
    """
    if error:
        return "FAIL", None
    if pruned or (result is not None and not finished(result, max_epochs)):
        return "PRUNED", None
    if isinstance(metric, list):
        values = [(result or {}).get(m) for m in metric]
        if not all(_finite(v) for v in values):
            return "FAIL", None
        return "COMPLETE", [float(v) for v in values]
    value = (result or {}).get(metric)
    if not _finite(value):
        return "FAIL", None
    return "COMPLETE", float(value)


def seed_sampler(sampler, seed: int, number: int) -> None:
    """Seed ``sampler`` for trial ``number`` alone.

    Trial n's parameters then depend on the seed and what the study holds, not on how many
    draws the sampler made before: a sweep resumed from a searcher state saved a few trials
    back samples what the uninterrupted sweep sampled, instead of drawing an earlier trial's
    parameters again. (Optuna's samplers keep one ``numpy`` generator; they have no per-trial seed.)
    """

    state = int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])
    for part in (sampler, getattr(sampler, "_random_sampler", None)):
        rng = getattr(getattr(part, "_rng", None), "rng", None)
        if isinstance(rng, np.random.RandomState):
            rng.seed(state)


def _running():
    import optuna

    return optuna.trial.TrialState.RUNNING


class PruningASHA(ASHAScheduler):
    """ASHA that remembers which trials it stopped before their last epoch, and whose rungs survive a restart.

    ``pruned`` holds their Tune trial ids and ``pruned_at`` the epoch each was stopped at.
    Ray rebuilds a restored experiment's scheduler from the pickle it wrote when the
    experiment started, so the rung records would be lost; :meth:`state_dict` and
    :meth:`load_state_dict` carry them (see :class:`SchedulerState`). The time attribute is
    the fold workers' own ``epoch`` counter, which a resumed trial continues from its
    checkpoint, not Tune's ``training_iteration``, which restarts.
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

    def state_dict(self) -> dict:
        """The rung records, trial-to-bracket map and pruning record (plain, picklable data)."""
        return {
            "rungs": [[(milestone, dict(recorded)) for milestone, recorded in b._rungs] for b in self._brackets],
            "trial_bracket": {tid: self._brackets.index(b) for tid, b in self._trial_info.items()},
            "num_stopped": self._num_stopped,
            "pruned": sorted(self.pruned),
            "pruned_at": dict(self.pruned_at),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` gave (same brackets, grace period and reduction factor)."""
        rungs = state["rungs"]
        if [[m for m, _ in b] for b in rungs] != [[m for m, _ in b._rungs] for b in self._brackets]:
            raise ValueError("the saved ASHA rungs do not match this scheduler's milestones")
        for bracket, saved in zip(self._brackets, rungs):
            bracket._rungs = [(milestone, dict(recorded)) for milestone, recorded in saved]
        self._trial_info = {tid: self._brackets[i] for tid, i in state["trial_bracket"].items()}
        self._num_stopped = state["num_stopped"]
        self.pruned = set(state["pruned"])
        self.pruned_at = dict(state["pruned_at"])

    def on_trial_add(self, tune_controller, trial) -> None:
        # A restored trial keeps the bracket its rung records are in.
        if trial.trial_id not in self._trial_info:
            super().on_trial_add(tune_controller, trial)


class SchedulerState(Callback):
    """Saves the scheduler's rung state with Tune's experiment checkpoint and restores it on resume.

    Tune checkpoints callbacks' :meth:`get_state` together with the trials' states, so the
    rungs restored are exactly as current as the trials restored.
    """

    def __init__(self, scheduler) -> None:  # PruningASHA or MultiObjectiveASHA
        self.scheduler = scheduler

    def get_state(self) -> dict:
        return {"asha": self.scheduler.state_dict()}

    def set_state(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["asha"])


class PruneAwareOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells PRUNED for trials the scheduler stopped, FAIL for errors.

    With ``metric`` and ``mode`` lists the study has several objectives (Optuna's
    ``directions``): a trial that ran to its end is told the values of all of them, a
    stopped one PRUNED, and no intermediate values are reported (Optuna keeps none for a
    multi-objective trial; the scheduler ranks the epochs' vectors itself).

    Args:
        scheduler: the :class:`PruningASHA` or
            :class:`~ferray.search._moasha.MultiObjectiveASHA` of the same run (``None``:
            nothing is pruned by a scheduler, e.g. TPE without early stopping).
        **kwargs: :class:`ray.tune.search.optuna.OptunaSearch` arguments.
    """

    def __init__(self, *args, max_epochs: int, scheduler=None, seed: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._trial_seed = seed
        self._scheduler = scheduler
        self._max_epochs = max_epochs
        self._reported: dict[str, set[int]] = {}
        self._orphans: list[int] = []
        self._reserved: dict[str, int] = {}
        self.states: dict[str, str] = {}
        self.retry_errored = False

    def _setup_study(self, mode):
        # Optuna announces every study at INFO on its own handler; ferray's header says it.
        import optuna

        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
        try:
            return super()._setup_study(mode)
        finally:
            optuna.logging.set_verbosity(verbosity)

    @staticmethod
    def _step(result: dict) -> int:
        # The fold workers' epoch (continues across a resume), not Tune's iteration (restarts).
        return int(result.get("epoch") or result.get("training_iteration") or 0)

    def suggest(self, trial_id: str) -> dict | None:
        import optuna

        if trial_id not in self._ot_trials:
            # A trial Optuna handed out just before an interruption that Tune never recorded:
            # give its parameters to this Tune trial, so no Optuna trial is left dangling. A
            # reserved one goes to the Tune trial of its own id (see :meth:`reserve`).
            orphan = self._reserved.pop(trial_id, None)
            if orphan is None and self._orphans:
                orphan = self._orphans.pop(0)
            if orphan is not None:
                self._ot_trials[trial_id] = optuna.Trial(self._ot_study, orphan)
            if getattr(self, "_trial_seed", None) is not None and self._ot_study is not None:
                # Seeded by the Optuna trial's own number: an orphan killed between Optuna's
                # ask and its sampling draws its parameters now, as the uninterrupted sweep did.
                number = self._ot_trials[trial_id].number if orphan is not None else len(self._study_trials())
                seed_sampler(self._ot_study.sampler, self._trial_seed, number)
        config = super().suggest(trial_id)
        self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        return config

    # -- reconciling a restored sweep with its study ---------------------------------------------

    def _study_trials(self, states=None) -> list:
        return self._ot_study.get_trials(deepcopy=False, states=states)

    def adopt(self, tune_trials: set[str]) -> None:
        """Bind the Tune trials a restored sweep knows to their Optuna trials.

        Tune writes its trial list before the searcher's state, so a kill between the two
        restores a trial the searcher never saw: its Optuna trial (found by
        :data:`TUNE_TRIAL_ATTR`) is bound to it, not handed to another trial as an orphan.
        """
        import optuna

        by_tune = {t.user_attrs.get(TUNE_TRIAL_ATTR): t for t in self._study_trials()}
        for tid in sorted(tune_trials - set(self._ot_trials)):
            frozen = by_tune.get(tid)
            if frozen is None:
                continue
            self._ot_trials[tid] = optuna.Trial(self._ot_study, frozen._trial_id)
            if frozen._trial_id in self._orphans:
                self._orphans.remove(frozen._trial_id)
            self._sync_from_storage(tid)

    def reserve(self, trial_id: str) -> bool:
        """Keep the orphaned Optuna trial of Tune trial ``trial_id`` for a new Tune trial of that id.

        A trial that was started but that Tune never recorded (killed during its start-up)
        continues under its own id and Optuna trial (:meth:`reserved_ids`). False when the
        study holds no such running trial.
        """
        for frozen in self._study_trials(states=(_running(),)):
            if frozen.user_attrs.get(TUNE_TRIAL_ATTR) == trial_id and frozen._trial_id in self._orphans:
                self._orphans.remove(frozen._trial_id)
                self._reserved[trial_id] = frozen._trial_id
                return True
        return False

    def reserved_ids(self) -> list[str]:
        """Tune trial ids waiting to be continued (new trials take these ids first)."""
        return list(self._reserved)

    def close_orphans(self, reason: str) -> int:
        """Tell FAIL for Optuna trials no Tune trial took (a finished sweep leaves none RUNNING)."""
        import optuna

        closed = 0
        for storage_id in [*self._orphans, *self._reserved.values()]:
            try:
                self._ot_study._storage.set_trial_user_attr(storage_id, "closed", reason)
                self._ot_study.tell(optuna.Trial(self._ot_study, storage_id), state=optuna.trial.TrialState.FAIL)
                closed += 1
            except Exception as exc:  # noqa: BLE001 - bookkeeping never stops the sweep
                logging.getLogger(__name__).warning("could not close Optuna trial %s: %s", storage_id, exc)
        self._orphans, self._reserved = [], {}
        return closed

    def _sync_from_storage(self, trial_id: str) -> None:
        """Take a trial's reported epochs and end from the study, the authority after a kill."""
        ot = self._ot_trials[trial_id]
        frozen = self._ot_study._storage.get_trial(ot._trial_id)
        self._reported[trial_id] = {int(step) for step in frozen.intermediate_values}
        if frozen.state.is_finished():
            self._completed_trials.add(trial_id)
            self.states[trial_id] = frozen.state.name

    def _reopen(self, trial_id: str) -> None:
        """A FAILed trial that a resumed sweep retries gets a new Optuna trial with its parameters.

        Optuna cannot reopen a finished trial; the new one carries the same ``tune_trial_id``
        and ``retry_of`` (the failed trial's number), so the study keeps both records.
        """
        if not self.retry_errored:
            return
        checked = self.__dict__.setdefault("_checked_live", set())
        old = self._ot_trials.get(trial_id)
        if old is None or trial_id in checked:
            return
        # The study's storage is the authority: the searcher state Tune restored may predate
        # the failure it recorded (an experiment checkpoint taken just before the trial failed).
        checked.add(trial_id)
        if self._ot_study._storage.get_trial(old._trial_id).state.name != "FAIL":
            return
        origin = {k: v for k, v in old.user_attrs.items() if k == ORIGIN_ATTR}
        self._ot_study.enqueue_trial(old.params, user_attrs=origin, skip_if_exists=False)
        new = self._ot_study.ask()
        self._suggest_from_define_by_run_func(self._space, new)
        new.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        new.set_user_attr("retry_of", old.number)
        self._ot_trials[trial_id] = new
        self._completed_trials.discard(trial_id)
        self._reported[trial_id] = set()
        self.states.pop(trial_id, None)

    @property
    def multi_objective(self) -> bool:
        """Whether the study has several objectives (``metric`` and ``mode`` lists)."""
        return isinstance(self._metric, list)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._reopen(trial_id)
        if trial_id in self._completed_trials or trial_id not in self._ot_trials or self.multi_objective:
            return  # Optuna keeps no intermediate values of a multi-objective trial
        value, step = result.get(self._metric), self._step(result)
        if step in self._reported.get(trial_id, set()):
            return  # an epoch recomputed after a resume: Optuna keeps the first value
        if isinstance(value, (int, float)) and math.isfinite(value):
            self._ot_trials[trial_id].report(float(value), step)
        self._reported.setdefault(trial_id, set()).add(step)

    def _pruned(self, trial_id: str) -> bool:
        scheduler = getattr(self, "_scheduler", None)
        if scheduler is not None:
            return trial_id in scheduler.pruned
        return trial_id in getattr(self, "_pruned_ids", ())

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._reopen(trial_id)
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        import optuna

        state, value = trial_state(
            result, error=error, pruned=self._pruned(trial_id), metric=self._metric, max_epochs=self._max_epochs
        )
        ot_trial = self._ot_trials[trial_id]
        # Tune hands the result that made the scheduler stop a trial (and a trial's last
        # result) to on_trial_complete only: record it as an intermediate value too.
        step = self._step(result or {})
        value_now = None if self.multi_objective else (result or {}).get(self._metric)
        if (
            not error
            and step
            and step not in self._reported.get(trial_id, set())
            and isinstance(value_now, (int, float))
            and math.isfinite(value_now)
        ):
            ot_trial.report(float(value_now), step)
        try:
            self._ot_study.tell(ot_trial, value, state=getattr(optuna.trial.TrialState, state))
        except Exception as exc:  # never let bookkeeping stop the sweep; keep the reason visible
            logging.getLogger(__name__).warning("could not tell Optuna trial %s %s: %s", trial_id, state, exc)
        self.states[trial_id] = state
        self._completed_trials.add(trial_id)

    @property
    def study(self):
        """The run's Optuna study (a warm start adds its history and configurations to it)."""
        return self._ot_study

    def origin(self, trial_id: str) -> str:
        """Where a Tune trial's configuration came from: ``cold`` or ``enqueued:<source>``.

        See :mod:`ferray.run.warm_start`.
        """
        t = self._ot_trials.get(trial_id)
        return COLD if t is None else str(t.user_attrs.get(ORIGIN_ATTR, COLD))

    def ot_number(self, trial_id: str) -> int | None:
        """The Optuna trial number of a Tune trial (for the results table)."""
        t = self._ot_trials.get(trial_id)
        return None if t is None else t.number

    def save(self, checkpoint_path: str) -> None:
        # Tune checkpoints the searcher with the experiment state; the scheduler is saved
        # on its own, so keep only the ids it pruned.

        state = self.__dict__.copy()
        state.pop("_checked_live", None)  # which trials this process checked: not part of the search
        scheduler = state.pop("_scheduler", None)
        state["_pruned_ids"] = set(getattr(scheduler, "pruned", ()))
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        """Tune's searcher restore, rebound to this run's live study, scheduler and storage.

        The saved state's study object points at the storage path of the original run; the
        live one (built from the run directory) is kept, the saved Optuna trials are bound to
        it, and Optuna trials left RUNNING that no Tune trial knows (asked for just before an
        interruption) are queued to be handed to the next new Tune trials.
        """
        import optuna

        live = {k: self.__dict__.get(k) for k in ("_scheduler", "_ot_study", "_storage", "retry_errored")}
        super().restore(checkpoint_path)
        self._scheduler, self.retry_errored = live["_scheduler"], live["retry_errored"]
        if isinstance(live["_storage"], optuna.storages.RDBStorage):
            # The same database, possibly moved with its run directory: use this run's path.
            self._storage, self._ot_study = live["_storage"], live["_ot_study"]
            self._ot_trials = {tid: optuna.Trial(self._ot_study, t._trial_id) for tid, t in self._ot_trials.items()}
        study = self._ot_study
        if self._sampler is not None:
            study.sampler = self._sampler
        known = {t._trial_id for t in self._ot_trials.values()}
        self._orphans = [
            t._trial_id
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if t._trial_id not in known
        ]
        self._reserved = {}
        # The saved state may predate reports and ends the study has since recorded.
        for tid in list(self._ot_trials):
            self._sync_from_storage(tid)
