"""The online teacher: the ensemble's member models score every training batch the student sees.

"A good teacher is patient and consistent" (Beyer et al., 2022): distillation works best
as *function matching*, the teacher labelling exactly the augmented, mixed image the
student is shown, rather than one stored target per row whatever the augmentation did.
:class:`OnlineTeacher` does that, without leaking a row's label into its own target:

* a cross-validation row of fold ``f`` is scored, for each member trial, by that trial's
  fold-``f`` model only: the one of its k models that never trained on the row;
* a transfer image (outside the cross-validation, group :data:`TRANSFER_GROUP`) by the mean
  of each member's k fold models (none of them trained on it);
* mixup/CutMix partners are drawn within a group (see ``MixupCutmix(groups=...)``), so a
  mixed image never holds a row its scoring model trained on.

Members combine by the ensemble's own rule (:class:`Combiner`): its weights for the
weighted averages (greedy, mean), its fitted meta-learner for stacking, vote shares for
vote; a method the teacher has no rule for falls back to an equal-weight mean, and says so.
A member trained at another image size sees the batch resized (``F.interpolate``).

The driver packs the members' weights files as bytes (:func:`pack_teacher`), which travel
to the student's worker through Ray's object store (``ray.put``): the worker may be on a
node that cannot read the run directory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ferray.errors import DataError
from ferray.run.layout import RunLayout, TrialLayout
from ferray.run.weights import WeightsMeta
from ferray.training.augment import apply_batch
from ferray.training.weights import load_fold_models, read_weights_meta

__all__ = [
    "TRANSFER_GROUP",
    "Combiner",
    "combiner_of",
    "MemberWeights",
    "TeacherPack",
    "pack_teacher",
    "OnlineTeacher",
    "teacher_groups",
]

#: The group of rows outside the cross-validation (transfer images): scored by every fold model.
TRANSFER_GROUP = -1


@dataclass(frozen=True)
class Combiner:
    """How the members' probabilities ``(M, B, C)`` become the teacher's ``(B, C)``.

    ``rule`` is ``"weighted"`` (``sum_m weights[m] * p_m``; weights sum to 1),
    ``"stacking"`` (``softmax(coef @ concat_m(log(clip(p_m, eps, 1))) + intercept)``, the
    formula ``ensemble.json`` states for stacking) or ``"vote"`` (the vote shares of
    :class:`~ferray.ensemble.VoteEnsemble`). ``note`` says why a rule was not the method's own.
    """

    rule: str
    weights: tuple[float, ...] | None = None
    coef: tuple[tuple[float, ...], ...] | None = None
    intercept: tuple[float, ...] | None = None
    eps: float = 1e-7
    note: str | None = None

    def __call__(self, P: Tensor) -> Tensor:
        P = P.float()
        if self.rule == "weighted":
            w = torch.tensor(self.weights, dtype=P.dtype, device=P.device)
            out = torch.einsum("m,mbc->bc", w, P)
        elif self.rule == "stacking":
            m, b, c = P.shape
            x = torch.log(P.clamp(self.eps, 1.0)).permute(1, 0, 2).reshape(b, m * c)
            coef = torch.tensor(self.coef, dtype=torch.float64, device=P.device)
            intercept = torch.tensor(self.intercept, dtype=torch.float64, device=P.device)
            out = torch.softmax(x.double() @ coef.T + intercept, dim=-1).to(P.dtype)
        elif self.rule == "vote":
            from ferray.ensemble import VoteEnsemble

            arr = P.detach().cpu().double().numpy()
            # Vote learns nothing from labels: fitting only records the members' and classes' count.
            vote = VoteEnsemble().fit(arr[:, :1], np.zeros(1, np.int64))
            out = torch.from_numpy(vote.predict_proba(arr)).to(device=P.device, dtype=P.dtype)
        else:
            raise ValueError(f"rule is {self.rule!r}, but must be 'weighted', 'stacking' or 'vote'")
        return out / out.sum(dim=-1, keepdim=True)

    def describe(self) -> dict:
        """What distill.json records of the rule."""
        out: dict = {"rule": self.rule}
        if self.weights is not None:
            out["weights"] = list(self.weights)
        if self.note:
            out["note"] = self.note
        return out


def combiner_of(members, num_classes: int) -> Combiner:
    """The rule combining ``members`` (:class:`~ferray.distill.EnsembleMembers`) as their ensemble does.

    Raises:
        DataError: the stacking state in ``ensemble.json`` does not fit the members and classes.
    """
    n = len(members.trial_ids)
    if members.weights:
        w = np.array([members.weights[t] for t in members.trial_ids], dtype=np.float64)
        return Combiner("weighted", weights=tuple((w / w.sum()).tolist()))
    state = members.state or {}
    if members.method == "stacking":
        coef, intercept = state.get("coef"), state.get("intercept")
        try:
            coef_arr = np.asarray(coef, dtype=np.float64)
            intercept_arr = np.asarray(intercept, dtype=np.float64)
        except (TypeError, ValueError):
            coef_arr = intercept_arr = np.zeros(0)
        if coef_arr.shape != (num_classes, n * num_classes) or intercept_arr.shape != (num_classes,):
            raise DataError(
                f"ensemble.json: methods.stacking has coef {list(coef_arr.shape)} and intercept "
                f"{list(intercept_arr.shape)}, but {n} members of {num_classes} classes need "
                f"[{num_classes}, {n * num_classes}] and [{num_classes}]; run `ferray ensemble` again"
            )
        return Combiner(
            "stacking",
            coef=tuple(map(tuple, coef_arr.tolist())),
            intercept=tuple(intercept_arr.tolist()),
            eps=float(state.get("eps", 1e-7)),
        )
    if members.method == "vote":
        return Combiner("vote")
    return Combiner(
        "weighted",
        weights=tuple([1.0 / n] * n),
        note=f"the chosen method {members.method!r} has no rule the online teacher knows; its "
        f"{n} members are averaged with equal weights",
    )


# -- what travels to the worker ---------------------------------------------------------------


@dataclass(frozen=True)
class MemberWeights:
    """One member trial's k fold models as the bytes of their weights files, in fold order."""

    trial_id: str
    img_size: int
    folds: tuple[bytes, ...] = field(repr=False)


