"""Single-core throughput of the synthetic face renderer (images per second).

Run with ``python benchmarks/bench_synthetic.py``; it pins numpy to one thread itself.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

from ferray.data import generate  # noqa: E402


def bench(size: int, channels: int, count: int, difficulty: float, occlusion: float) -> float:
    """Best of three runs, timed in CPU seconds of this process (robust to a busy machine)."""
    generate(count=64, size=size, channels=channels, seed=1)  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        generate(count=count, size=size, channels=channels, seed=0, difficulty=difficulty, occlusion=occlusion)
        best = min(best, time.process_time() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--difficulty", type=float, default=0.5)
    parser.add_argument("--occlusion", type=float, default=0.0)
    args = parser.parse_args()
    print(f"synthetic renderer, 1 thread, difficulty={args.difficulty}, occlusion={args.occlusion}")
    print(f"{'size':>5} {'channels':>8} {'images/s':>10}")
    for size, count in ((48, 2000), (112, 500), (224, 150)):
        for channels in (1, 3):
            rate = bench(size, channels, count, args.difficulty, args.occlusion)
            print(f"{size:>5} {channels:>8} {rate:>10,.0f}")


if __name__ == "__main__":
    main()
