"""Every advertised backbone family exports to ONNX (torch.export) and agrees with PyTorch."""

from __future__ import annotations

import pytest

from ferray.export._graph import FoldMean, ModelGraph, Preprocess
from ferray.export._onnx import check_onnx, export_onnx
from ferray.training.config import ModelConfig
from ferray.training.models import BACKBONE_FAMILIES, build_model

# Alternate heads and channel counts so both AU heads and RGB input are covered without doubling the cost.
CASES = [
    (family, head, channels)
    for (family, head, channels) in zip(BACKBONE_FAMILIES, ["emotion", "au_attention", "multitask"] * 3, [1, 3] * 4)
]


@pytest.mark.parametrize("family, head, channels", CASES)
def test_family_exports(tmp_path, family, head, channels):
    tiny = BACKBONE_FAMILIES[family]["tiny"]
    cfg = ModelConfig(backbone=tiny["name"], backbone_kwargs=tiny["kwargs"], pretrained=False, head=head)
    model = build_model(cfg, num_classes=7, in_chans=channels, img_size=48).eval()
    graph = ModelGraph(FoldMean([model]), Preprocess(channels=channels))
    path = tmp_path / "model.onnx"
    info = export_onnx(graph, path, size=48, channels=channels, output_names=["probs"], what=family)
    assert info["exporter"] == "dynamo", info.get("fallback_reason")
    assert check_onnx(graph, path, size=48, channels=channels, output_names=["probs"], what=family) <= 1e-4
