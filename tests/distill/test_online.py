"""The online teacher without Ray: which model scores which row, how members combine, what it sees."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from ferray.distill import (
    TRANSFER_GROUP,
    Combiner,
    EnsembleMembers,
    OnlineTeacher,
    StudentTrainer,
    combiner_of,
    distillation_loss,
    pack_targets,
    pack_teacher,
    read_ensemble_members,
    soften,
    student_config,
    teacher_groups,
)
from ferray.errors import DataError
from ferray.run.sections import DistillConfig
from ferray.search import load_search_spec
from ferray.training.mixing import MixupCutmix, group_permutation

C = 5


class Constant(nn.Module):
    """Outputs the same distribution for every image; records the inputs it was given."""

    def __init__(self, probs):
        super().__init__()
        self.logits = torch.log(torch.as_tensor(probs, dtype=torch.float32))
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return {"logits": self.logits.expand(x.shape[0], -1)}


def _peak(cls: int, high: float = 0.6) -> np.ndarray:
    p = np.full(C, (1 - high) / (C - 1))
    p[cls] = high
    return p


def _members(k: int = 2):
    """Member 0's fold-f model peaks at class f; member 1's at class 2 + f: every (member, fold) differs."""
    return [[Constant(_peak(f)) for f in range(k)], [Constant(_peak(2 + f)) for f in range(k)]]


def test_a_row_of_fold_f_is_scored_by_each_members_fold_f_model_only():
    members = _members()
    teacher = OnlineTeacher(members, [8, 8], Combiner("weighted", weights=(0.5, 0.5)))
    x = torch.randn(5, 1, 8, 8)
    groups = torch.tensor([0, 1, 1, TRANSFER_GROUP, 0])
    P = teacher.member_probs(x, groups).numpy()
    for row, g in enumerate(groups.tolist()):
        for m in range(2):
            expected = _peak(2 * m + g) if g >= 0 else (_peak(2 * m) + _peak(2 * m + 1)) / 2
            np.testing.assert_allclose(P[m, row], expected, rtol=1e-5, err_msg=f"member {m}, row {row}")
    # Each fold model saw exactly its fold's rows (and every transfer row), never another fold's.
    for m in range(2):
        assert [len(s) for s in members[m][0].seen] == [1, 2]  # rows 3 (transfer) then 0 and 4 (fold 0)
        assert [len(s) for s in members[m][1].seen] == [1, 2]  # rows 3 (transfer) then 1 and 2 (fold 1)
        np.testing.assert_array_equal(members[m][0].seen[1], x[[0, 4]])
        np.testing.assert_array_equal(members[m][1].seen[1], x[[1, 2]])


def test_groups_outside_the_folds_are_refused():
    teacher = OnlineTeacher(_members(), [8, 8], Combiner("weighted", weights=(0.5, 0.5)))
    with pytest.raises(ValueError, match=r"group 2 is neither a fold in 0..1 nor TRANSFER_GROUP"):
        teacher(torch.randn(2, 1, 8, 8), torch.tensor([0, 2]))


def test_weighted_members_follow_the_ensembles_weights():
    teacher = OnlineTeacher(_members(), [8, 8], Combiner("weighted", weights=(0.75, 0.25)))
    probs = teacher(torch.randn(2, 1, 8, 8), torch.tensor([0, 1])).numpy()
    np.testing.assert_allclose(probs[0], 0.75 * _peak(0) + 0.25 * _peak(2), rtol=1e-5)
    np.testing.assert_allclose(probs[1], 0.75 * _peak(1) + 0.25 * _peak(3), rtol=1e-5)

    m = EnsembleMembers(("a", "b", "c"), {"a": 2.0, "b": 1.0, "c": 1.0}, "greedy")
    assert combiner_of(m, C).weights == pytest.approx((0.5, 0.25, 0.25))
    odd = combiner_of(EnsembleMembers(("a", "b"), None, "my_method"), C)
    assert odd.rule == "weighted" and odd.weights == (0.5, 0.5) and "'my_method'" in odd.note


def test_a_member_trained_at_another_size_sees_the_batch_resized():
    members = _members()
    teacher = OnlineTeacher(members, [8, 4], Combiner("weighted", weights=(0.5, 0.5)))
    teacher(torch.randn(3, 1, 8, 8), torch.tensor([0, 0, 1]))
    assert members[0][0].seen[0].shape == (2, 1, 8, 8) and members[1][0].seen[0].shape == (2, 1, 4, 4)


@pytest.mark.parametrize("method", ["greedy", "mean", "stacking", "vote"])
def test_members_combine_as_their_ensemble_does(tiny_run, method):
    """The rule applied to the members' holdout probabilities gives the ensemble's holdout file."""
    from ferray.ensemble import build_ensembles
    from ferray.run.predictions import read_predictions

    shutil.rmtree(tiny_run.layout.ensemble)
    build_ensembles(tiny_run.root, top=2, methods=method, echo=None)
    members = read_ensemble_members(tiny_run.layout)
    combiner = combiner_of(members, tiny_run.data.num_classes)
    assert combiner.rule == {"greedy": "weighted", "mean": "weighted"}.get(method, method) and combiner.note is None
    P = np.stack([read_predictions(tiny_run.layout.trial(t).holdout).row_means().probs for t in members.trial_ids])
    ensemble = read_predictions(tiny_run.layout.ensemble / "holdout.parquet").row_means()
    np.testing.assert_allclose(combiner(torch.from_numpy(P)).numpy(), ensemble.probs, rtol=1e-4, atol=1e-5)


def test_a_stacking_state_that_does_not_fit_is_refused():
    m = EnsembleMembers(("a", "b"), None, "stacking", {"coef": [[1.0] * 3] * C, "intercept": [0.0] * C})
    with pytest.raises(DataError, match=r"coef \[5, 3\].*need \[5, 10\] and \[5\]"):
        combiner_of(m, C)


def test_the_pack_rebuilds_the_members_fold_models(tiny_run):
    from ferray.training.weights import load_fold_models

    data, plan = tiny_run.data, tiny_run.plan
    path = tiny_run.layout.ensemble / "ensemble.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "chosen": "mean"}))
    members = read_ensemble_members(tiny_run.layout)
    pack = pack_teacher(
        tiny_run.layout, members, fingerprint=plan.data_fingerprint, k=plan.k, num_classes=data.num_classes, in_chans=1
    )
    assert [m.trial_id for m in pack.members] == ["t0001", "t0002"] and pack.combiner.weights == (0.5, 0.5)
    teacher = OnlineTeacher.from_pack(pack)
    x = torch.randn(4, 1, 48, 48)
    groups = torch.tensor([0, 1, TRANSFER_GROUP, 1])
    got = teacher.member_probs(x, groups)
    for m, trial_id in enumerate(members.trial_ids):
        models = load_fold_models(tiny_run.layout.trial(trial_id))
        with torch.no_grad():
            p = [model(x)["logits"].softmax(-1) for model in models]
        expected = torch.stack([p[0][0], p[1][1], (p[0][2] + p[1][2]) / 2, p[1][3]])
        torch.testing.assert_close(got[m], expected, rtol=1e-4, atol=1e-6)


def test_the_pack_refuses_members_of_other_data_or_folds(tiny_run):
    data, plan = tiny_run.data, tiny_run.plan
    members = read_ensemble_members(tiny_run.layout)
    kwargs = {"k": plan.k, "num_classes": data.num_classes, "in_chans": 1}
    with pytest.raises(DataError, match="made for data 'feedfacefeedface'|the run's is 'feedfacefeedface'"):
        pack_teacher(tiny_run.layout, members, fingerprint="feedfacefeedface", **kwargs)
    with pytest.raises(DataError, match=r"but the run's fold plan has 3 folds"):
        pack_teacher(tiny_run.layout, members, fingerprint=plan.data_fingerprint, **{**kwargs, "k": 3})
    (tiny_run.layout.trial("t0001").weights(1)).unlink()
    with pytest.raises(DataError, match=r"has fold_0, but the run's fold plan has 2 folds"):
        pack_teacher(tiny_run.layout, members, fingerprint=plan.data_fingerprint, **kwargs)
    shutil.rmtree(tiny_run.layout.trial("t0001").weights_dir)
    with pytest.raises(DataError, match=r"no model weights .*distill.teacher: fixed"):
        pack_teacher(tiny_run.layout, members, fingerprint=plan.data_fingerprint, **kwargs)


def test_groups_are_the_rows_folds_and_transfer_elsewhere(tiny_run):
    plan = tiny_run.plan
    cv = plan.cv_index
    g = teacher_groups(len(tiny_run.data) + 3, plan.fold, cv)
    np.testing.assert_array_equal(g[cv], plan.fold[cv])
    assert (g[len(tiny_run.data) :] == TRANSFER_GROUP).all() and (g[plan.holdout_index] == TRANSFER_GROUP).all()


def test_mixing_partners_stay_in_their_group():
    groups = torch.tensor([0, 1, 0, 1, 0, -1, -1, 1, 0])
    for seed in range(20):
        perm = group_permutation(groups, torch.Generator().manual_seed(seed))
        assert torch.equal(groups[perm], groups) and sorted(perm.tolist()) == list(range(len(groups)))
    mix = MixupCutmix(3, mixup_alpha=1.0, generator=torch.Generator().manual_seed(0))
    x = groups.float().view(-1, 1, 1, 1).expand(-1, 1, 4, 4)  # each image holds its group's number
    xm, _, _ = mix(x, torch.eye(3)[torch.zeros(len(groups), dtype=torch.long)], groups=groups)
    assert mix.last_perm is not None
    torch.testing.assert_close(xm, x)  # mixing two images of the same group leaves that group's number


class Recorder:
    """A teacher that records what it is given and answers a fixed distribution."""

    def __init__(self, probs: np.ndarray):
        self.probs = torch.as_tensor(probs, dtype=torch.float32)
        self.calls: list[tuple[torch.Tensor, torch.Tensor, bool]] = []

    def __call__(self, x, groups):
        self.calls.append((x.detach().clone(), groups.clone(), torch.is_grad_enabled()))
        return self.probs.expand(x.shape[0], -1)


@pytest.mark.parametrize("mix", [{"mixup_alpha": 1.0}, {"cutmix_alpha": 1.0}])
def test_the_teacher_sees_the_augmented_mixed_batch_the_student_sees(tiny_run, mix):
    """Each image is one grey value per fold: a mixed image with a partner of another fold would show two."""
    data, plan = tiny_run.data, tiny_run.plan
    spec = load_search_spec(tiny_run.layout.spec, check_backbones=False)
    cfg = student_config(spec.base_config(), DistillConfig(student="test_resnet", epochs=1, batch_size=32))
    cfg = cfg.model_copy(
        update={
            "augment": cfg.augment.model_copy(update={**mix, "mix_prob": 1.0, "strength": 0.0}),
            "run": cfg.run.model_copy(update={"max_steps_per_epoch": 2}),
        }
    )
    value = {0: 40, 1: 200}
    images = np.zeros_like(data.images)
    cv = plan.cv_index
    for f, v in value.items():
        images[cv[plan.fold[cv] == f]] = v
    data = replace(data, images=images)
    targets = pack_targets(len(data), data.num_classes, cv, tiny_run.teacher[cv], data.labels[cv], 2.0)
    teacher = Recorder(soften(tiny_run.teacher[cv[:1]], 1.0)[0])
    trainer = StudentTrainer(
        cfg,
        data,
        cv,
        targets,
        alpha=1.0,
        temperature=2.0,
        device="cpu",
        teacher=teacher,
        groups=teacher_groups(len(data), plan.fold, cv),
    )
    seen, logits = [], []
    trainer.model.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    trainer.model.register_forward_hook(lambda mod, args, out: logits.append(out["logits"].detach().clone()))
    stats = trainer.train_epoch(0)
    assert len(teacher.calls) == len(seen) == 2
    for (x, groups, grad), student_x in zip(teacher.calls, seen):
        torch.testing.assert_close(x, student_x)  # the very tensor, after augmentation and mixing
        assert not grad
        assert set(groups.tolist()) <= {0, 1} and len(set(groups.tolist())) == 2
        for f, v in value.items():
            rows = x[groups == f]
            torch.testing.assert_close(rows, torch.full_like(rows, v / 127.5 - 1.0))  # never mixed across folds
    # The soft target is the teacher's answer softened at T (alpha 1: the hard labels play no part).
    target = soften(teacher.probs, 2.0)
    losses = [
        float(distillation_loss(z, target.expand(len(z), -1), torch.zeros_like(z), alpha=1.0, temperature=2.0)) * len(z)
        for z in logits
    ]
    assert stats.train_loss == pytest.approx(sum(losses) / sum(len(z) for z in logits), rel=1e-5)
