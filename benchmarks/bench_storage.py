"""How a run directory's bytes divide into trials, ensemble and bundle, and what the bundle stores.

Reads a finished run directory (``ferray search`` with ensemble and export on, as the
packaged quickstart) and prints, ``du``-style (a file hard-linked in several places counts
once, where it first appears: trials before the bundle):

* the size of each part: the trial folders, ``ensemble/``, ``distill/``, ``bundle/``,
  everything else; the run directory's total, and what a copy that does not know hard links
  (``cp -r``, a naive sum) would count;
* the bundle: its weights files, its graphs and manifest, against one copy of its members'
  weights (the sum of their weights files), and how many of its files share their bytes with
  the run's trials; each graph's initializer bytes read from weights files (float32 and
  float16) and held in the graph.

    flock /tmp/ferray-ray.lock ferray search --no-live --storage /tmp/qs   # the quickstart, 4-10 min on 2 CPUs
    python benchmarks/bench_storage.py /tmp/qs/quickstart-*

Prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ferray.run.layout import BundleLayout, RunLayout


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) if folder.is_dir() else []


def _mb(n: int) -> str:
    return f"{n / 1e6:8.1f} MB"


def measure(run_dir: Path) -> None:
    run = RunLayout(run_dir)
    trials = run.trials()
    parts: dict[str, list[Path]] = {
        "trials": [p for t in trials for p in _files(t.root)],
        "ensemble": _files(run.ensemble),
        "distill": _files(run.distill),
        "bundle": _files(run.bundle),
    }
    counted = {p for files in parts.values() for p in files}
    parts["other"] = [p for p in _files(run.root) if p not in counted]
    seen: set[tuple[int, int]] = set()
    total = naive = 0
    print(f"run directory {run.root} ({len(trials)} trial folder(s))")
    for name, files in parts.items():
        size = 0
        for p in files:
            st = p.stat()
            naive += st.st_size
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            size += st.st_size
        total += size
        print(f"  {name:<9}{_mb(size)}")
    print(f"  {'total':<9}{_mb(total)}   (a copy that ignores hard links: {_mb(naive).strip()})")
    bundle = BundleLayout(run.bundle)
    if not bundle.manifest.is_file():
        print("no bundle")
        return
    manifest = json.loads(bundle.manifest.read_text())
    weights = _files(bundle.weights_dir)
    wbytes = sum(p.stat().st_size for p in weights)
    rest = sum(p.stat().st_size for p in _files(bundle.root)) - wbytes
    trial_inodes = {(s.st_dev, s.st_ino) for s in (p.stat() for p in parts["trials"] + parts["distill"])}
    shared = sum((p.stat().st_dev, p.stat().st_ino) in trial_inodes for p in weights)
    members = manifest.get("ensemble", {}).get("members", [])
    print(
        f"bundle: {len(members)} member(s); weights files {_mb(wbytes).strip()} (one copy of the weights: "
        f"{shared}/{len(weights)} file(s) are the trials' own, hard-linked); graphs + manifest {_mb(rest).strip()}; "
        f"bundle / one copy of its weights = {(wbytes + rest) / max(wbytes, 1):.3f}"
    )
    for graph in manifest["graphs"].values():
        init = graph.get("initializers")
        size = os.path.getsize(bundle.root / graph["file"])
        if init is None:
            print(
                f"  {graph['file']}: {_mb(size).strip()}; weights embedded (written before graphs read weights files)"
            )
            continue
        print(
            f"  {graph['file']}: {_mb(size).strip()}; initializers read from weights files: float32 "
            f"{_mb(init.get('linked_bytes', 0)).strip()}, float16 {_mb(init.get('float16_bytes', 0)).strip()}; "
            f"in the graph {_mb(init.get('embedded_bytes', 0)).strip()}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    for run_dir in parser.parse_args().runs:
        measure(run_dir)


if __name__ == "__main__":
    main()
