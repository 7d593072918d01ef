"""Tune callbacks that run on the sweep's driver: results table, TensorBoard, live view, stall guard.

They only observe (the stall guard excepted): a failure inside one (a full disk, a terminal
that went away) is logged and never stops the sweep. They run on Tune's event loop, so
file writes go to one background thread (:class:`BackgroundWriter`): a callback costs
microseconds, not the seconds a TensorBoard import or a Parquet write on a slow disk take.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from ferray.search._optuna import finished
from ferray.search._results import ResultsTable

__all__ = [
    "ResultsCallback",
    "TensorBoardCallback",
    "LiveView",
    "StallGuard",
    "RetentionCallback",
    "BackgroundWriter",
    "error_reason",
]

logger = logging.getLogger(__name__)

_SCALARS = (
    "metric",
    "val_accuracy_mean",
    "val_accuracy_std",
    "val_macro_f1_mean",
    "val_macro_f1_std",
    "val_loss_mean",
    "val_loss_std",
    "val_au_f1_mean",
    "train_loss_mean",
    "lr",
    "epoch_seconds",
)


def error_reason(trial) -> str:
    """The last meaningful line of a Tune trial's error (the worker's message, not Ray's frames)."""
    text = ""
    try:
        text = trial.get_error() or ""
    except Exception:  # noqa: BLE001 - the error file may be unreadable; fall back below
        pass
    if not text:
        # Before Tune syncs the driver's artifacts the error file exists only locally.
        try:
            local = getattr(trial, "error_file", None)
            text = Path(local).read_text() if local and Path(local).is_file() else ""
        except OSError:
            text = ""
    if not text:
        text = str(getattr(trial, "error_msg", "") or "")
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    # Prefer the innermost "SomeError: message" line (ferray's own errors end in Failed, Stalled, Error).
    for line in reversed(lines):
        head = line.split(": ", 1)[0]
        if (
            ": " in line
            and not line.startswith("File ")
            and head.rsplit(".", 1)[-1].endswith(("Error", "Exception", "Failed", "Stalled"))
        ):
            return f"{head.rsplit('.', 1)[-1]}: {line.split(': ', 1)[1]}"[:500]
    return (lines[-1] if lines else "unknown error")[:500]


class BackgroundWriter:
    """One daemon thread that runs file writes handed over by callbacks, in order.

    ``submit(key, fn)`` with a key replaces a not-yet-run job of the same key (a newer
    results table supersedes an older one). :meth:`flush` waits, with a bound, until every
    job submitted so far has run.
    """

    def __init__(self, name: str = "ferray-writer") -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._latest: dict[str, int] = {}
        self._lock = threading.Lock()
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: str | None, fn) -> None:
        with self._lock:
            self._seq += 1
            if key is not None:
                self._latest[key] = self._seq
            self._jobs.put((self._seq, key, fn))

    def _run(self) -> None:
        while True:
            seq, key, fn = self._jobs.get()
            try:
                with self._lock:
                    stale = key is not None and self._latest.get(key, seq) != seq
                if fn is not None and not stale:
                    fn()
            except Exception as exc:  # noqa: BLE001 - a bookkeeping write never stops the sweep
                logger.warning("background write %s failed: %s", key or "", exc)
            finally:
                self._jobs.task_done()

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every submitted job ran; False (and a warning) past ``timeout`` seconds."""
        done = threading.Event()
        self.submit(None, done.set)
        if not done.wait(timeout):
            logger.warning("results/TensorBoard writes still pending after %.0f s", timeout)
            return False
        return True


_WRITER: BackgroundWriter | None = None


def background_writer() -> BackgroundWriter:
    """The driver's one background writer (created on first use)."""
    global _WRITER
    if _WRITER is None:
        _WRITER = BackgroundWriter()
    return _WRITER


