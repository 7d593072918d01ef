"""Benchmark of ferray's data path on the real FER2013 folders (not a test).

Prints: prepare wall time and images/s at 48 px, read-back time of the Parquet file,
peak RSS during prepare against the decoded array size, and ``check`` time.

    python benchmarks/bench_data.py [--data ../shared/datasets/fer2013] [--out /tmp/fer2013.parquet]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kB on Linux


def main() -> None:
    default = Path(os.environ.get("FERRAY_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=default / "fer2013")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ferray_bench_fer2013.parquet")
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args()

    try:
        from ferray.data import check, prepare, read_parquet
    except ImportError:  # run from a checkout without `pip install -e .`
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from ferray.data import check, prepare, read_parquet

    print(f"cpus: {os.cpu_count()}  source: {args.data}")
    base = _rss_mb()
    t0 = time.perf_counter()
    data = prepare(args.data, args.out, size=48, workers=args.workers)
    dt = time.perf_counter() - t0
    decoded = data.images.nbytes / 2**20
    peak_self = _peak_mb(resource.RUSAGE_SELF)
    peak_children = _peak_mb(resource.RUSAGE_CHILDREN)
    print(f"prepare: {len(data)} images {data.image_shape} in {dt:.2f} s = {len(data) / dt:,.0f} images/s")
    print(f"  parquet file: {args.out.stat().st_size / 2**20:.1f} MiB, warnings: {len(data.warnings)}")
    print(
        f"  decoded array {decoded:.1f} MiB; RSS before {base:.0f} MiB, peak {peak_self:.0f} MiB "
        f"(+{peak_self - base:.0f} MiB = {(peak_self - base) / decoded:.2f}x decoded); "
        f"largest worker peak {peak_children:.0f} MiB"
    )
    del data

    t0 = time.perf_counter()
    back = read_parquet(args.out)
    dt_read = time.perf_counter() - t0
    print(f"read_parquet: {dt_read:.3f} s, images {back.images.dtype} {back.images.shape}")
    t0 = time.perf_counter()
    total = int(back.images[::97].sum(dtype="int64"))  # touch pages
    print(f"  touch every 97th image: {time.perf_counter() - t0:.3f} s (checksum {total})")
    del back

    t0 = time.perf_counter()
    report = check(args.out)
    dt_check = time.perf_counter() - t0
    print(
        f"check (prepared file): {dt_check:.2f} s; exact dup groups {report.exact_duplicates['groups']} "
        f"({report.exact_duplicates['cross_split_groups']} across splits), near dup groups "
        f"{report.near_duplicates['groups']} ({report.near_duplicates['cross_split_groups']} across splits)"
    )
    t0 = time.perf_counter()
    report = check(args.data)
    print(f"check (image folders, decode included): {time.perf_counter() - t0:.2f} s, ok={report.ok}")
    args.out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
