from __future__ import annotations

import io
import threading
import time
from types import SimpleNamespace

from ray import cloudpickle
from rich.console import Console

from ferray.search.callbacks import BackgroundWriter, LiveView


def _trial(trial_id, **config):
    return SimpleNamespace(trial_id=trial_id, config=config, last_result={})


def _view(out: io.StringIO) -> LiveView:
    console = Console(file=out, force_terminal=False, width=120)
    return LiveView(trials=4, max_epochs=3, concurrent=2, metric="val_accuracy_mean", mode="max", console=console)


def test_live_view_pickles_with_the_experiment_state():
    # Tune pickles run_config callbacks when the Tuner is built; a console holds locks.
    view = _view(io.StringIO())
    view.on_trial_start(0, [], _trial("t1", lr=0.01))
    clone = cloudpickle.loads(cloudpickle.dumps(view))
    assert clone._states == {"t1": "RUNNING"} and clone.console is not None
    clone.on_trial_start(0, [], _trial("t2", lr=0.1))  # usable after unpickling


def test_live_view_tracks_best_and_states_in_plain_lines():
    out = io.StringIO()
    view = _view(out)
    view.setup()
    a, b = _trial("a", lr=0.01), _trial("b", lr=0.1)
    view.on_trial_start(0, [], a)
    view.on_trial_start(0, [], b)
    view.on_trial_result(0, [], a, {"epoch": 1, "metric": 0.40})
    view.on_trial_result(0, [], b, {"epoch": 1, "metric": 0.55})
    view.on_trial_result(0, [], a, {"epoch": 2, "metric": 0.50})
    a.last_result = {"epoch": 3, "metric": 0.6, "final": True}
    b.last_result = {"epoch": 1, "metric": 0.55}
    view.on_trial_complete(0, [], a)
    view.on_trial_complete(0, [], b)
    assert view._best[:2] == (0.55, "b")
    assert view._states == {"a": "COMPLETED", "b": "PRUNED"}
    text = out.getvalue()
    assert "b epoch 1: val_accuracy_mean 0.5500" in text and "a completed" in text and "b pruned" in text
    # 3 epochs done; 2 trials never started x 3 epochs left -> a finite upper bound
    assert view._eta().startswith("<= ")


def test_background_writer_runs_jobs_in_order_and_keeps_only_the_newest_of_a_key():
    writer = BackgroundWriter("test-writer")
    gate, seen = threading.Event(), []
    writer.submit(None, gate.wait)  # hold the thread so the next jobs queue up
    for i in range(5):
        writer.submit("table", lambda i=i: seen.append(("table", i)))
    writer.submit(None, lambda: seen.append(("other", 0)))
    gate.set()
    assert writer.flush(timeout=10)
    assert seen == [("table", 4), ("other", 0)]


def test_background_writer_survives_a_failing_job(caplog):
    writer = BackgroundWriter("test-writer-2")
    writer.submit("x", lambda: 1 / 0)
    done = []
    writer.submit("y", lambda: done.append(1))
    assert writer.flush(timeout=10) and done == [1]
    assert "failed" in caplog.text


def test_flush_is_bounded():
    writer = BackgroundWriter("test-writer-3")
    release = threading.Event()
    writer.submit(None, lambda: release.wait(5))
    start = time.monotonic()
    assert writer.flush(timeout=0.2) is False
    assert time.monotonic() - start < 2
    release.set()
