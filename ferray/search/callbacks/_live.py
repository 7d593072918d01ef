"""The live view: the sweep's terminal panel (or one line per event), with counts, best so far and ETA."""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.table import Table

from ferray.run.results import ResultsTable
from ferray.search._optuna import finished

__all__ = ["LiveView"]


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
