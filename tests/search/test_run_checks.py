"""What `ferray search` refuses before Ray starts: bad run names, folders that are not runs."""

from __future__ import annotations

import pytest

from ferray.errors import ConfigError

SPEC = """\
name: checks
data: {source: "synthetic:basic7?count=70&size=48"}
folds: {k: 2}
model: {backbone: test_resnet}
budget: {trials: 2, max_epochs: 2}
space:
  optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


@pytest.mark.parametrize("name", ["../outside", "a/b", ".."])
def test_a_run_name_with_a_path_in_it_is_refused(spec, tmp_path, name):
    from ferray.search import run_search

    with pytest.raises(ConfigError, match="a run name is one folder name"):
        run_search(spec, storage=tmp_path / "runs", name=name, live=False, echo=lambda s: None)
    assert not (tmp_path / "outside").exists()


def test_a_non_empty_folder_that_is_not_a_run_is_never_written_into(spec, tmp_path):
    from ferray.search import run_search

    target = tmp_path / "runs" / "thesis"
    target.mkdir(parents=True)
    (target / "chapter1.tex").write_text("precious")
    with pytest.raises(ConfigError, match="exists and is not an empty folder or a ferray run"):
        run_search(spec, storage=tmp_path / "runs", name="thesis", live=False, echo=lambda s: None)
    assert sorted(p.name for p in target.iterdir()) == ["chapter1.tex"]


def test_dry_run_takes_a_data_override(spec):
    from ferray.search import dry_run

    text = dry_run(spec, num_cpus=2, data="synthetic:basic8?count=80&size=48")
    assert "synthetic:basic8?count=80&size=48" in text and "80 images" in text
