from __future__ import annotations

import numpy as np
import pytest
import torch

from ferray.training import build_eval_transform, build_model, predict_proba
from ferray.training.config import ModelConfig


@pytest.mark.parametrize("tta", [[], ["hflip"], ["hflip", "multicrop"]], ids=["none", "hflip", "hflip+multicrop"])
def test_predict_proba_rows_sum_to_one(tta: list[str]) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="test_resnet", head="multitask"), 5, in_chans=1)
    images = np.random.default_rng(0).integers(0, 256, (7, 40, 40, 1), dtype=np.uint8)
    probs, au_probs = predict_proba(model, images, build_eval_transform(32, 1), tta, batch_size=3, device="cpu")
    assert probs.shape == (7, 5) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert au_probs.shape == (7, 18) and ((au_probs > 0) & (au_probs < 1)).all()
    assert not model.training


def test_hflip_view_makes_predictions_flip_invariant() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="test_resnet"), 3, in_chans=1)
    images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 1), dtype=np.uint8)
    tf = build_eval_transform(32, 1)
    a, au = predict_proba(model, images, tf, ["hflip"], batch_size=8, device="cpu")
    b, _ = predict_proba(model, images[:, :, ::-1], tf, ["hflip"], batch_size=8, device="cpu")
    assert au is None
    assert np.allclose(a, b, atol=1e-5)


def test_unknown_view_is_an_error() -> None:
    model = build_model(ModelConfig(backbone="test_resnet"), 3, in_chans=1)
    with pytest.raises(ValueError, match="unknown TTA view.*valid views: identity, hflip, multicrop"):
        predict_proba(model, np.zeros((1, 32, 32, 1), np.uint8), build_eval_transform(32, 1), ["rot90"], 4, "cpu")
