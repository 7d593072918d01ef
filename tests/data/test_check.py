from __future__ import annotations

import json
import os

import numpy as np
import pytest
from _data_helpers import make_folder

from ferray.data import check
from ferray.data._hashing import near_duplicate_pairs, phash64
from ferray.errors import DataError


def test_check_counts_and_duplicates(tmp_path):
    rng = np.random.default_rng(0)
    make_folder(tmp_path, {"a": 3, "b": 2}, rng, split="train")
    make_folder(tmp_path, {"a": 1, "b": 1}, rng, split="test")
    # an exact copy of a training image in test
    (tmp_path / "test" / "a" / "copy.png").write_bytes((tmp_path / "train" / "a" / "000.png").read_bytes())
    report = check(tmp_path)
    assert report.ok, report.errors
    assert report.rows == {"train": 5, "test": 3, "all": 8}
    assert report.class_counts["train"] == {"a": 3, "b": 2}
    assert report.imbalance["train"] == pytest.approx(1.5)
    assert report.exact_duplicates["cross_split_groups"] == 1
    assert report.exact_duplicates["pairs_by_splits"] == {"test/train": 1}
    assert any("span splits" in w for w in report.warnings)
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["ok"] is True and payload["image_sizes"] == {"8x8": 8}
    assert "imbalance" in report.render(rich=False)
    from rich.console import Console

    Console(file=open(os.devnull, "w")).print(report.render())


def test_check_source_problem_is_an_error(tmp_path):
    make_folder(tmp_path, {"only": 2}, np.random.default_rng(0))
    report = check(tmp_path)
    assert not report.ok and "single class" in report.errors[0]
    assert not check(tmp_path / "missing").ok


def test_check_bad_arguments_raise(tmp_path):
    with pytest.raises(DataError, match=r"near_distance is 99, but must be an integer 0\.\.16"):
        check(tmp_path, near_distance=99)
    make_folder(tmp_path, {"a": 1, "b": 1}, np.random.default_rng(0))
    with pytest.raises(DataError, match=r"option 'wrkers' is not accepted by a folder source.*did you mean 'workers'"):
        check(tmp_path, wrkers=2)


def test_near_duplicates_found_by_phash(tmp_path):
    rng = np.random.default_rng(1)
    base = np.kron(rng.integers(20, 230, (8, 8)), np.ones((4, 4))).astype(np.uint8)  # smooth-ish face stand-in
    brighter = (base.astype(int) + 5 + rng.integers(0, 3, base.shape)).astype(np.uint8)
    imgs = np.stack([base, brighter, rng.integers(0, 256, (32, 32), np.uint8)])
    h = phash64(imgs[..., None])
    a, b, dist = near_duplicate_pairs(h, 3)
    assert list(zip(a.tolist(), b.tolist())) == [(0, 1)] and dist[0] <= 3


def test_near_duplicate_search_is_exact_against_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 50, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, (200, 3)).astype(np.uint64)
    h = np.concatenate([base, base[rng.integers(0, 50, 200)] ^ flips[:, 0] ^ flips[:, 1] ^ flips[:, 2]])
    a, b, _ = near_duplicate_pairs(h, 3)
    dist = np.bitwise_count(h[:, None] ^ h[None, :])
    i, j = np.nonzero(np.triu(dist <= 3, 1))
    assert set(zip(a.tolist(), b.tolist())) == set(zip(i.tolist(), j.tolist()))


# Known exact train/test duplicates in the real FER2013 folders.
_REAL_PAIRS = [
    ("test/neutral/PublicTest_53746155.jpg", "train/neutral/Training_61936611.jpg"),
    ("test/surprise/PublicTest_13722582.jpg", "train/surprise/Training_4897533.jpg"),
    ("test/fear/PrivateTest_14661354.jpg", "train/fear/Training_40931156.jpg"),
]


@pytest.mark.shared_data
def test_real_fer2013_cross_split_duplicates(shared_data, tmp_path):
    src = shared_data / "fer2013"
    wanted = {p for pair in _REAL_PAIRS for p in pair}
    for split in ("train", "test"):
        for cls in sorted(os.listdir(src / split)):
            names = sorted(os.listdir(src / split / cls))[:15]
            names += [p.rsplit("/", 1)[1] for p in wanted if p.startswith(f"{split}/{cls}/")]
            (tmp_path / split / cls).mkdir(parents=True)
            for name in set(names):
                os.symlink(src / split / cls / name, tmp_path / split / cls / name)
    report = check(tmp_path)
    assert report.ok, report.errors
    assert report.image_sizes == {"48x48": report.rows["all"]} and report.image_modes == {"L": report.rows["all"]}
    assert report.exact_duplicates["cross_split_groups"] >= 3
    flat = {x.split(" ")[0] for g in report.exact_duplicates["examples"] for x in g}
    assert wanted <= flat or report.exact_duplicates["cross_split_groups"] > len(report.exact_duplicates["examples"])
