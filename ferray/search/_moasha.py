"""Multi-objective ASHA: each rung promotes by Pareto rank, not by one score.

Asynchronous successive halving (Li et al. 2020) with the promotion rule of MO-ASHA
(Schmucker et al. 2021): a trial reaching a rung's milestone is ranked among the objective
vectors the rung has recorded (itself included) by non-dominated sorting, ties within a
front broken by crowding distance and then by the first objective
(:func:`ferray.run.pareto.rank_keys`); it continues when fewer than ``n / reduction_factor``
of the ``n`` vectors rank strictly before it, else it is stopped (pruned). Equal vectors
are ties and share a decision. The first trial at a rung always continues.

The rungs are those of Ray's ``ASHAScheduler`` with one bracket: ``grace_period x
reduction_factor^k`` epochs below ``max_t``. Cost objectives (latency, parameters, MACs)
are fixed by the architecture, so the fold workers report them with every epoch and a
rung's vectors are complete from the first rung on. Like :class:`PruningASHA`, the
scheduler records the trials it stopped before their last epoch, and its rungs survive a
restart through :meth:`state_dict` / :meth:`load_state_dict` (see :class:`SchedulerState`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ferray.run.pareto import MODES, rank_keys

__all__ = ["MultiObjectiveASHA", "milestones"]


def milestones(grace_period: int, max_t: int, reduction_factor: float) -> list[float]:
    """The rungs' epochs, highest first (those of Ray's ``ASHAScheduler`` with one bracket)."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor**k for k in reversed(range(count))]


class MultiObjectiveASHA(FIFOScheduler):
    """ASHA over several objectives (see the module docstring).

    Args:
        objectives: ``(result key, "max" | "min")`` per objective, the first the primary.
        time_attr: the result key counting a trial's progress (the fold workers' ``epoch``,
            which a resumed trial continues from its checkpoint).
        max_t: the epochs of a trial that is never stopped.
        grace_period: epochs every trial runs before it may be stopped.
        reduction_factor: a rung continues the best ``1 / reduction_factor`` of its trials.
    """

    def __init__(
        self,
        objectives: Sequence[tuple[str, str]],
        *,
        time_attr: str = "epoch",
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 3,
    ) -> None:
        super().__init__()
        if not objectives:
            raise ValueError("objectives is empty; give at least one (result key, 'max' | 'min')")
        for key, mode in objectives:
            if mode not in MODES:
                raise ValueError(f"the mode of objective {key!r} is {mode!r}, but must be one of {', '.join(MODES)}")
        if not 1 <= grace_period <= max_t:
            raise ValueError(f"grace_period is {grace_period}, but must be >= 1 and <= max_t = {max_t}")
        if reduction_factor < 2:
            raise ValueError(f"reduction_factor is {reduction_factor}, but must be >= 2")
        self.objectives = [(str(key), str(mode)) for key, mode in objectives]
        self._keys = [key for key, _ in self.objectives]
        self._modes = [mode for _, mode in self.objectives]
        self._metric = self._keys[0]  # Tune checks every result carries the scheduler's metric
        self._time_attr = time_attr
        self._max_t = max_t
        self._rf = float(reduction_factor)
        self._rungs: list[tuple[float, dict[str, list[float]]]] = [
            (m, {}) for m in milestones(grace_period, max_t, reduction_factor)
        ]
        self._num_stopped = 0
        self.pruned: set[str] = set()
        self.pruned_at: dict[str, int] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        # The objectives are this scheduler's own; TuneConfig's one metric names the primary.
        return True

    # -- the promotion rule -----------------------------------------------------------------

    def promotes(self, recorded: Sequence[Sequence[float]], vector: Sequence[float]) -> bool:
        """Whether ``vector`` continues at a rung that has recorded ``recorded`` before it."""
        if not recorded:
            return True
        points = [list(v) for v in recorded] + [list(vector)]
        keys = rank_keys(points, self._modes)
        before = sum(key < keys[-1] for key in keys)
        return before < len(points) / self._rf

    def _vector(self, result: dict) -> list[float] | None:
        values = [result.get(key) for key in self._keys]
        if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
            return None
        return [float(v) for v in values]

    def _on_rung(self, trial_id: str, at: float, vector: list[float]) -> str:
        """Record ``vector`` at the highest rung ``at`` reached that has not recorded this trial."""
        for milestone, recorded in self._rungs:  # highest first
            if at < milestone or trial_id in recorded:
                continue
            action = TrialScheduler.CONTINUE if self.promotes(list(recorded.values()), vector) else TrialScheduler.STOP
            recorded[trial_id] = vector
            return action
        return TrialScheduler.CONTINUE

    # -- Tune's scheduler interface ------------------------------------------------------------

    def on_trial_add(self, tune_controller, trial) -> None:
        pass

    def on_trial_error(self, tune_controller, trial) -> None:
        pass

    def on_trial_remove(self, tune_controller, trial) -> None:
        pass

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        at = result.get(self._time_attr)
        vector = self._vector(result)
        if not isinstance(at, (int, float)) or vector is None:
            return TrialScheduler.CONTINUE
        if at >= self._max_t:
            action = TrialScheduler.STOP  # its last epoch: finished, not pruned
        else:
            action = self._on_rung(trial.trial_id, at, vector)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
            if at < self._max_t and not result.get("stopped_early"):
                self.pruned.add(trial.trial_id)
                self.pruned_at[trial.trial_id] = int(at)
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        at = (result or {}).get(self._time_attr)
        vector = self._vector(result or {})
        if isinstance(at, (int, float)) and vector is not None:
            self._on_rung(trial.trial_id, at, vector)

    def debug_string(self) -> str:
        rungs = " | ".join(f"epoch {m:g}: {len(r)} recorded" for m, r in self._rungs)
        return f"MultiObjectiveASHA over {', '.join(self._keys)}: {self._num_stopped} stopped; {rungs}"

    # -- state across a restart ------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The objectives, every rung's recorded vectors and the pruning record (plain data)."""
        return {
            "objectives": [list(o) for o in self.objectives],
            "rungs": [
                (milestone, {tid: list(v) for tid, v in recorded.items()}) for milestone, recorded in self._rungs
            ],
            "num_stopped": self._num_stopped,
            "pruned": sorted(self.pruned),
            "pruned_at": dict(self.pruned_at),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` gave (same objectives and rungs)."""
        saved = [tuple(o) for o in state.get("objectives", ())]
        if saved != [tuple(o) for o in self.objectives]:
            raise ValueError(f"the saved scheduler ranked objectives {saved}, this one ranks {self.objectives}")
        if [m for m, _ in state["rungs"]] != [m for m, _ in self._rungs]:
            raise ValueError("the saved rungs do not match this scheduler's milestones")
        self._rungs = [(m, {tid: list(v) for tid, v in recorded.items()}) for m, recorded in state["rungs"]]
        self._num_stopped = state["num_stopped"]
        self.pruned = set(state["pruned"])
        self.pruned_at = dict(state["pruned_at"])

    def recorded(self, milestone: float) -> dict[str, list[float]]:
        """The vectors recorded at the rung of ``milestone`` (trial id -> values)."""
        for m, recorded in self._rungs:
            if m == milestone:
                return {tid: list(v) for tid, v in recorded.items()}
        raise KeyError(f"no rung at {milestone}; rungs: {[m for m, _ in self._rungs]}")
