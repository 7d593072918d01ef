"""Warm starts: a sweep that begins with what earlier runs learnt.

Each source of ``search.warm_start`` (a run folder, a run folder on storage, or an Optuna
study file) is opened before the run folder is made (:func:`open_source`: a bad source
fails before anything is written), judged against the new sweep once its data is loaded
(:func:`decide`), and written into the new study once the searcher has made it
(:func:`apply_warm_start`):

* **seeded**: the source optimised the same metric on the same data (fingerprint) with the
  same fixed settings, and every parameter value of its finished trials lies in the new
  space. Its COMPLETE trials are added with their scores and its PRUNED trials with their
  per-epoch values (``study.add_trials``): the sampler models them from the first trial on
  (TPE leaves its random start-up once the study holds ``n_startup_trials`` finished trials).
  They are history, not trials of this run: no folder, no predictions, no results row.
* **enqueued**: anything else. Its ``enqueue_top`` best completed configurations are
  projected onto the new space (:func:`project`) and evaluated first (``study.enqueue_trial``);
  parameters the new space lacks or cannot hold are dropped, out-of-range numbers clipped,
  new parameters left to the sampler, each with its reason printed.

Both go into the study itself, once, when the sweep starts; each added trial carries its
source and key, so adding again adds nothing. A resumed sweep never applies them again: its
study already holds the history, and the configurations not yet taken wait in it (Ray's
``points_to_evaluate`` would enqueue them again whenever the searcher is rebuilt, as
``ferray resume`` does).
"""

from __future__ import annotations

import json
import math
import sqlite3
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferray._config import flatten_keys
from ferray._io import atomic_write_json, resolve_fs, sqlite_snapshot
from ferray.errors import ConfigError, DataError
from ferray.run.layout import RunLayout
from ferray.run.spec import ParamSpec, SearchSpec, read_run_spec, same_value
from ferray.run.warm_start import ORIGIN_ATTR, SEEDED, WarmStartConfig, enqueued
from ferray.search._space import distribution, is_active, ordered

__all__ = [
    "WarmSource",
    "Decision",
    "open_source",
    "open_sources",
    "with_sources",
    "decide",
    "project",
    "describe",
    "apply_warm_start",
    "stamp_study",
    "write_record",
    "SOURCE_ATTR",
    "KEY_ATTR",
]

#: Optuna user attribute: the label of the source a seeded or enqueued trial came from.
SOURCE_ATTR = "ferray_warm_source"
#: Optuna user attribute: a seeded or enqueued trial's key within its source (adding twice adds nothing).
KEY_ATTR = "ferray_warm_key"
#: Study user attributes a sweep records, so that its bare study file can seed a later sweep.
_STAMPS = ("ferray_data_fingerprint", "ferray_metric", "ferray_fixed")

#: What a source may be, for error messages.
_ACCEPTED = (
    "a ferray run folder (holding ferray_run.json and optuna.db), a run folder on storage "
    "(s3://..., gs://..., file://...), or an Optuna study file (a run's optuna.db, or a journal file)"
)
#: Fixed settings that do not change a trial's score (where it runs, how it loads), and the
#: data source's name (the data's fingerprint is compared instead).
_UNSCORED = ("data.source", "resources.", "run.loader_workers", "run.eval_batch_size", "run.channels_last")


@dataclass
class WarmSource:
    """An earlier run, opened: its finished trials and what they ran on (``None``: not recorded)."""

    value: str  # as given
    label: str  # short name: the run folder's, or the study file's
    trials: list  # optuna FrozenTrial, COMPLETE and PRUNED
    directions: list[str]  # "maximize" / "minimize" per objective
    metric: str | None
    fingerprint: str | None
    fixed: dict | None  # fixed (not searched) settings, flattened


@dataclass
class Decision:
    """What a sweep takes from one source, and why."""

    source: WarmSource
    action: str  # "seeded", "enqueued" or "none"
    reason: str
    seeds: list = field(default_factory=list)  # FrozenTrials to add (this space's distributions)
    configs: list[dict] = field(default_factory=list)  # projected configurations to enqueue
    ranks: list[int] = field(default_factory=list)  # the source trial number of each configuration
    notes: list[str] = field(default_factory=list)

    @property
    def trials(self) -> int:
        return len(self.seeds) if self.action == "seeded" else len(self.configs)


# -- opening sources -------------------------------------------------------------------------------