class ResultsCallback(Callback):
    """Keeps ``results.parquet`` current: rewritten after every report and state change.

    Args:
        path: the results file.
        searcher: the :class:`PruneAwareOptunaSearch` (trial numbers and Optuna states).
        scheduler: the :class:`PruningASHA` (which trials were pruned), or ``None``.
        resume: continue the table already in ``path`` (a resumed sweep).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_epochs: int,
        searcher=None,
        scheduler=None,
        min_interval_s: float = 0.0,
        resume: bool = False,
        guard: StallGuard | None = None,
    ):
        self.path = Path(path)
        self.max_epochs = max_epochs
        self.table = ResultsTable.load(self.path) if resume and self.path.exists() else ResultsTable()
        self._searcher = searcher
        self._scheduler = scheduler
        self._min_interval = min_interval_s
        self._last_write = 0.0
        self._guard = guard

    def _number(self, trial) -> int | None:
        try:
            return self._searcher.ot_number(trial.trial_id) if self._searcher is not None else None
        except Exception:  # noqa: BLE001
            return None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_guard"] = None
        return state

    def _write(self, force: bool = False) -> None:
        """Hand a snapshot of the table to the background writer (newest snapshot wins)."""
        from ferray.search._results import write_table_atomic

        now = time.monotonic()
        if not force and now - self._last_write < self._min_interval:
            return
        rows, path = self.table.rows(), self.path
        background_writer().submit(f"results:{path}", lambda: write_table_atomic(rows, path))
        self._last_write = now

    def write_now(self) -> None:
        """Hand the table to the writer now (after a change outside Tune's events)."""
        self._write(force=True)

    def flush(self, timeout: float = 60.0) -> bool:
        return background_writer().flush(timeout)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.table.add_trial(trial.trial_id, dict(trial.config), self._number(trial))
        self.table.set_state(trial.trial_id, "RUNNING")
        self._write()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.table.add_result(trial.trial_id, dict(trial.config), result, self._number(trial))
        self._write()

    def on_trial_complete(self, iteration, trials, trial, **info):
        state = "COMPLETED"
        ot_state = getattr(self._searcher, "states", {}).get(trial.trial_id) if self._searcher else None
        pruned = self._scheduler is not None and trial.trial_id in self._scheduler.pruned
        last = trial.last_result or {}
        if pruned:
            state = "PRUNED"
        elif ot_state == "PRUNED" or not finished(last, self.max_epochs):
            state = "STOPPED"
        elif ot_state == "FAIL":
            state = "ERROR"
            self.table.set_state(trial.trial_id, state, error="the final fold-mean metric is not finite")
            self._write(force=True)
            return
        self.table.set_state(trial.trial_id, state)
        self._write(force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.table.add_trial(trial.trial_id, dict(trial.config), self._number(trial)) if self.table.state(
            trial.trial_id
        ) is None else None
        reason = self._guard.reason(trial.trial_id) if self._guard is not None else None
        self.table.set_state(trial.trial_id, "ERROR", error=reason or error_reason(trial))
        self._write(force=True)

    def on_experiment_end(self, trials, **info):
        # Trials still pending or running when the sweep ended (time limit, Ctrl-C).
        for trial in trials:
            if self.table.state(trial.trial_id) in ("PENDING", "RUNNING"):
                self.table.set_state(trial.trial_id, "STOPPED")
        self._write(force=True)
        self.flush()


class RetentionCallback(Callback):
    """Applies the run's retention policy (:mod:`ferray.search._retention`) as trials end.

    Each pass runs on the background writer over the trials whose end has settled: a completed
    trial at once (its Train run has returned, every upload done), a pruned or errored one
    ``settle_s`` later (Tune stopped its actor; the Train controller and an upload still in
    flight go with it within seconds), every ended trial at the experiment's end. A pass ranks
    the completed trials again, so one pushed out of the best N loses its weights then. Trial
    states come from the results table (``results`` must come before this callback).
    """

    def __init__(
        self,
        run_dir: str | Path,
        config,
        *,
        top_k: int,
        results: ResultsCallback,
        metric: str,
        mode: str,
        settle_s: float = 30.0,
        pool: str | int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.top_k = top_k
        self.pool = pool  # ensemble.greedy_pool: whose weights wait for the ensemble
        self.results = results
        self.metric, self.mode = metric, mode
        self.settle_s = settle_s
        self._due: dict[str, float] = {}
        self._settled: set[str] = set()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_due"], state["_settled"] = {}, set()
        return state

    def _ended(self, trial, settle: float) -> None:
        self._due.setdefault(trial.trial_id, time.monotonic() + settle)
        self._maybe_pass()

    def _maybe_pass(self, final: bool = False) -> None:
        now = time.monotonic()
        table = self.results.table
        ready = {tid for tid, due in self._due.items() if due <= now}
        if final:
            # Pruned trials go now too (at worst a late upload leaves one checkpoint behind for
            # `ferray prune`); a just-errored trial waits for the next pass (prune, the pipeline):
            # removing a checkpoint folder Train is still registering would break its retry.
            ready |= {tid for tid in self._due if table.state(tid) != "ERROR"}
            # Trials that ended in an earlier session of a resumed sweep.
            ready |= {
                r["trial_id"]
                for r in table.rows()
                if r["state"] in ("COMPLETED", "PRUNED", "ERROR") and r["trial_id"] not in self._due
            }
        if not ready:
            return
        for tid in ready:
            self._due.pop(tid, None)
        self._settled |= ready
        rows, settled = self.results.table.rows(), frozenset(self._settled)
        background_writer().submit(f"retention:{self.run_dir}", lambda: self._apply(rows, settled))

    def _apply(self, rows: list[dict], settled: frozenset) -> None:  # background thread
        from ferray.search._retention import clean_trials, plan_retention
        from ferray.search._status import summarise_trials

        trials = summarise_trials(rows, self.metric, self.mode)
        cleanups, _ = plan_retention(self.run_dir, trials, self.config, top_k=self.top_k, only=settled, pool=self.pool)
        for plan in clean_trials(self.run_dir, cleanups, source="sweep"):
            logger.info("retention: %s", plan.describe(self.run_dir))

    def on_trial_complete(self, iteration, trials, trial, **info):
        completed = self.results.table.state(trial.trial_id) == "COMPLETED"
        self._ended(trial, 0.0 if completed else self.settle_s)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, self.settle_s)

    def on_step_end(self, iteration, trials, **info):
        if self._due:
            self._maybe_pass()

    def on_experiment_end(self, trials, **info):
        self._maybe_pass(final=True)
        background_writer().flush(timeout=300.0)


class TensorBoardCallback(Callback):
    """One TensorBoard run per trial under ``<run_dir>/tensorboard/<trial_id>``: config and per-epoch metrics.

    Writers live on the background writer's thread; the event loop only hands over numbers.
    """

    def __init__(self, logdir: str | Path, metric: str = "metric"):
        self.logdir = Path(logdir)
        self.metric = metric
        self._writers: dict[str, Any] = {}
        self._last: dict[str, dict] = {}

    def __getstate__(self) -> dict:
        return {"logdir": self.logdir, "metric": self.metric, "_writers": {}, "_last": {}}

    def _writer(self, trial_id: str, config: dict):  # background thread only
        writer = self._writers.get(trial_id)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(self.logdir / trial_id))
            text = "\n".join(f"    {k}: {v}" for k, v in sorted(config.items()))
            writer.add_text("config", text or "(base config)", 0)
            self._writers[trial_id] = writer
        return writer

    def on_trial_result(self, iteration, trials, trial, result, **info):
        trial_id, config = trial.trial_id, dict(trial.config)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        scalars = {
            key: float(value)
            for key, value in result.items()
            if (key in _SCALARS or key.startswith("val_accuracy_fold")) and _finite(value)
        }
        self._last[trial_id] = dict(result)

        def write() -> None:
            writer = self._writer(trial_id, config)
            for key, value in scalars.items():
                writer.add_scalar(
                    key if key == "metric" else f"val/{key}" if key.startswith("val_") else f"train/{key}", value, step
                )
            writer.flush()

        background_writer().submit(None, write)

    def _close(self, trial) -> None:
        trial_id, config = trial.trial_id, dict(trial.config)
        last = self._last.pop(trial_id, None)
        if last is None:
            return

        def close() -> None:
            writer = self._writers.pop(trial_id, None)
            if writer is None:
                return
            hparams = {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}
            if hparams and _finite(last.get("metric")):
                writer.add_hparams(hparams, {"hparam/metric": float(last["metric"])}, run_name=".")
            writer.close()

        background_writer().submit(None, close)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._close(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._close(trial)

    def on_experiment_end(self, trials, **info):
        for trial in trials:
            self._close(trial)
        background_writer().flush()


class StallGuard(Callback):
    """Stops a trial whose actor went silent for longer than the stall limit plus a margin.

    A trial's own function fails it when its fold workers go quiet
    (:mod:`ferray.search._trial`); this guard covers the trial actor itself hanging, which
    nothing inside it can report. The trial is ended (its actor killed, so Tune records an
    error and frees its resources), and its reason, ``stalled: ...``, goes to the results
    table.
    """

    def __init__(self, limits, check_every_s: float = 5.0, margin_s: float = 120.0) -> None:
        self.limits = limits
        self.check_every_s = check_every_s
        self.margin_s = margin_s
        self._last: dict[str, float] = {}
        self._longest: dict[str, float] = {}
        self._reasons: dict[str, str] = {}
        self._checked = 0.0

    def __getstate__(self) -> dict:
        return {
            "limits": self.limits,
            "check_every_s": self.check_every_s,
            "margin_s": self.margin_s,
            "_last": {},
            "_longest": {},
            "_reasons": {},
            "_checked": 0.0,
        }

    def reason(self, trial_id: str) -> str | None:
        return self._reasons.get(trial_id)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._last[trial.trial_id] = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._last[trial.trial_id] = time.monotonic()
        seconds = result.get("epoch_seconds")
        if _finite(seconds):
            self._longest[trial.trial_id] = max(self._longest.get(trial.trial_id, 0.0), float(seconds))

    def _forget(self, trial) -> None:
        self._last.pop(trial.trial_id, None)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._forget(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._forget(trial)

    def on_step_begin(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self._checked < self.check_every_s:
            return
        self._checked = now
        for trial in trials:
            tid = trial.trial_id
            if trial.status != "RUNNING" or tid in self._reasons:
                continue
            started = self._last.setdefault(tid, now)
            limit = self.limits.driver_limit(self._longest.get(tid), self.margin_s)
            if now - started > limit:
                self._stop(trial, now - started, limit)

    def _stop(self, trial, silent: float, limit: float) -> None:
        import ray

        from ferray._ray_compat import trial_actor
        from ferray.search._stall import STALLED

        reason = (
            f"{STALLED}: the trial sent nothing for {silent:.0f} s (driver limit {limit:.0f} s); its actor was stopped"
        )
        self._reasons[trial.trial_id] = reason
        actor = trial_actor(trial)
        if actor is None:
            logger.error(
                "trial %s is stalled (%s) and this Ray version gives ferray no way to stop it", trial.trial_id, reason
            )
            return
        logger.error("trial %s: %s", trial.trial_id, reason)
        try:
            ray.kill(actor, no_restart=True)
        except Exception as exc:  # noqa: BLE001
            logger.error("could not stop stalled trial %s: %s", trial.trial_id, exc)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class LiveView(Callback):
    """A rich live panel (or plain lines when not a terminal): trial counts, best so far, ETA.

    The ETA assumes every remaining trial runs ``max_epochs`` (an upper bound under ASHA).
    """

    def __init__(
        self,
        *,
        trials: int,
        max_epochs: int,
        concurrent: int,
        metric: str,
        mode: str,
        console=None,
        refresh_s: float = 1.0,
        table: ResultsTable | None = None,
        panel: bool = True,
        echo=None,
    ):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.panel = panel  # False: plain lines even on a terminal
        self.echo = echo
        self.trials, self.max_epochs, self.concurrent = trials, max_epochs, max(1, concurrent)
        self.metric, self.mode = metric, mode
        self.refresh_s = refresh_s
        self._live = None
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._states: dict[str, str] = {}
        self._epochs: dict[str, int] = {}
        self._best: tuple[float, str, dict] | None = None
        for row in table.rows() if table is not None else []:  # a resumed sweep's trials so far
            tid = row["trial_id"]
            self._states[tid] = row["state"]
            if row.get("epoch") is not None:
                self._epochs[tid] = int(row["epoch"])
            value = row.get("metric")
            if _finite(value) and (
                self._best is None or (value > self._best[0] if mode == "max" else value < self._best[0])
            ):
                params = {k[len("param.") :]: v for k, v in row.items() if k.startswith("param.") and v is not None}
                self._best = (float(value), tid, params)

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks with the experiment state; a console holds locks.
        state = dict(self.__dict__)
        state["console"] = None
        state["_live"] = None
        state["echo"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        from rich.console import Console

        self.__dict__.update(state)
        self.console = Console(stderr=True)

    def setup(self, **info):
        self._start = time.monotonic()
        if self.panel and self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
            self._live.start()

    def _eta(self) -> str:
        done_epochs = sum(self._epochs.values())
        elapsed = time.monotonic() - self._start
        if not done_epochs:
            return "?"
        finished = sum(1 for s in self._states.values() if s in ("COMPLETED", "PRUNED", "ERROR", "STOPPED"))
        running_left = sum(self.max_epochs - self._epochs.get(t, 0) for t, s in self._states.items() if s == "RUNNING")
        left = (
            self.trials - finished - sum(1 for s in self._states.values() if s == "RUNNING")
        ) * self.max_epochs + running_left
        seconds = elapsed / done_epochs * max(0, left)
        return f"<= {seconds / 60:.1f} min"

    def _render(self):
        from rich.table import Table

        counts = {
            s: sum(1 for v in self._states.values() if v == s)
            for s in ("RUNNING", "COMPLETED", "PRUNED", "ERROR", "STOPPED")
        }
        table = Table.grid(padding=(0, 2))
        elapsed = time.monotonic() - self._start
        started = len(self._states)
        table.add_row(
            "trials",
            f"{started}/{self.trials} started: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n),
        )
        if self._best:
            value, tid, params = self._best
            table.add_row(
                "best",
                f"{self.metric} {value:.4f} ({tid}) "
                + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()),
            )
        table.add_row("time", f"{elapsed / 60:.1f} min elapsed, ETA {self._eta()}")
        return table

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < self.refresh_s:
            return
        self._last_draw = now
        if self._live is not None:
            self._live.update(self._render())

    def _line(self, text: str) -> None:
        if self._live is None:
            if self.echo is not None:
                self.echo(text)
            else:
                self.console.print(text, highlight=False)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._states[trial.trial_id] = "RUNNING"
        self._line(f"start {trial.trial_id}: " + ", ".join(f"{k}={v}" for k, v in trial.config.items()))
        self._draw(True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._epochs[trial.trial_id] = int(result.get("epoch", 0))
        value = result.get("metric")
        if _finite(value):
            better = self._best is None or (value > self._best[0] if self.mode == "max" else value < self._best[0])
            if better:
                self._best = (float(value), trial.trial_id, dict(trial.config))
            self._line(f"{trial.trial_id} epoch {result.get('epoch')}: {self.metric} {value:.4f}")
        self._draw()

    def _finish(self, trial, state: str) -> None:
        self._states[trial.trial_id] = state
        self._line(f"{trial.trial_id} {state.lower()}")
        self._draw(True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, "COMPLETED" if finished(trial.last_result, self.max_epochs) else "PRUNED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "ERROR")

    def on_step_end(self, iteration, trials, **info):
        self._draw()

    def on_experiment_end(self, trials, **info):
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None