@dataclass(frozen=True)
class TeacherPack:
    """Everything the worker needs to rebuild the teacher (picklable; sent with ``ray.put``)."""

    members: tuple[MemberWeights, ...]
    combiner: Combiner
    method: str | None
    k: int

    def describe(self) -> dict:
        return {
            "method": self.method,
            **self.combiner.describe(),
            "members": [m.trial_id for m in self.members],
            "member_img_sizes": {m.trial_id: m.img_size for m in self.members},
            "fold_models_per_member": self.k,
        }


def pack_teacher(run: RunLayout, members, *, fingerprint: str, k: int, num_classes: int, in_chans: int) -> TeacherPack:
    """Read the members' fold weights (checked against the run) into a :class:`TeacherPack`.

    Each member must have exactly the fold plan's ``k`` fold models (``fold_0 .. fold_{k-1}``,
    each recording its fold), made for the run's data, classes and channels: fold ``f``'s
    model is the one that never trained on fold ``f``'s rows.

    Raises:
        DataError: a member's weights are missing (pruned away), or belong to other data or folds.
    """

    out = []
    for trial_id in members.trial_ids:
        trial = run.trial(trial_id)
        files = {p.stem: p for p in trial.weights_dir.glob("fold_*.safetensors")} if trial.weights_dir.is_dir() else {}
        if not files:
            raise DataError(
                f"{trial.root}: ensemble member has no model weights (pruned away?); the online teacher "
                "runs every member's fold models: keep their weights (retention.keep_top) or use "
                "distill.teacher: fixed"
            )
        expected = [f"fold_{i}" for i in range(k)]
        if sorted(files) != sorted(expected):
            raise DataError(
                f"{trial.weights_dir}: has {', '.join(sorted(files))}, but the run's fold plan has "
                f"{k} folds ({', '.join(expected)}); the online teacher needs one model per fold"
            )
        blobs, size = [], None
        for i, name in enumerate(expected):
            path = files[name]
            meta = WeightsMeta.from_dict(read_weights_meta(path), source=path)
            problems = []
            if meta.data_fingerprint != fingerprint:
                problems.append(f"data {meta.data_fingerprint!r}, the run's is {fingerprint!r}")
            if meta.fold != i or meta.k != k:
                problems.append(f"fold {meta.fold!r} of k={meta.k!r}, expected fold {i} of k={k}")
            if meta.num_classes != num_classes or meta.in_chans != in_chans:
                problems.append(
                    f"{meta.num_classes} classes and {meta.in_chans} channels, the data has "
                    f"{num_classes} and {in_chans}"
                )
            if problems:
                raise DataError(f"{path}: made for {'; '.join(problems)}")
            if size is not None and meta.img_size != size:
                raise DataError(f"{path}: image size {meta.img_size}, but {trial_id}'s fold_0 has {size}")
            size = meta.img_size
            blobs.append(path.read_bytes())
        out.append(MemberWeights(trial_id, int(size), tuple(blobs)))
    return TeacherPack(tuple(out), combiner_of(members, num_classes), members.method, int(k))


def teacher_groups(n_rows: int, fold: np.ndarray, cv_rows: np.ndarray) -> np.ndarray:
    """``int64 (n_rows,)``: each cross-validation row's fold, :data:`TRANSFER_GROUP` elsewhere.

    ``fold`` is the fold plan's per-row fold (of the run's own rows, which come first);
    rows beyond it are transfer images.
    """
    groups = np.full(n_rows, TRANSFER_GROUP, dtype=np.int64)
    groups[cv_rows] = np.asarray(fold)[cv_rows]
    return groups


# -- the teacher itself -------------------------------------------------------------------------


