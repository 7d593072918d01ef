"""The maps mean something: a model trained on synthetic faces looks where the expressions are.

In ferray's synthetic faces happiness is AU6+AU12 (cheeks, lip corners pulled up) and anger
AU4+AU5+AU7+AU23 (brows lowered and drawn together, lids, pressed lips). A tiny ResNet
trained on happy / angry / neutral faces (difficulty 0: small pose variation, so the brows
and the mouth stay in fixed bands of the 48x48 image) should put more attribution on the
mouth than on the brows for happiness, and the other way round for anger.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

BROWS = (slice(11, 22), slice(8, 40))  # rows of the brows and eyes, columns of the face
MOUTH = (slice(29, 40), slice(8, 40))  # rows of the mouth


@pytest.fixture(scope="module")
def trained():
    from ferray.data import load_source
    from ferray.training.augment import apply_batch, build_eval_transform
    from ferray.training.config import ModelConfig
    from ferray.training.models import build_model

    data = load_source("synthetic:basic7?count=900&size=48&seed=0&difficulty=0", size=48, channels=1)
    names = list(data.class_names)
    wanted = sorted(names.index(c) for c in ("angry", "happy", "neutral"))
    keep = np.isin(data.labels, wanted)
    classes = [names[c] for c in wanted]
    x = torch.from_numpy(apply_batch(build_eval_transform(48, 1), data.images[keep]))
    y = torch.from_numpy(np.searchsorted(wanted, data.labels[keep]))
    n_train = int(0.8 * len(x))
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="test_resnet"), num_classes=3, in_chans=1, img_size=48)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(12):
        model.train()
        perm = torch.randperm(n_train, generator=g)
        for i in range(0, n_train, 32):
            b = perm[i : i + 32]
            loss = torch.nn.functional.cross_entropy(model(x[b])["logits"], y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(x[n_train:])["logits"].argmax(1) == y[n_train:]).float().mean())
    return model, classes, x[n_train:], y[n_train:].numpy(), acc


def _mass(maps: np.ndarray, region: tuple[slice, slice]) -> float:
    return float(maps[:, region[0], region[1]].sum(axis=(1, 2)).mean())


def test_the_model_learned_the_expressions(trained):
    *_, acc = trained
    assert acc > 0.7


@pytest.mark.parametrize("emotion, more, less", [("happy", MOUTH, BROWS), ("angry", BROWS, MOUTH)])
def test_integrated_gradients_look_at_the_expression(trained, emotion, more, less):
    from ferray.explain import ig_map, integrated_gradients

    model, classes, x, y, _ = trained
    cls = classes.index(emotion)
    sel = np.flatnonzero(y == cls)[:16]
    maps = ig_map(integrated_gradients(model, x[sel], [cls] * len(sel), steps=16))
    assert _mass(maps, more) > 1.2 * _mass(maps, less)


def test_gradcam_moves_to_the_mouth_for_happiness_and_to_the_brows_for_anger(trained):
    from ferray.explain import CAMExplainer

    model, classes, x, y, _ = trained
    cam = CAMExplainer(model, "gradcam")
    share = {}
    for emotion in ("happy", "angry"):
        cls = classes.index(emotion)
        sel = np.flatnonzero(y == cls)[:16]
        maps = cam(x[sel], [cls] * len(sel))
        share[emotion] = _mass(maps, MOUTH) / (_mass(maps, MOUTH) + _mass(maps, BROWS))
    assert share["happy"] > share["angry"] + 0.1
    assert share["angry"] < 0.5
