"""The shared sweep, after its trials: ensemble -> distill -> export -> predict, as `ferray search` ran them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore"), pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def run(e2e_run):
    assert e2e_run.returncode == 0, e2e_run.output[-5000:]
    from ferray.run.layout import RunLayout

    return RunLayout(e2e_run.run_dir)


def test_the_ensemble_combines_the_best_completed_trials(run):
    from ferray.run.status import get_status

    summary = json.loads(run.ensemble_files.summary.read_text())
    completed = [t["trial_id"] for t in get_status(run.root)["trials"] if t["state"] == "COMPLETED"]
    top = summary["top_members"]
    assert top == completed[: len(top)] and 1 <= len(top) <= 3
    # The members are the chosen method's; greedy's may come from beyond the top (its pool).
    members = [m["trial_id"] if isinstance(m, dict) else m for m in summary["members"]]
    assert members == summary["methods"][summary["chosen"]]["members"]
    assert set(members) <= set(summary["pool"]) <= set(completed) and summary["pool"][: len(top)] == top
    greedy = summary["methods"]["greedy"]
    assert abs(sum(greedy["weights"]) - 1.0) < 1e-9 and min(greedy["weights"]) >= 0
    assert summary["chosen"] in summary["methods"]
    for name in ("ensembles.parquet", "oof.parquet", "holdout.parquet"):
        assert (run.ensemble / name).is_file(), name


def test_the_student_is_compared_with_the_ensemble_and_the_best_trial(run):
    from ferray.training import load_fold_models

    summary = json.loads(run.distill_files.summary.read_text())
    for who in ("student", "ensemble", "best_trial"):
        assert 0.0 <= summary[who]["accuracy"] <= 1.0, who
        assert summary[who]["params"] > 0
        latency = summary[who]["latency_ms_per_image"]
        assert latency["batch_1"] > 0 and latency["batch_64"] > 0
    (student,) = load_fold_models(run.distill)
    assert sum(p.numel() for p in student.parameters()) == summary["student"]["params"]


def _images(n: int = 6) -> np.ndarray:
    from ferray.data import generate

    return generate(count=n * 7, size=48, seed=123).images[:n]


def test_the_bundle_graph_agrees_with_pytorch(run):
    import onnxruntime as ort
    import torch

    from ferray.training import load_fold_models

    manifest = json.loads((run.bundle / "manifest.json").read_text())
    images = _images()
    session = ort.InferenceSession(str(run.bundle / "ensemble.onnx"), providers=["CPUExecutionProvider"])
    probs, member_probs = session.run(["probs", "member_probs"], {"images": images})
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    expected = []
    with torch.no_grad():
        for member in manifest["ensemble"]["members"]:
            folds = load_fold_models(run.trial(member["name"]))
            expected.append(np.mean([torch.softmax(m(x)["logits"], dim=1).numpy() for m in folds], axis=0))
    expected = np.stack(expected, axis=1)
    assert np.abs(member_probs - expected).max() < 1e-4
    method = manifest["ensemble"]["method"]
    if method in ("greedy", "mean"):
        w = np.asarray(manifest["ensemble"]["weights"] or [1.0] * expected.shape[1])
        combined = np.einsum("nmc,m->nc", expected, w / w.sum())
    elif method == "stacking":
        st = manifest["ensemble"]["stacker"]
        feats = np.log(np.clip(expected, 1e-7, 1.0)).reshape(len(images), -1)
        z = feats @ np.asarray(st["coef"]).T + np.asarray(st["intercept"])
        combined = np.exp(z - z.max(axis=1, keepdims=True))
        combined /= combined.sum(axis=1, keepdims=True)
    elif method == "vote":
        # Each member votes for its top class with its weight; the shares are nudged by 1e-3 of
        # the weighted mean probability (so a tied vote goes to the likelier class) and renormalised.
        w = np.asarray(manifest["ensemble"].get("weights") or [1.0] * expected.shape[1], dtype=np.float64)
        w = w / w.sum()
        winners = expected.argmax(axis=2)  # (N, M)
        combined = 1e-3 * np.einsum("nmc,m->nc", expected, w)
        for m in range(expected.shape[1]):
            combined[np.arange(len(images)), winners[:, m]] += w[m]
        combined /= combined.sum(axis=1, keepdims=True)
        # A member whose top two classes are within twice the member tolerance may vote either way.
        top2 = np.sort(expected, axis=2)[:, :, -2:]
        decided = (top2[:, :, 1] - top2[:, :, 0] > 2e-4).all(axis=1)
        assert decided.sum() >= len(images) // 2
        probs, combined = probs[decided], combined[decided]
    else:
        pytest.fail(f"no reference combination for ensemble method {method!r}")
    assert np.abs(probs - combined).max() < 1e-4
    clear = np.diff(np.sort(combined, axis=1)[:, -2:], axis=1)[:, 0] > 1e-4
    assert (probs.argmax(axis=1) == combined.argmax(axis=1))[clear].all()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_predict_runs_where_torch_and_ray_cannot_be_imported(run, tmp_path):
    import onnxruntime as ort
    from PIL import Image

    images = _images()
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[:, :, 0]).save(folder / f"face_{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "predictions.csv"
    code = (
        "import sys\n"
        "for name in ('torch', 'ray', 'timm', 'torchvision'):\n"
        "    sys.modules[name] = None  # any import of these now fails\n"
        "from ferray.cli import main\n"
        f"code = main(['predict', {str(run.bundle)!r}, {str(folder)!r}, '--out', {str(out)!r}, '--no-progress'])\n"
        "assert not any(m in sys.modules and sys.modules[m] is not None for m in ('torch', 'ray'))\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "broken.png" in proc.stderr  # listed, and the rest were predicted
    rows = list(csv.DictReader(out.open()))
    manifest = json.loads((run.bundle / "manifest.json").read_text())
    classes = manifest["classes"]
    session = ort.InferenceSession(str(run.bundle / "ensemble.onnx"), providers=["CPUExecutionProvider"])
    (raw,) = session.run(["probs"], {"images": images})
    # predict applies the bundle's fitted temperature: softmax(log p / T)
    temperature = manifest["calibration"]["ensemble"]["temperature"]
    logits = np.log(np.clip(raw.astype(np.float64), 1e-12, None)) / temperature
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    by_name = {r["source"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["broken.png"]["label"] == "" and by_name["broken.png"]["error"]
    for i in range(len(images)):
        row = by_name[f"face_{i}.png"]
        got = np.array([float(row[f"prob_{c}"]) for c in classes])
        assert np.abs(got - expected[i]).max() < 2e-6
        assert row["label"] == classes[int(np.argmax(expected[i]))]
