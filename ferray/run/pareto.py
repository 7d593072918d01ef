"""Pareto fronts of objective vectors: dominance, non-dominated sorting, crowding distance, hypervolume.

Plain Python, shared by the multi-objective scheduler (which trials a rung promotes),
``ferray status`` (which trials are Pareto-optimal), the stages after a sweep and the
benchmarks that compare the fronts of several sweeps (:func:`hypervolume_2d`).

Every function takes the vectors (one sequence of numbers per point) and ``modes``, one
``"max"`` or ``"min"`` per objective. A missing value (``None``) or NaN is the worst value
of its objective: such a point is dominated by any point that equals or beats it on the
other objectives, and two points that are equal on every objective dominate neither
(ties share a front).

>>> non_dominated_sort([[0.9, 5.0], [0.8, 2.0], [0.7, 6.0], [0.9, 5.0]], ["max", "min"])
[0, 0, 1, 0]
>>> pareto_front([[0.9, 5.0], [0.8, 2.0], [0.7, 6.0]], ["max", "min"])
[0, 1]
>>> round(hypervolume_2d([[0.9, 5.0], [0.8, 2.0], [0.7, 6.0]], [0.0, 10.0], ["max", "min"]), 6)
6.9
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "dominates",
    "non_dominated_sort",
    "pareto_front",
    "crowding_distance",
    "rank_keys",
    "hypervolume_2d",
    "MODES",
]

#: The accepted directions of an objective.
MODES = ("max", "min")


def _minimised(values: Sequence[Sequence[float | None]], modes: Sequence[str]) -> list[tuple[float, ...]]:
    """Each vector as minimisation costs: maximised objectives negated, missing/NaN -> +inf."""
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"mode {bad[0]!r} is not one of {', '.join(MODES)}")
    out = []
    for i, vector in enumerate(values):
        if len(vector) != len(modes):
            raise ValueError(f"point {i} has {len(vector)} values, but there are {len(modes)} objectives")
        row = []
        for v, mode in zip(vector, modes):
            if v is None or not isinstance(v, (int, float)) or math.isnan(v):
                row.append(math.inf)
            else:
                row.append(-float(v) if mode == "max" else float(v))
        out.append(tuple(row))
    return out


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def dominates(a: Sequence[float | None], b: Sequence[float | None], modes: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` on every objective and better on one."""
    x, y = _minimised([a, b], modes)
    return _dominates(x, y)


def non_dominated_sort(values: Sequence[Sequence[float | None]], modes: Sequence[str]) -> list[int]:
    """The front of each point: 0 for the Pareto-optimal ones, 1 for those only they dominate, ...

    Deb et al.'s fast non-dominated sort (NSGA-II), ``O(objectives x points^2)``.
    """
    costs = _minimised(values, modes)
    n = len(costs)
    dominated_by = [0] * n  # how many points dominate i
    dominating: list[list[int]] = [[] for _ in range(n)]  # the points i dominates
    for i in range(n):
        for j in range(i + 1, n):
            if _dominates(costs[i], costs[j]):
                dominating[i].append(j)
                dominated_by[j] += 1
            elif _dominates(costs[j], costs[i]):
                dominating[j].append(i)
                dominated_by[i] += 1
    front = [0] * n
    current = [i for i in range(n) if dominated_by[i] == 0]
    level = 0
    while current:
        following = []
        for i in current:
            front[i] = level
            for j in dominating[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    following.append(j)
        current, level = following, level + 1
    return front


def pareto_front(values: Sequence[Sequence[float | None]], modes: Sequence[str]) -> list[int]:
    """Indices of the Pareto-optimal points (front 0), in their given order."""
    return [i for i, f in enumerate(non_dominated_sort(values, modes)) if f == 0]


def crowding_distance(values: Sequence[Sequence[float | None]], modes: Sequence[str]) -> list[float]:
    """NSGA-II's crowding distance of each point among ``values`` (one front): larger is lonelier.

    The extreme points of each objective get ``inf``; the others the sum over objectives of
    the gap between their neighbours, as a share of the objective's range. Equal points get
    the same distance.
    """
    costs = _minimised(values, modes)
    # Equal points are one point (ties get the same distance), counted once.
    unique = sorted(set(costs))
    n = len(unique)
    distance = [0.0] * n
    if n <= 2:
        return [math.inf] * len(costs)
    for m in range(len(modes)):
        order = sorted(range(n), key=lambda i: unique[i][m])
        low, high = unique[order[0]][m], unique[order[-1]][m]
        distance[order[0]] = distance[order[-1]] = math.inf
        span = high - low
        if not math.isfinite(span) or span == 0:
            continue
        for k in range(1, n - 1):
            gap = unique[order[k + 1]][m] - unique[order[k - 1]][m]
            distance[order[k]] += gap / span if math.isfinite(gap) else math.inf
    of = {point: d for point, d in zip(unique, distance)}
    return [of[c] for c in costs]


def rank_keys(values: Sequence[Sequence[float | None]], modes: Sequence[str]) -> list[tuple[int, float, float]]:
    """A sort key per point, best first: ``(front, -crowding distance, first objective as a cost)``.

    Points of a lower front come first; within a front the lonelier (larger crowding
    distance, computed within that front) first; then the better first objective. Equal
    keys are true ties.
    """
    costs = _minimised(values, modes)
    fronts = non_dominated_sort(values, modes)
    crowd = [0.0] * len(costs)
    for level in set(fronts):
        members = [i for i, f in enumerate(fronts) if f == level]
        for i, d in zip(members, crowding_distance([values[i] for i in members], modes)):
            crowd[i] = d
    return [(fronts[i], -crowd[i], costs[i][0]) for i in range(len(costs))]


def hypervolume_2d(values: Sequence[Sequence[float | None]], reference: Sequence[float], modes: Sequence[str]) -> float:
    """The area that ``values`` dominate, bounded by ``reference``: larger is a better front.

    Two objectives. ``reference`` is a point every useful point beats (e.g. chance accuracy
    and a latency worse than any measured); a point that does not beat it strictly on both
    objectives, or has a missing/NaN value, adds nothing. Dominated points add nothing either,
    so the fronts of several sweeps compare by one number once they share a reference.
    Exact: the union of the points' boxes, swept in order of the first objective.
    """
    if len(modes) != 2:
        raise ValueError(f"hypervolume_2d needs 2 objectives, but there are {len(modes)}")
    if len(reference) != 2 or not all(isinstance(r, (int, float)) and math.isfinite(r) for r in reference):
        raise ValueError(f"reference is {list(reference)!r}, but must be 2 finite numbers")
    ref_x, ref_y = _minimised([reference], modes)[0]
    inside = sorted((x, y) for x, y in _minimised(values, modes) if x < ref_x and y < ref_y)
    area, floor = 0.0, ref_y  # floor: the lowest second cost of the points swept so far
    for x, y in inside:
        if y < floor:
            area += (ref_x - x) * (floor - y)
            floor = y
    return area