class OnlineTeacher:
    """The ensemble as a function of a batch: ``teacher(x, groups) -> (B, C)`` probabilities.

    Args:
        members: per member trial, its k fold models (fold order); put in eval mode.
        img_sizes: per member, the image side its models were trained at.
        combiner: how member probabilities combine.
        device: where the models run.

    ``x`` is a normalised batch ``(B, C, H, W)`` (the student's view); ``groups`` ``(B,)``
    holds each row's fold, or :data:`TRANSFER_GROUP`. Runs without gradients.
    """

    def __init__(
        self,
        members: Sequence[Sequence[nn.Module]],
        img_sizes: Sequence[int],
        combiner: Combiner,
        *,
        device: torch.device | str = "cpu",
    ) -> None:
        if len(members) != len(img_sizes) or not members:
            raise ValueError(
                f"{len(members)} members and {len(img_sizes)} image sizes; need one size per member "
                "and at least one member"
            )
        ks = {len(m) for m in members}
        if len(ks) != 1 or 0 in ks:
            raise ValueError(f"members have {sorted(ks)} fold models; every member needs the same k >= 1")
        self.device = torch.device(device)
        self.members = [[m.to(self.device).eval() for m in models] for models in members]
        for models in self.members:
            for m in models:
                m.requires_grad_(False)
        self.img_sizes = [int(s) for s in img_sizes]
        self.combiner = combiner
        self.k = ks.pop()

    @classmethod
    def from_pack(cls, pack: TeacherPack, *, device: torch.device | str = "cpu") -> OnlineTeacher:
        """Rebuild the members' models from a :class:`TeacherPack`'s bytes (through ferray's own loader)."""

        members = []
        with tempfile.TemporaryDirectory(prefix="ferray-teacher-") as tmp:
            for member in pack.members:
                layout = TrialLayout(Path(tmp) / member.trial_id)
                layout.weights_dir.mkdir(parents=True)
                for i, blob in enumerate(member.folds):
                    layout.weights(i).write_bytes(blob)
                members.append(load_fold_models(layout))
        return cls(members, [m.img_size for m in pack.members], pack.combiner, device=device)

    def _probs(self, model: nn.Module, x: Tensor) -> Tensor:
        return model(x)["logits"].float().softmax(dim=-1)

    @torch.no_grad()
    def member_probs(self, x: Tensor, groups: Tensor) -> Tensor:
        """``(M, B, C)``: each member's probabilities, row by row from the model its group allows."""
        groups = torch.as_tensor(groups).to(x.device).long()
        if groups.shape != (x.shape[0],):
            raise ValueError(f"groups must be (B,) = ({x.shape[0]},), got shape {tuple(groups.shape)}")
        present = torch.unique(groups).tolist()
        bad = [g for g in present if g != TRANSFER_GROUP and not 0 <= g < self.k]
        if bad:
            raise ValueError(
                f"group {bad[0]} is neither a fold in 0..{self.k - 1} nor TRANSFER_GROUP ({TRANSFER_GROUP})"
            )
        x = x.to(self.device)
        groups = groups.to(self.device)
        out = []
        for models, size in zip(self.members, self.img_sizes):
            xm = x
            if tuple(x.shape[-2:]) != (size, size):
                down = size < min(x.shape[-2:])
                xm = F.interpolate(
                    x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=down
                ).to(x.dtype)
            p = None
            for g in present:
                idx = torch.nonzero(groups == g, as_tuple=True)[0]
                xg = xm[idx]
                if g == TRANSFER_GROUP:
                    pg = torch.stack([self._probs(m, xg) for m in models]).mean(dim=0)
                else:
                    pg = self._probs(models[g], xg)
                if p is None:
                    p = pg.new_zeros((x.shape[0], pg.shape[-1]))
                p[idx] = pg
            out.append(p)
        return torch.stack(out)

    @torch.no_grad()
    def __call__(self, x: Tensor, groups: Tensor) -> Tensor:
        return self.combiner(self.member_probs(x, groups))

    def predict(
        self, images: np.ndarray, transform, *, groups: np.ndarray | None = None, batch_size: int = 256
    ) -> np.ndarray:
        """``float32 (N, C)`` for ``uint8 (N, H, W, C)`` images through ``transform`` (e.g. the eval transform).

        ``groups`` defaults to :data:`TRANSFER_GROUP` for every image (all fold models).
        """

        n = len(images)
        groups = np.full(n, TRANSFER_GROUP, np.int64) if groups is None else np.asarray(groups, np.int64)
        out = []
        for start in range(0, n, batch_size):
            x = torch.from_numpy(apply_batch(transform, images[start : start + batch_size]))
            out.append(self(x, torch.from_numpy(groups[start : start + batch_size])).cpu().numpy())
        if not out:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(out).astype(np.float32)

    def __repr__(self) -> str:
        return (
            f"OnlineTeacher({len(self.members)} members x {self.k} fold models, sizes {self.img_sizes}, "
            f"rule {self.combiner.rule!r})"
        )