def with_sources(spec: SearchSpec, sources: Iterable[str]) -> SearchSpec:
    """``spec`` with ``sources`` added to ``search.warm_start`` (after the spec's own, each once)."""
    warm = spec.search.warm_start
    merged = list(warm.sources) + [str(s) for s in sources if str(s) not in warm.sources]
    try:
        new = WarmStartConfig(sources=merged, enqueue_top=warm.enqueue_top)
    except ValueError as exc:
        raise ConfigError(f"--warm-start: {exc}") from None
    return spec.model_copy(update={"search": spec.search.model_copy(update={"warm_start": new})})


def open_sources(values: Sequence[str]) -> list[WarmSource]:
    """:func:`open_source` for each value, with labels made unique (``name``, ``name-2``)."""
    out: list[WarmSource] = []
    for value in values:
        source = open_source(value)
        taken = {s.label for s in out}
        base, n = source.label, 2
        while source.label in taken:
            source.label, n = f"{base}-{n}", n + 1
        out.append(source)
    return out


def open_source(value: str) -> WarmSource:
    """Open one warm-start source: a run folder, a URI of one, or an Optuna study file.

    Raises:
        ConfigError: it does not exist, or is neither a ferray run nor an Optuna study
            (naming the value and what is accepted).
    """
    where = f"search.warm_start: {value!r}"
    named = Path(value.rstrip("/").split("?", 1)[0])
    with tempfile.TemporaryDirectory(prefix="ferray-warm-") as tmp:
        if "://" in value:
            local = _fetch(value, Path(tmp), where)
        else:
            local = Path(value).expanduser()
            if not local.exists():
                raise ConfigError(f"{where}: no such file or folder; give {_ACCEPTED}")
        if local.is_dir():
            return _open_run(value, local, Path(tmp), where, label=named.name)
        # A run's study file is named after its run folder, any other after itself.
        label = named.parent.name if named.name == RunLayout.STUDY else named.stem
        return _open_study_file(value, local, Path(tmp), where, label=label)


