import pytest

from ferray.errors import ConfigError
from ferray.training.config import TrainConfig, load_train_config


def write(tmp_path, text):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def test_defaults_and_a_full_file_load(tmp_path):
    cfg = load_train_config(write(tmp_path, "model:\n  backbone: resnet18\noptim:\n  lr: 3.0e-4\n"))
    assert cfg.model.backbone == "resnet18" and cfg.optim.lr == 3e-4 and cfg.folds.k == 3


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "optim:\n  lr: 0.1\n  shedule: {name: cosine}\n",
            r"train.yaml:3: optim.shedule: unknown key; did you mean 'schedule'\?",
        ),
        ("run:\n  epochs: 0\n", r"train.yaml:2: run.epochs: Input should be greater than or equal to 1"),
        (
            "loss:\n  name: focl\n",
            r"train.yaml:2: loss.name: .*unknown loss 'focl'; did you mean 'focal'.*registered loss names: ce, focal, "
            r"label_smoothing, soft_ce",
        ),
        (
            "model:\n  head: emotion\nmodel:\n  head: multitask\n",
            r"train.yaml:3: key 'model' appears twice \(first at line 1\)",
        ),
        ("model: [1, 2\n", r"train.yaml:\d+: not valid YAML"),
        ("- 1\n- 2\n", r"expected a mapping of keys at the top level"),
    ],
)
def test_bad_files_name_the_line_the_key_and_what_is_accepted(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(write(tmp_path, text))


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_train_config(write(tmp_path, "run:\n  epochs: -1\n  batch_size: 0\n"))
    assert "run.epochs" in str(err.value) and "run.batch_size" in str(err.value)


def test_overrides_merge_into_nested_sections(tmp_path):
    cfg = load_train_config(write(tmp_path, "optim:\n  lr: 0.1\n"), overrides={"optim": {"schedule": {"name": "step"}}})
    assert cfg.optim.lr == 0.1 and cfg.optim.schedule.name == "step"
    assert TrainConfig.model_validate({}).model.pretrained is False
