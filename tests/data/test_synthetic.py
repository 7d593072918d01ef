"""The embedded synthetic FACS-driven face dataset."""

from __future__ import annotations

import numpy as np
import pytest

from ferray.data import AU_IDS, TAXONOMIES, generate, parse_synthetic_spec, synthetic_spec
from ferray.errors import DataError


def au_rate(data, label: str, au: int) -> float:
    rows = data.labels == data.class_names.index(label)
    return float(data.aus[rows, AU_IDS.index(au)].mean())


# --------------------------------------------------------------------------- generate


def test_same_seed_same_bytes_and_different_seed_differs():
    a = generate(count=70, seed=3, difficulty=0.4, occlusion=0.3)
    b = generate(count=70, seed=3, difficulty=0.4, occlusion=0.3)
    c = generate(count=70, seed=4, difficulty=0.4, occlusion=0.3)
    assert a.images.tobytes() == b.images.tobytes()
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.aus, b.aus)
    assert a.fingerprint() == b.fingerprint()
    assert a.images.tobytes() != c.images.tobytes()
    assert a.fingerprint() != c.fingerprint()


@pytest.mark.parametrize("size", [48, 112, 224])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_dtypes(size, channels):
    data = generate(count=9, size=size, channels=channels, seed=1)
    assert data.images.shape == (9, size, size, channels)
    assert data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64
    assert data.aus.shape == (9, len(AU_IDS)) and data.aus.dtype == np.uint8
    assert data.image_shape == (size, size, channels)
    # a real picture, not a flat fill
    assert data.images.std() > 20


def test_ids_origin_and_round_trip_through_the_table():
    data = generate(count=20, seed=5)
    assert data.ids[0] == "synthetic:basic7:000000"
    assert data.ids[19] == "synthetic:basic7:000019"
    assert data.origin == synthetic_spec("basic7", count=20, seed=5)
    assert parse_synthetic_spec(data.origin) == {
        "taxonomy": "basic7",
        "count": 20,
        "size": 48,
        "channels": 1,
        "seed": 5,
        "difficulty": 0.5,
        "subjects": 50,
        "occlusion": 0.0,
        "test_fraction": 0.0,
    }
    table = data.to_table()
    assert table.num_rows == 20 and "aus" in table.column_names and "subject" in table.column_names


@pytest.mark.parametrize("taxonomy", list(TAXONOMIES))
def test_every_class_present_and_balanced(taxonomy):
    n_classes = len(TAXONOMIES[taxonomy])
    data = generate(taxonomy, count=10 * n_classes + 3, seed=0)
    assert data.class_names == TAXONOMIES[taxonomy]
    counts = data.class_counts()
    assert counts.min() >= 10 and counts.max() - counts.min() <= 1


def test_default_count_is_200_per_class():
    assert parse_synthetic_spec("synthetic:")["taxonomy"] == "basic7"
    assert "count=1400" in synthetic_spec("basic7")
    assert "count=2800" in synthetic_spec("compound14")


def test_taxonomies_follow_the_public_datasets_label_order():
    assert TAXONOMIES["basic7"] == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert TAXONOMIES["basic8"][:2] == ("neutral", "happiness") and TAXONOMIES["basic8"][-1] == "contempt"
    assert len(TAXONOMIES["compound14"]) == 14 and TAXONOMIES["compound14"][-1] == "happily_sad"


def test_labels_match_their_action_units():
    data = generate(count=1400, seed=0, difficulty=0.3)
    assert au_rate(data, "happy", 12) > 0.85 and au_rate(data, "happy", 6) > 0.85
    assert au_rate(data, "surprise", 26) > 0.85 and au_rate(data, "surprise", 2) > 0.85
    assert au_rate(data, "sad", 15) > 0.85 and au_rate(data, "angry", 23) > 0.85
    assert au_rate(data, "disgust", 9) > 0.85 and au_rate(data, "fear", 20) > 0.85
    assert au_rate(data, "neutral", 12) < 0.1 and au_rate(data, "sad", 12) < 0.1
    neutral = data.aus[data.labels == data.class_names.index("neutral")]
    assert neutral.sum(1).mean() < 0.5
    # AU45 is a rare distractor in every class
    assert 0 < data.aus[:, AU_IDS.index(45)].mean() < 0.1


