"""k-fold plans: which rows each fold validates on, fixed once per run.

A :class:`FoldPlan` is computed once (stratified by label, grouped by subject when the
data has subject ids) and stored with the run, so every trial, the ensemble stage and a
resumed sweep see the same folds. Rows of the holdout (by default the dataset's own test
split) are in no fold: they are predicted by every fold model and never trained on.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, StratifiedShuffleSplit

from ferray.data._table import FERData
from ferray.errors import DataError

__all__ = ["FoldPlan", "plan_folds", "HOLDOUT"]

#: Fold number given to holdout rows.
HOLDOUT = -1


@dataclass(frozen=True, eq=False)
class FoldPlan:
    """Fold assignment of every row of one dataset.

    Attributes:
        fold: ``int8`` per row, ``0..k-1`` for cross-validation rows, :data:`HOLDOUT` for holdout.
        ids: the dataset's row ids, to check the plan matches the data it is used with.
        k: number of folds.
        seed: seed of the split.
        grouped: whether rows of one subject always share a fold.
        holdout: how the holdout was chosen: ``"none"``, ``"test"`` or ``"fraction=<f>"``.
        data_fingerprint: :meth:`FERData.fingerprint` of the planned data.
    """

    fold: np.ndarray
    ids: np.ndarray
    k: int
    seed: int
    grouped: bool
    holdout: str
    data_fingerprint: str

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FoldPlan)
            and np.array_equal(self.fold, other.fold)
            and np.array_equal(self.ids, other.ids)
            and self._meta() == other._meta()
        )

    def train_index(self, i: int) -> np.ndarray:
        """Rows fold model ``i`` trains on."""
        return np.flatnonzero((self.fold != i) & (self.fold != HOLDOUT))

    def val_index(self, i: int) -> np.ndarray:
        """Rows fold model ``i`` is validated on (its out-of-fold rows)."""
        return np.flatnonzero(self.fold == i)

    @property
    def holdout_index(self) -> np.ndarray:
        return np.flatnonzero(self.fold == HOLDOUT)

    @property
    def cv_index(self) -> np.ndarray:
        """Rows that take part in cross-validation; each is out-of-fold exactly once."""
        return np.flatnonzero(self.fold != HOLDOUT)

    def check_matches(self, data: FERData) -> None:
        """Raise :class:`DataError` unless this plan was made for ``data``."""
        if len(data) != len(self.fold) or not np.array_equal(data.ids.astype(str), self.ids.astype(str)):
            raise DataError(
                f"the fold plan has {len(self.fold)} rows but the data has {len(data)} "
                "(or different row ids): the data changed since the plan was made"
            )

    def summary(self, data: FERData | None = None) -> str:
        """One line per fold: rows and, with ``data``, class counts."""
        lines = [
            f"{self.k} folds, seed {self.seed}, "
            f"{'grouped by subject, ' if self.grouped else ''}holdout: {self.holdout}"
        ]
        for i in range(self.k):
            line = f"  fold {i}: train {len(self.train_index(i))}, val {len(self.val_index(i))}"
            if data is not None:
                counts = np.bincount(data.labels[self.val_index(i)], minlength=data.num_classes)
                line += f"  val classes {counts.tolist()}"
            lines.append(line)
        lines.append(f"  holdout: {len(self.holdout_index)}")
        return "\n".join(lines)

    def _meta(self) -> dict:
        return {
            "k": self.k,
            "seed": self.seed,
            "grouped": self.grouped,
            "holdout": self.holdout,
            "data_fingerprint": self.data_fingerprint,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the plan as Parquet (``id``, ``fold``) atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table({"id": pa.array(self.ids.astype(str)), "fold": pa.array(self.fold)})
        table = table.replace_schema_metadata({b"ferray_folds": json.dumps(self._meta()).encode()})
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FoldPlan:
        """Read a plan written by :meth:`save`."""
        path = Path(path)
        try:
            table = pq.read_table(path)
            meta = json.loads(table.schema.metadata[b"ferray_folds"])
        except (OSError, KeyError, TypeError, pa.ArrowInvalid) as exc:
            raise DataError(f"{path}: not a ferray fold plan ({exc})") from None
        return cls(
            fold=table.column("fold").to_numpy().astype(np.int8),
            ids=np.asarray(table.column("id").to_pylist(), dtype=object),
            **meta,
        )


def _parse_holdout(holdout: str | float | None) -> tuple[str, float]:
    if holdout is None or holdout == "none" or holdout == 0:
        return "none", 0.0
    if holdout in ("test", "auto"):
        return str(holdout), 0.0
    try:
        fraction = float(holdout)
    except (TypeError, ValueError):
        raise DataError(
            f"holdout {holdout!r} is not accepted: use 'auto' (the dataset's test split if any), "
            "'test', 'none', or a fraction in (0, 0.5]"
        ) from None
    if not 0 < fraction <= 0.5:
        raise DataError(f"holdout fraction {fraction} is not accepted: it must lie in (0, 0.5]")
    return "fraction", fraction


def plan_folds(
    data: FERData,
    k: int = 5,
    *,
    seed: int = 0,
    holdout: str | float | None = "auto",
    group_by_subject: bool = True,
) -> FoldPlan:
    """Plan ``k``-fold cross-validation over ``data``.

    Args:
        data: the dataset.
        k: number of folds, at least 2.
        seed: seed of the shuffles; the same seed gives the same plan.
        holdout: ``"auto"`` holds out the dataset's own ``test`` split when it has one,
            ``"test"`` requires one, ``"none"`` keeps every row in the folds, a float
            holds out that stratified (and grouped) fraction.
        group_by_subject: keep a subject's rows in one fold when ``data.subjects`` exists.

    Raises:
        DataError: fewer rows, class members or groups than folds; a single class.

    >>> from ferray.data import generate, plan_folds
    >>> plan = plan_folds(generate(count=140, seed=0), k=3, seed=0)
    >>> sorted(set(plan.fold.tolist()))
    [0, 1, 2]
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise DataError(f"k = {k!r} is not accepted: the number of folds must be an integer >= 2")
    mode, fraction = _parse_holdout(holdout)
    n = len(data)
    fold = np.zeros(n, dtype=np.int8)
    is_test = data.splits.astype(str) == "test"
    if mode == "test" and not is_test.any():
        raise DataError("holdout 'test' was asked for but the data has no rows in a 'test' split")
    holdout_name = "none"
    if mode in ("test", "auto") and is_test.any():
        fold[is_test] = HOLDOUT
        holdout_name = "test"
    groups = data.subjects.astype(str) if (group_by_subject and data.subjects is not None) else None
    pool = np.flatnonzero(fold != HOLDOUT)
    if mode == "fraction":
        pool = _split_holdout(data, pool, groups, fraction, seed, fold)
        holdout_name = f"fraction={fraction:g}"

    labels = data.labels[pool]
    counts = np.bincount(labels, minlength=data.num_classes)
    present = counts[counts > 0]
    if len(pool) < k:
        raise DataError(f"{len(pool)} rows cannot be split into k = {k} folds; use k <= {len(pool)}")
    if len(present) < 2:
        raise DataError(
            f"the data to split has a single class ({data.class_names[int(np.argmax(counts))]!r}); "
            "classification needs at least 2"
        )
    if present.min() < k:
        small = [data.class_names[i] for i in np.flatnonzero((counts > 0) & (counts < k))]
        raise DataError(
            f"k = {k} is larger than the smallest class ({small[0]!r} has {present.min()} rows, "
            f"classes below k: {small}); use k <= {present.min()} or merge/drop those classes"
        )
    if groups is not None:
        n_groups = len(np.unique(groups[pool]))
        if n_groups < k:
            raise DataError(
                f"k = {k} is larger than the number of subjects ({n_groups}); use k <= {n_groups} "
                "or set group_by_subject=False"
            )
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(pool, labels, groups[pool])
    else:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(pool, labels)
    for i, (_, val) in enumerate(splits):
        fold[pool[val]] = i
    return FoldPlan(
        fold=fold,
        ids=np.asarray(data.ids, dtype=object),
        k=int(k),
        seed=int(seed),
        grouped=groups is not None,
        holdout=holdout_name,
        data_fingerprint=data.fingerprint(),
    )


def _split_holdout(data: FERData, pool: np.ndarray, groups: np.ndarray | None, fraction: float,
                   seed: int, fold: np.ndarray) -> np.ndarray:
    """Mark a stratified (grouped) ``fraction`` of ``pool`` as holdout; return the rest."""
    labels = data.labels[pool]
    if groups is not None:
        n_splits = max(2, round(1 / fraction))
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        _, held = next(splitter.split(pool, labels, groups[pool]))
    else:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        try:
            _, held = next(splitter.split(pool, labels))
        except ValueError as exc:
            raise DataError(f"cannot hold out a fraction of {fraction:g}: {exc}") from None
    fold[pool[held]] = HOLDOUT
    return np.flatnonzero(fold != HOLDOUT)