def _fetch(uri: str, tmp: Path, where: str) -> Path:
    """Copy a run folder's files (or one study file) from storage to ``tmp``; the local copy."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        fs, path = resolve_fs(uri)
        info = fs.get_file_info(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as exc:
        raise ConfigError(f"{where}: not a storage URI this machine can open ({exc}); give {_ACCEPTED}") from None
    path = path.rstrip("/")
    if info.type == pafs.FileType.NotFound:
        raise ConfigError(f"{where}: nothing there on storage; give {_ACCEPTED}")
    if info.type == pafs.FileType.File:
        names, target = [path.rsplit("/", 1)[-1]], tmp / "study"
        remote = [path]
    else:
        target = tmp / path.rsplit("/", 1)[-1]
        names = [RunLayout.MANIFEST, RunLayout.SPEC, RunLayout.FOLDS, RunLayout.STUDY]
        remote = [f"{path}/{n}" for n in names]
    target.mkdir(parents=True, exist_ok=True)
    for name, src in zip(names, remote):
        try:
            with fs.open_input_stream(src) as stream:
                (target / name).write_bytes(stream.read())
        except (FileNotFoundError, OSError):
            continue  # a missing file is reported as what the folder lacks
    return target / names[0] if info.type == pafs.FileType.File else target


def _open_run(value: str, run: Path, tmp: Path, where: str, *, label: str) -> WarmSource:
    from ferray.data import FoldPlan

    layout = RunLayout(run)
    missing = [name for name in (RunLayout.MANIFEST, RunLayout.STUDY) if not (run / name).is_file()]
    if missing:
        raise ConfigError(f"{where}: a folder but not a ferray run (it lacks {', '.join(missing)}); give {_ACCEPTED}")
    spec = read_run_spec(run) if layout.spec.is_file() else None
    try:
        fingerprint = FoldPlan.load(layout.folds).data_fingerprint if layout.folds.is_file() else None
    except DataError:
        fingerprint = None
    name = spec.name if spec else None
    source = _open_study_file(value, layout.study, tmp, where, study_name=name, label=label or run.name)
    if spec is not None:
        source.metric = spec.metric
        source.fixed = _fixed(spec)
    source.fingerprint = fingerprint or source.fingerprint
    return source


def _open_study_file(
    value: str, path: Path, tmp: Path, where: str, *, label: str, study_name: str | None = None
) -> WarmSource:
    """Read the finished trials of the one study (or ``study_name``) in an SQLite or journal file."""
    import optuna

    head = path.read_bytes()[:512] if path.is_file() else b""
    copy = tmp / f"study-{path.name}"
    if head.startswith(b"SQLite format 3\x00"):
        # A consistent copy (the source sweep may be writing), opened there: nothing is written to the source.
        sqlite_snapshot(path, copy)
        storage = optuna.storages.RDBStorage(f"sqlite:///{copy}")
    elif _is_journal(head):
        copy.write_bytes(path.read_bytes())
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(copy)))
    else:
        raise ConfigError(f"{where}: {path.name} is not an Optuna study (SQLite or journal file); give {_ACCEPTED}")
    try:
        names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
        if not names:
            raise ConfigError(f"{where}: the study file holds no study; give {_ACCEPTED}")
        if study_name not in names:
            if len(names) > 1:
                raise ConfigError(
                    f"{where}: the study file holds {len(names)} studies ({', '.join(names)}); "
                    "ferray reads a file of one study, or a run folder"
                )
            study_name = names[0]
        study = optuna.load_study(study_name=study_name, storage=storage)
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        # A trial seeded into that study from a third run is that run's history, not this source's.
        trials = [
            t for t in study.get_trials(deepcopy=True, states=finished) if t.user_attrs.get(ORIGIN_ATTR) != SEEDED
        ]
        attrs = study.user_attrs
        directions = [d.name.lower() for d in study.directions]
    except (optuna.exceptions.OptunaError, sqlite3.Error, ValueError, KeyError) as exc:
        raise ConfigError(f"{where}: the study cannot be read ({exc}); give {_ACCEPTED}") from None
    finally:
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()
    fixed = attrs.get("ferray_fixed")
    return WarmSource(
        value=value,
        label=label or study_name,
        trials=trials,
        directions=directions,
        metric=attrs.get("ferray_metric"),
        fingerprint=attrs.get("ferray_data_fingerprint"),
        fixed=json.loads(fixed) if isinstance(fixed, str) else None,
    )


def _is_journal(head: bytes) -> bool:
    """Whether a file starts like an Optuna journal (one JSON operation per line)."""
    line = head.split(b"\n", 1)[0]
    try:
        return isinstance(json.loads(line), dict) and "op_code" in json.loads(line)
    except ValueError:
        return False


# -- deciding --------------------------------------------------------------------------------------


def _fixed(spec: SearchSpec) -> dict:
    """The settings every trial of ``spec`` shares that change its score (searched paths left out)."""
    flat = flatten_keys(spec.base_dict())
    return {
        k: v
        for k, v in flat.items()
        if not k.startswith(_UNSCORED)
        and not any(k == p or k.startswith(p + ".") for p in spec.space)
        and k not in _UNSCORED
    }


def _differences(before: dict, after: dict) -> list[str]:
    """``key old -> new`` for the fixed settings both sides hold (a setting one side searches is the space's matter)."""
    return [f"{k} {before[k]!r} -> {after[k]!r}" for k in sorted(set(before) & set(after)) if before[k] != after[k]]


def _contains(param: ParamSpec, value: Any) -> bool:
    """Whether ``value`` is one a trial of ``param`` can take (choices, inclusive range, step grid)."""
    if param.type == "categorical":
        return any(same_value(value, c) for c in param.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if param.type == "int" and float(value) != int(value):
        return False
    if not param.low <= value <= param.high:
        return False
    if param.step:
        n = (value - param.low) / param.step
        return abs(n - round(n)) <= 1e-9 * max(1.0, abs(n))
    return True


def _trial_fits(params: Mapping[str, Any], space: Mapping[str, ParamSpec], base: Mapping) -> str | None:
    """Why a trial's ``params`` do not lie in ``space`` (``None``: they do, every active parameter set)."""
    for name, value in params.items():
        if name not in space:
            return f"its parameter {name} is not searched here"
        if not _contains(space[name], value):
            return f"its {name} = {value!r} lies outside this space ({space[name].describe()})"
        if not is_active(space[name], params, base):
            return f"its {name} is inactive here (conditions {space[name].when})"
    for name in space:
        if name not in params and is_active(space[name], params, base):
            return f"it has no value for {name}, searched here"
    return None


def _seed(trial, space: Mapping[str, ParamSpec], label: str):
    """The FrozenTrial to add: ``trial``'s parameters, scores and epoch values under this space's distributions."""
    import optuna

    params = {n: int(v) if space[n].type == "int" else v for n, v in trial.params.items()}
    return optuna.trial.create_trial(
        state=trial.state,
        value=trial.value,  # a PRUNED trial keeps the last epoch value Optuna gave it
        params=params,
        distributions={n: distribution(space[n]) for n in params},
        intermediate_values=dict(trial.intermediate_values),
        user_attrs={ORIGIN_ATTR: SEEDED, SOURCE_ATTR: label, KEY_ATTR: f"{label}#{trial.number}"},
    )


def decide(source: WarmSource, spec: SearchSpec, fingerprint: str, *, enqueue_top: int | None = None) -> Decision:
    """Seed the sampler with ``source``'s trials, or enqueue its best configurations (see the module)."""
    base = spec.base_dict()
    if not source.trials:
        return Decision(source, "none", "it holds no finished trial")
    why = None
    if spec.search.multi_objective:
        n = len(spec.search.objectives)
        why = f"this sweep searches {n} objectives (a warm start seeds single-objective sweeps only)"
    elif len(source.directions) != 1:
        why = f"it optimised {len(source.directions)} objectives, this sweep one"
    elif source.metric is None:
        why = "it did not record its metric (a study file from before ferray recorded it)"
    elif source.metric != spec.metric or source.directions[0] != ("minimize" if spec.mode == "min" else "maximize"):
        why = f"it optimised {source.metric}, this sweep {spec.metric}"
    elif source.fingerprint is None:
        why = "it did not record its data's fingerprint"
    elif source.fingerprint != fingerprint:
        why = f"other data (fingerprint {source.fingerprint} there, {fingerprint} here)"
    elif source.fixed is None:
        why = "it did not record its fixed settings"
    else:
        changed = _differences(source.fixed, _fixed(spec))
        if changed:
            why = "other fixed settings (" + "; ".join(changed[:4]) + ("; ..." if len(changed) > 4 else "") + ")"
        else:
            for t in source.trials:
                problem = _trial_fits(t.params, spec.space, base)
                if problem:
                    why = f"the space changed: trial {t.number} does not fit ({problem})"
                    break
    if why is None:
        seeds = [_seed(t, spec.space, source.label) for t in source.trials]
        return Decision(source, "seeded", "same data, metric and fixed settings, and a space holding its trials", seeds)
    return _enqueue(source, spec, why, enqueue_top or spec.search.warm_start.enqueue_top)


def _enqueue(source: WarmSource, spec: SearchSpec, why: str, top: int) -> Decision:
    import optuna

    maximize = source.directions[0] == "maximize" if len(source.directions) == 1 else True
    complete = [
        t
        for t in source.trials
        if t.state == optuna.trial.TrialState.COMPLETE and t.values and all(math.isfinite(v) for v in t.values)
    ]
    complete.sort(key=lambda t: -t.values[0] if maximize else t.values[0])
    decision = Decision(source, "enqueued", why)
    if not complete:
        decision.action, decision.reason = "none", f"{why}, and it holds no completed trial to evaluate first"
        return decision
    base = spec.base_dict()
    for t in complete[:top]:
        params, notes = project(t.params, spec.space, base)
        what = f"trial {t.number} ({t.values[0]:.4g})"
        if not params:
            decision.notes.append(f"{what}: not enqueued, none of its parameters carries over")
        elif params in decision.configs:
            twin = decision.ranks[decision.configs.index(params)]
            decision.notes.append(f"{what}: not enqueued, the same as trial {twin} on this space")
        else:
            decision.configs.append(params)
            decision.ranks.append(t.number)
        decision.notes += [f"{what}: {note}" for note in notes]
    if not decision.configs:
        decision.action = "none"
    return decision


def project(params: Mapping[str, Any], space: Mapping[str, ParamSpec], base: Mapping | None = None):
    """``(projected, notes)``: an earlier configuration on ``space``, and a reason per change.

    Parameters ``space`` does not search, values not among its choices and values of the
    wrong kind are dropped; numbers outside its range are clipped to it (and onto its step
    grid); parameters it searches that ``params`` lacks are left to the sampler; a parameter
    whose conditions no longer hold is dropped. Each of these gives one note.

    >>> from ferray.run.spec import ParamSpec
    >>> space = {"optim.lr": ParamSpec(type="float", low=1e-4, high=1e-2, log=True)}
    >>> params, notes = project({"optim.lr": 0.05, "loss.name": "ce"}, space)
    >>> params
    {'optim.lr': 0.01}
    >>> notes
    ['loss.name = ce dropped: not searched here', 'optim.lr = 0.05 clipped to 0.01 (range [0.0001, 0.01])']
    """
    out: dict[str, Any] = {}
    notes = [f"{name} = {_short(v)} dropped: not searched here" for name, v in params.items() if name not in space]
    for name in ordered(space):
        param = space[name]
        # A condition on a parameter left to the sampler cannot be judged now: the value stays
        # and counts only should the sampler's choice make the parameter active.
        known = all(dep in out or dep not in space for dep in param.when)
        if known and not is_active(param, out, base):
            if name in params:
                notes.append(f"{name} = {_short(params[name])} dropped: inactive here (conditions {param.when})")
            continue
        if name not in params:
            notes.append(f"{name}: new here, the sampler chooses it")
            continue
        value, note = _fit(param, params[name])
        if note:
            notes.append(f"{name} = {_short(params[name])} {note}")
        if value is not None:
            out[name] = value
    return out, notes


def _fit(param: ParamSpec, value: Any) -> tuple[Any, str | None]:
    """``(value on param, note)``: ``None`` when dropped; the note says why it changed."""
    if param.type == "categorical":
        for choice in param.choices:
            if same_value(value, choice):
                return choice, None
        return None, f"dropped: not among the choices {param.choices}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, f"dropped: not a number, and {param.type} here"
    low, high = (int(param.low), int(param.high)) if param.type == "int" else (float(param.low), float(param.high))
    fitted = min(max(value, low), high)
    if param.step:
        fitted = min(high, low + round((fitted - low) / param.step) * param.step)
    if param.type == "int":
        fitted = int(round(fitted))
    elif param.step:
        fitted = float(round(fitted, 12))
    if same_value(fitted, value):
        return fitted, None
    if not low <= value <= high:
        return fitted, f"clipped to {_short(fitted)} (range [{_short(low)}, {_short(high)}])"
    return fitted, f"moved to {_short(fitted)} (the step grid of {param.describe()})"


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def describe(decisions: Sequence[Decision]) -> list[str]:
    """What the sweep takes from each source, and each parameter or configuration that does not carry over."""
    lines = []
    for d in decisions:
        head = f"warm start from {d.source.value}"
        if d.action == "seeded":
            lines.append(f"{head}: {d.reason}: its {len(d.seeds)} finished trials seed the sampler")
        elif d.action == "enqueued":
            lines.append(f"{head}: {d.reason}: its best {len(d.configs)} configurations are evaluated first")
        else:
            lines.append(f"{head}: {d.reason}: nothing taken")
        lines += [f"  {note}" for note in d.notes]
    return lines


# -- applying --------------------------------------------------------------------------------------


def stamp_study(study, spec: SearchSpec, fingerprint: str) -> None:
    """Record in ``study`` what its trials ran on, so that its bare study file can seed a later sweep."""
    values = (fingerprint, spec.metric, json.dumps(_fixed(spec), sort_keys=True))
    for key, value in zip(_STAMPS, values):
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)


def apply_warm_start(study, decisions: Sequence[Decision]) -> dict[str, int]:
    """Add the seeded trials and enqueue the configurations of ``decisions``; ``{label: trials added}``.

    A trial already in ``study`` under the same source and key is not added again.
    """
    have = {t.user_attrs.get(KEY_ATTR) for t in study.get_trials(deepcopy=False)} - {None}
    added: dict[str, int] = {}
    for d in decisions:
        label = d.source.label
        if d.action == "seeded":
            new = [t for t in d.seeds if t.user_attrs[KEY_ATTR] not in have]
            if new:
                study.add_trials(new)
        elif d.action == "enqueued":
            new = []
            for params, number in zip(d.configs, d.ranks):
                key = f"{label}#enqueued-{number}"
                if key not in have:
                    study.enqueue_trial(
                        params, user_attrs={ORIGIN_ATTR: enqueued(label), SOURCE_ATTR: label, KEY_ATTR: key}
                    )
                    new.append(key)
        else:
            new = []
        added[label] = len(new)
    return added


def write_record(run: str | Path, decisions: Sequence[Decision]) -> None:
    """``RUN/warm_start.json`` (see :func:`ferray.run.warm_start.read_warm_start`)."""
    if not decisions:
        return
    atomic_write_json(
        RunLayout(run).warm_start,
        {
            "sources": [
                {
                    "source": d.source.value,
                    "label": d.source.label,
                    "action": d.action,
                    "reason": d.reason,
                    "trials": d.trials,
                    "origin": {"seeded": SEEDED, "enqueued": enqueued(d.source.label)}.get(d.action),
                    "notes": list(d.notes),
                }
                for d in decisions
            ]
        },
    )