def test_compound_classes_carry_both_components():
    data = generate("compound14", count=700, seed=0, difficulty=0.2)
    assert au_rate(data, "happily_surprised", 12) > 0.85
    assert au_rate(data, "happily_surprised", 26) > 0.85
    assert au_rate(data, "sadly_angry", 15) > 0.85 and au_rate(data, "sadly_angry", 23) > 0.85


def test_harder_data_has_noisier_prototypes():
    easy = generate(count=1400, seed=0, difficulty=0.0)
    hard = generate(count=1400, seed=0, difficulty=1.0)
    assert au_rate(easy, "happy", 12) > au_rate(hard, "happy", 12)
    assert (easy.aus[easy.labels == 6].sum(1) > 0).mean() < (hard.aus[hard.labels == 6].sum(1) > 0).mean()


def test_expressions_change_the_face():
    # Same identities and poses, different expressions: the mean faces differ around the features.
    data = generate(count=1400, seed=0, difficulty=0.0)
    means = np.stack([data.images[data.labels == k].mean(0) for k in range(data.num_classes)])
    neutral = means[data.class_names.index("neutral")]
    for k, name in enumerate(data.class_names):
        if name != "neutral":
            assert np.abs(means[k] - neutral).max() > 15, name


def test_subjects_and_test_fraction_hold_out_whole_subjects():
    data = generate(count=300, seed=2, subjects=10, test_fraction=0.3)
    subjects = set(data.subjects)
    assert subjects == {f"subject_{i:03d}" for i in range(10)}
    test_subjects = set(data.subjects[data.splits == "test"])
    train_subjects = set(data.subjects[data.splits == "train"])
    assert len(test_subjects) == 3 and not test_subjects & train_subjects
    assert set(generate(count=30, seed=2).splits) == {"train"}


def test_same_subject_keeps_its_identity():
    data = generate(count=400, seed=0, subjects=4, difficulty=0.0, channels=3)
    mean_color = {s: data.images[data.subjects == s].reshape(-1, 3).mean(0) for s in set(data.subjects)}
    first = data.images[data.subjects == "subject_000"]
    # images of one subject are closer to each other than to the average face of the others
    own = np.abs(first.astype(float).mean(0) - first[0]).mean()
    assert own < 60
    assert len({tuple(np.round(c)) for c in mean_color.values()}) == 4


def test_occlusion_option_changes_some_images():
    plain = generate(count=64, seed=1)
    occluded = generate(count=64, seed=1, occlusion=1.0)
    changed = (plain.images != occluded.images).reshape(64, -1).mean(1)
    assert (changed > 0.05).all()


# --------------------------------------------------------------------------- options


