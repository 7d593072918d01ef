"""Loss and schedule registries are the one list of valid names (a registered name reaches YAML)."""

from __future__ import annotations

import pytest

from ferray.errors import ConfigError
from ferray.training.registry import LOSS_REGISTRY, SCHEDULE_REGISTRY


def test_builtin_names_match_what_the_modules_register():
    import ferray.training.losses  # noqa: F401 - registers the built-ins
    import ferray.training.schedules  # noqa: F401

    assert set(LOSS_REGISTRY) == set(LOSS_REGISTRY.builtin) | (set(LOSS_REGISTRY) - set(LOSS_REGISTRY.builtin))
    assert set(LOSS_REGISTRY.builtin) <= set(LOSS_REGISTRY)
    assert set(SCHEDULE_REGISTRY.builtin) <= set(SCHEDULE_REGISTRY)


def test_an_unknown_loss_in_a_config_file_names_the_file_line_and_nearest(tmp_path):
    from ferray.training.config import load_train_config

    path = tmp_path / "train.yaml"
    path.write_text("model: {backbone: test_resnet}\nloss:\n  name: focall\n")
    with pytest.raises(
        ConfigError,
        match=r"train\.yaml:3: loss\.name: .*unknown loss 'focall'; did you mean "
        r"'focal'.*registered loss names: ce, focal",
    ):
        load_train_config(path)


def test_a_registered_loss_is_valid_in_yaml_and_builds(tmp_path):
    from ferray.training import FocalLoss, build_loss, register_loss
    from ferray.training.config import LossConfig, load_train_config

    @register_loss("test_gamma3_focal")
    def _factory(cfg, num_classes, class_counts):
        return FocalLoss(gamma=3.0)

    try:
        path = tmp_path / "train.yaml"
        path.write_text("loss: {name: test_gamma3_focal}\n")
        cfg = load_train_config(path)
        assert cfg.loss.name == "test_gamma3_focal"
        loss = build_loss(LossConfig(name="test_gamma3_focal"), 3, [5, 5, 5], None, 1.0)
        assert isinstance(loss.emotion, FocalLoss) and loss.emotion.gamma == 3.0
    finally:
        dict.pop(LOSS_REGISTRY, "test_gamma3_focal", None)


def test_a_registered_schedule_is_valid_in_a_search_space(tmp_path):
    from ferray.search import load_search_spec
    from ferray.training import register_schedule

    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: t\ndata: {source: 'synthetic:basic7?count=70'}\nfolds: {k: 2}\n"
        "model: {backbone: test_resnet}\nbudget: {trials: 2, max_epochs: 2}\nspace:\n"
        "  optim.schedule.name: {type: categorical, choices: [cosine, test_flat]}\n"
    )

    @register_schedule("test_flat")
    def _flat(cfg, total, warmup, steps_per_epoch):
        return lambda step: 1.0

    try:
        spec = load_search_spec(path)
        assert spec.space["optim.schedule.name"].choices == ["cosine", "test_flat"]
    finally:
        dict.pop(SCHEDULE_REGISTRY, "test_flat", None)


def test_registering_a_taken_name_is_refused():
    from ferray.training import register_loss

    with pytest.raises(ValueError, match="loss 'ce' is already registered"):
        register_loss("ce")(lambda cfg, n, counts: None)
