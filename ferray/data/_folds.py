"""k-fold plans: which rows each fold validates on, fixed once per run.

A :class:`FoldPlan` is computed once (stratified by label, grouped by subject when the
data has subject ids and by duplicate cluster) and stored with the run, so every trial,
the ensemble stage and a resumed sweep see the same folds. Rows of the holdout (by
default the dataset's own test split) are in no fold: they are predicted by every fold
model and never trained on.

Grouping: rows of one subject, and exact or near-duplicate images (64-bit pHash within
``near_distance`` bits, chains included), are joined into groups (union-find) and a
group never straddles two folds, or the folds and a fractional holdout. The plan keeps
each row's group (``FoldPlan.groups``), so later stages that split the out-of-fold rows
again (the ensemble stage's inner cross-validation) keep the same groups together. A dataset's own
test split is kept as it is: its rows with a duplicate in training are counted
(``FoldPlan.holdout_leaks``) and :func:`~ferray.data.clean_holdout_mask` selects the
others, so holdout metrics can be reported on both.
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
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from ferray.data._duplicates import (
    NEAR_DUPLICATE_DISTANCE,
    clean_holdout_mask,
    fold_groups,
)
from ferray.data._table import FERData
from ferray.errors import DataError

__all__ = ["FoldPlan", "plan_folds", "grouped_stratified_folds", "HOLDOUT"]

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
        group_duplicates: whether duplicate clusters were kept in one fold.
        near_distance: pHash bits up to which images counted as duplicates.
        duplicate_rows: rows in duplicate clusters (of two or more) that were grouped.
        duplicate_clusters: number of those clusters.
        holdout_leaks: holdout rows with an exact or near duplicate among the fold rows,
            counted when duplicates are grouped (then only a dataset's own test split has them).
        groups: ``int64`` per row, the group (a subject joined with the duplicate clusters of
            its images) each cross-validation row was kept together with; holdout rows
            have -1. ``None`` when nothing grouped the rows (no subjects, no duplicates
            or grouping off), and for plans saved before groups were stored.
    """

    fold: np.ndarray
    ids: np.ndarray
    k: int
    seed: int
    grouped: bool
    holdout: str
    data_fingerprint: str
    group_duplicates: bool = False
    near_distance: int = NEAR_DUPLICATE_DISTANCE
    duplicate_rows: int = 0
    duplicate_clusters: int = 0
    holdout_leaks: int = 0
    groups: np.ndarray | None = None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FoldPlan)
            and np.array_equal(self.fold, other.fold)
            and np.array_equal(self.ids, other.ids)
            and self._meta() == other._meta()
            and (self.groups is None) == (other.groups is None)
            and (self.groups is None or np.array_equal(self.groups, other.groups))
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
            f"{self.k} folds, seed {self.seed}, {'grouped by subject, ' if self.grouped else ''}holdout: {self.holdout}"
        ]
        if self.group_duplicates:
            lines.append(
                f"  duplicates (pHash distance <= {self.near_distance}): {self.duplicate_rows} rows in "
                f"{self.duplicate_clusters} clusters grouped"
                + (f"; {self.holdout_leaks} holdout rows have a duplicate in the folds" if self.holdout_leaks else "")
            )
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
            "group_duplicates": self.group_duplicates,
            "near_distance": self.near_distance,
            "duplicate_rows": self.duplicate_rows,
            "duplicate_clusters": self.duplicate_clusters,
            "holdout_leaks": self.holdout_leaks,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the plan as Parquet (``id``, ``fold`` and, when rows are grouped, ``group``) atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = {"id": pa.array(self.ids.astype(str)), "fold": pa.array(self.fold)}
        if self.groups is not None:
            columns["group"] = pa.array(np.asarray(self.groups, np.int64))
        table = pa.table(columns)
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
        groups = table.column("group").to_numpy().astype(np.int64) if "group" in table.column_names else None
        return cls(
            fold=table.column("fold").to_numpy().astype(np.int8),
            ids=np.asarray(table.column("id").to_pylist(), dtype=object),
            groups=groups,
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
    group_duplicates: bool = True,
    near_distance: int = NEAR_DUPLICATE_DISTANCE,
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
        group_duplicates: keep exact and near-duplicate images (pHash distance at most
            ``near_distance`` bits) in one fold, and out of a fractional holdout's folds.
        near_distance: 0..16.

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
    by_subject = group_by_subject and data.subjects is not None
    pool = np.flatnonzero(fold != HOLDOUT)
    groups, dup_rows, dup_clusters = fold_groups(
        data, pool, by_subject=by_subject, by_duplicates=group_duplicates, near_distance=near_distance
    )
    if mode == "fraction":
        pool, groups = _split_holdout(data, pool, groups, fraction, seed, fold)
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
        n_groups = len(np.unique(groups))
        if n_groups < k:
            what = "subjects" if by_subject else "groups of duplicate images"
            raise DataError(
                f"k = {k} is larger than the number of {what} ({n_groups}"
                + (", subjects joined with duplicate clusters" if by_subject and dup_rows else "")
                + f"); use k <= {n_groups}"
                + (" or set group_by_subject=False" if by_subject else "")
            )
        fold[pool] = grouped_stratified_folds(labels, groups, k, seed)
    else:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        for i, (_, val) in enumerate(splitter.split(pool, labels)):
            fold[pool[val]] = i
    row_groups = None
    if groups is not None:
        row_groups = np.full(n, -1, np.int64)
        row_groups[pool] = groups
    leaks = 0
    if group_duplicates and (fold == HOLDOUT).any():
        leaks = int(((fold == HOLDOUT) & ~clean_holdout_mask(data, fold, near_distance)).sum())
    return FoldPlan(
        fold=fold,
        ids=np.asarray(data.ids, dtype=object),
        k=int(k),
        seed=int(seed),
        grouped=by_subject,
        holdout=holdout_name,
        data_fingerprint=data.fingerprint(),
        group_duplicates=bool(group_duplicates),
        near_distance=int(near_distance),
        duplicate_rows=dup_rows,
        duplicate_clusters=dup_clusters,
        holdout_leaks=leaks,
        groups=row_groups,
    )


def _split_holdout(
    data: FERData, pool: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int, fold: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mark a stratified (grouped) ``fraction`` of ``pool`` as holdout; return the rest and its groups."""
    labels = data.labels[pool]
    if groups is not None:
        n_splits = max(2, round(1 / fraction))
        if len(np.unique(groups)) < n_splits:
            raise DataError(
                f"cannot hold out a fraction of {fraction:g}: it needs at least {n_splits} groups "
                f"(subjects or duplicate clusters), found {len(np.unique(groups))}"
            )
        held = grouped_stratified_folds(labels, groups, n_splits, seed) == 0
    else:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        try:
            _, index = next(splitter.split(pool, labels))
        except ValueError as exc:
            raise DataError(f"cannot hold out a fraction of {fraction:g}: {exc}") from None
        held = np.zeros(len(pool), bool)
        held[index] = True
    fold[pool[held]] = HOLDOUT
    return pool[~held], (groups[~held] if groups is not None else None)


def grouped_stratified_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold ``0..k-1`` per row: every group in one fold, each class spread evenly.

    Groups of two or more rows are placed first, largest first (ties in seeded random
    order), each into the fold where it leaves the per-class shares most even (the mean
    over classes of the standard deviation across folds of the class's share, as
    scikit-learn's ``StratifiedGroupKFold``; ties go to the smaller fold). Single rows then
    fill each class's folds up to an even level. With only single rows this is an exact
    stratified split; it stays fast with tens of thousands of groups.

    Raises:
        DataError: a fold would get no rows (too few or too uneven groups).
    """
    labels = np.asarray(labels, np.int64)
    rng = np.random.default_rng(seed)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    g = g.reshape(-1)
    n_groups = int(g.max()) + 1 if len(g) else 0
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    counts = np.bincount(g * n_classes + labels, minlength=n_groups * n_classes).reshape(n_groups, n_classes)
    size = counts.sum(axis=1)
    totals = counts.sum(axis=0).astype(np.float64)
    inv_total = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
    share = np.zeros((k, n_classes))  # per fold, its share of each class
    fold_size = np.zeros(k, np.int64)
    group_fold = np.full(n_groups, -1, np.int64)

    multi = np.flatnonzero(size > 1)
    multi = multi[rng.permutation(len(multi))]
    multi = multi[np.argsort(-size[multi], kind="stable")]
    for grp in multi:
        add = counts[grp] * inv_total
        # std across folds per class if the group joins fold f: the mean does not depend on f,
        # only the sum of squares does (S2 - s_f^2 + (s_f + add)^2)
        mean = (share.sum(axis=0) + add) / k
        sq = (share**2).sum(axis=0) + 2 * share * add + add**2
        std = np.sqrt(np.maximum(sq / k - mean**2, 0.0)).mean(axis=1)
        best = np.lexsort((fold_size, np.round(std, 12)))[0]
        share[best] += add
        fold_size[best] += size[grp]
        group_fold[grp] = best

    fold = np.full(len(labels), -1, np.int64)
    placed = group_fold[g] >= 0
    fold[placed] = group_fold[g[placed]]
    single_rows = np.flatnonzero(~placed)
    have = np.zeros((k, n_classes), np.int64)
    np.add.at(have, (fold[placed], labels[placed]), 1)
    tie = rng.permutation(k)
    for c in range(n_classes):
        rows = single_rows[labels[single_rows] == c]
        if not len(rows):
            continue
        rows = rows[rng.permutation(len(rows))]
        take = _fill_level(have[:, c], len(rows), fold_size, tie)
        fold[rows] = np.repeat(np.arange(k), take)
        have[:, c] += take
        fold_size += take
    empty = np.flatnonzero(np.bincount(fold, minlength=k) == 0)
    if len(empty):
        raise DataError(
            f"fold {int(empty[0])} of k = {k} gets no rows: the groups (subjects or duplicate clusters) are too "
            f"few or too uneven for {k} folds; use a smaller k"
        )
    return fold


def _fill_level(have: np.ndarray, n: int, fold_size: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """How many of ``n`` rows each fold takes so that ``have + take`` is as level as possible.

    Rows left over after levelling go to the folds with the fewest rows overall.
    """
    lo, hi = int(have.min()), int(have.max()) + n
    while lo < hi:  # the highest level L whose fill needs at most n rows
        mid = (lo + hi + 1) // 2
        if np.maximum(mid - have, 0).sum() <= n:
            lo = mid
        else:
            hi = mid - 1
    take = np.maximum(lo - have, 0)
    rest = n - int(take.sum())
    if rest:
        at_level = np.flatnonzero(have + take == lo)
        order = at_level[np.lexsort((tie[at_level], fold_size[at_level] + take[at_level]))]
        take[order[:rest]] += 1
    return take