def test_parse_spec_reads_options():
    kwargs = parse_synthetic_spec("synthetic:basic8?count=500&size=64&seed=7&difficulty=0.3&channels=3")
    assert kwargs == {"taxonomy": "basic8", "count": 500, "size": 64, "seed": 7, "difficulty": 0.3, "channels": 3}
    assert parse_synthetic_spec("synthetic:") == {"taxonomy": "basic7"}
    assert parse_synthetic_spec("synthetic:?count=14") == {"taxonomy": "basic7", "count": 14}
    assert generate(**parse_synthetic_spec("synthetic:?count=14")).images.shape == (14, 48, 48, 1)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("synthetic:basc7", r"taxonomy 'basc7'.*basic7, basic8, compound14.*did you mean 'basic7'"),
        ("synthetic:basic7?cuont=5", r"option 'cuont'.*count, size, channels.*did you mean 'count'"),
        ("synthetic:basic7?count=many", r"count='many'.*an integer in 1\.\."),
        ("synthetic:basic7?count=0", r"count=0.*an integer in 1\.\."),
        ("synthetic:basic7?size=32", r"size=32.*an integer in 48\.\.224"),
        ("synthetic:basic7?size=512", r"size=512.*an integer in 48\.\.224"),
        ("synthetic:basic7?channels=2", r"channels=2.*1 \(grey\) or 3"),
        ("synthetic:basic7?difficulty=1.5", r"difficulty=1\.5.*\[0, 1\]"),
        ("synthetic:basic7?difficulty=hard", r"difficulty='hard'.*a number in \[0, 1\]"),
        ("synthetic:basic7?occlusion=-0.1", r"occlusion=-0\.1.*\[0, 1\]"),
        ("synthetic:basic7?test_fraction=1", r"test_fraction=1\.0.*\[0, 1\)"),
        ("synthetic:basic7?seed=1&seed=2", r"'seed' is given twice"),
        ("synthetic:basic7?seed", r"'seed'.*has no value"),
        ("fer2013:basic7", r"not a synthetic source"),
    ],
)
def test_parse_spec_errors_name_option_value_and_rule(spec, match):
    with pytest.raises(DataError, match=match):
        parse_synthetic_spec(spec)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"taxonomy": "compound"}, r"taxonomy 'compound'.*did you mean 'compound14'"),
        ({"size": 47}, r"size=47.*48\.\.224"),
        ({"count": 2.5}, r"count=2\.5.*integer"),
        ({"difficulty": -1}, r"difficulty=-1.*\[0, 1\]"),
        ({"subjects": 0}, r"subjects=0.*>= 1"),
        ({"subjects": 1, "test_fraction": 0.5}, r"test_fraction=0\.5.*subjects >= 2"),
    ],
)
def test_generate_rejects_bad_options(kwargs, match):
    with pytest.raises(DataError, match=match):
        generate(**{"count": 7, **kwargs})


# --------------------------------------------------------------------------- learnability


def _train_and_score(difficulty: float) -> float:
    """Accuracy on unseen subjects of a small CNN trained briefly on 1,400 48-px faces."""
    import torch

    nn = torch.nn
    torch.manual_seed(0)

    def tensors(data):
        x = torch.from_numpy(data.images).float().permute(0, 3, 1, 2)
        x = (x - x.mean((1, 2, 3), keepdim=True)) / (x.std((1, 2, 3), keepdim=True) + 1)
        return x, torch.from_numpy(data.labels)

    x, y = tensors(generate(count=1400, seed=1, difficulty=difficulty, subjects=50))
    xt, yt = tensors(generate(count=420, seed=2, difficulty=difficulty, subjects=15))
    layers, width = [], 1
    for out in (12, 24, 48):
        layers += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
        width = out
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 7))
    epochs, batch = 5, 64
    opt = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=1e-4)
    steps = epochs * -(-len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 5e-3, total_steps=steps)
    order = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=order)
        for i in range(0, len(x), batch):
            b = perm[i : i + batch]
            loss = nn.functional.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        return (model(xt).argmax(1) == yt).float().mean().item()


@pytest.fixture(scope="module")
def accuracy() -> dict[float, float]:
    import torch

    threads = torch.get_num_threads()
    # One thread: ~5 CPU-seconds per run, and no OpenMP spin-waiting on a busy 2-core box.
    torch.set_num_threads(1)
    try:
        return {d: _train_and_score(d) for d in (0.1, 0.3, 0.9)}
    finally:
        torch.set_num_threads(threads)


def test_small_cnn_learns_the_expressions(accuracy):
    chance = 1 / 7
    assert accuracy[0.3] >= 2.5 * chance, accuracy


def test_difficulty_makes_learning_harder(accuracy):
    assert accuracy[0.9] < accuracy[0.1] - 0.1, accuracy
