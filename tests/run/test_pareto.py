from __future__ import annotations

import math

import pytest

from ferray.run.pareto import (
    crowding_distance,
    dominates,
    hypervolume_2d,
    non_dominated_sort,
    pareto_front,
    rank_keys,
)

MAX_MIN = ["max", "min"]


def test_dominance_respects_each_direction():
    assert dominates([0.9, 2.0], [0.8, 3.0], MAX_MIN)
    assert dominates([0.9, 2.0], [0.9, 3.0], MAX_MIN)  # equal on one, better on the other
    assert not dominates([0.9, 2.0], [0.9, 2.0], MAX_MIN)  # a tie dominates neither way
    assert not dominates([0.9, 3.0], [0.8, 2.0], MAX_MIN)  # a trade-off
    assert dominates([0.8, 3.0], [0.9, 2.0], ["min", "max"])
    assert dominates([1.0, 1.0], [2.0, 2.0], ["min", "min"]) and not dominates([1.0, 1.0], [2.0, 2.0], ["max", "max"])


def test_fronts_peel_in_layers_and_ties_share_a_front():
    points = [[0.9, 5.0], [0.8, 2.0], [0.7, 6.0], [0.9, 5.0], [0.6, 7.0], [0.85, 3.0]]
    assert non_dominated_sort(points, MAX_MIN) == [0, 0, 1, 0, 2, 0]
    assert pareto_front(points, MAX_MIN) == [0, 1, 3, 5]


def test_flipping_a_direction_changes_the_front():
    points = [[1.0, 1.0], [2.0, 2.0], [3.0, 0.5]]
    assert pareto_front(points, ["min", "min"]) == [0, 2]
    assert pareto_front(points, ["max", "max"]) == [1, 2]


def test_nan_and_missing_are_the_worst_value():
    points = [[0.9, math.nan], [0.9, 3.0], [None, 1.0], [0.5, 1.0]]
    fronts = non_dominated_sort(points, MAX_MIN)
    assert fronts[1] == 0 and fronts[3] == 0
    assert fronts[0] == 1 and fronts[2] == 1  # dominated by the same point with a real value
    assert pareto_front([[math.nan, math.nan]], MAX_MIN) == [0]  # alone, still the front
    assert pareto_front([], MAX_MIN) == []


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="mode 'up' is not one of max, min"):
        pareto_front([[1, 2]], ["max", "up"])
    with pytest.raises(ValueError, match="point 1 has 1 values, but there are 2 objectives"):
        pareto_front([[1, 2], [1]], MAX_MIN)


def test_crowding_distance_favours_the_extremes_and_the_lonely():
    front = [[0.0, 4.0], [1.0, 3.0], [1.2, 2.8], [4.0, 0.0]]
    d = crowding_distance(front, ["min", "min"])
    assert d[0] == math.inf and d[3] == math.inf
    assert d[1] == pytest.approx(1.2 / 4 + 1.2 / 4) and d[2] == pytest.approx(3.0 / 4 + 3.0 / 4)
    assert crowding_distance([[1, 1], [2, 0]], ["min", "min"]) == [math.inf, math.inf]


def test_rank_keys_order_by_front_then_crowding_then_first_objective():
    points = [[0.5, 5.0], [0.9, 9.0], [0.7, 7.0], [0.6, 6.5], [0.4, 8.0]]
    keys = rank_keys(points, MAX_MIN)
    order = sorted(range(len(points)), key=keys.__getitem__)
    # front 0: 0, 1, 2, 3 (extremes 1 and 0 first, the best accuracy first); front 1: 4
    assert order[:2] == [1, 0] and order[-1] == 4
    assert keys[4][0] == 1


def test_equal_points_are_true_ties():
    points = [[0.5, 1.0], [0.5, 1.0], [0.5, 1.0], [0.5, 1.0]]
    assert len(set(crowding_distance(points, MAX_MIN))) == 1
    assert len(set(rank_keys(points, MAX_MIN))) == 1
    keys = rank_keys([[0.9], [0.8], [0.8], [0.8], [0.7]], ["max"])
    assert keys[1] == keys[2] == keys[3] and keys[0] < keys[1] < keys[4]


def test_hypervolume_of_one_point_is_its_box():
    assert hypervolume_2d([[2.0, 3.0]], [5.0, 7.0], ["min", "min"]) == pytest.approx(3.0 * 4.0)
    # accuracy 0.8 against chance 0.2, latency 2 ms against 10 ms: 0.6 x 8
    assert hypervolume_2d([[0.8, 2.0]], [0.2, 10.0], MAX_MIN) == pytest.approx(4.8)


def test_hypervolume_is_the_union_of_the_boxes():
    # boxes [1,5]x[3,5] (8), [2,5]x[2,5] (9), [4,5]x[1,5] (4); union by hand: 8 + 3*1 + 1*1 = 12
    front = [[1.0, 3.0], [2.0, 2.0], [4.0, 1.0]]
    assert hypervolume_2d(front, [5.0, 5.0], ["min", "min"]) == pytest.approx(12.0)
    # the same points in any order, with a dominated point and a duplicate, cover the same area
    assert hypervolume_2d([[4.0, 1.0], [3.0, 3.0], [1.0, 3.0], [2.0, 2.0], [2.0, 2.0]], [5.0, 5.0], ["min", "min"]) == (
        pytest.approx(12.0)
    )
    # accuracy (max) against latency (min): (0.9, 5) and (0.8, 2) from (0, 10): 0.9*5 + 0.8*3
    assert hypervolume_2d([[0.9, 5.0], [0.8, 2.0], [0.7, 6.0]], [0.0, 10.0], MAX_MIN) == pytest.approx(6.9)
    # a point better on both objectives alone covers the whole of the front it dominates
    assert hypervolume_2d([[0.9, 2.0], [0.9, 5.0], [0.8, 2.0]], [0.0, 10.0], MAX_MIN) == pytest.approx(7.2)


def test_hypervolume_ignores_points_that_do_not_beat_the_reference():
    ref = [0.2, 10.0]
    assert hypervolume_2d([], ref, MAX_MIN) == 0.0
    assert hypervolume_2d([[0.1, 1.0], [0.9, 12.0], [0.9, 10.0], [0.2, 5.0]], ref, MAX_MIN) == 0.0
    assert hypervolume_2d([[0.5, math.nan], [None, 1.0], [0.5, 5.0]], ref, MAX_MIN) == pytest.approx(0.3 * 5.0)


def test_hypervolume_bad_input_is_named():
    with pytest.raises(ValueError, match="needs 2 objectives, but there are 3"):
        hypervolume_2d([[1, 2, 3]], [0, 0, 0], ["min", "min", "min"])
    with pytest.raises(ValueError, match="reference is \\[0.0, nan\\], but must be 2 finite numbers"):
        hypervolume_2d([[1, 2]], [0.0, math.nan], MAX_MIN)
    with pytest.raises(ValueError, match="mode 'up' is not one of max, min"):
        hypervolume_2d([[1, 2]], [0, 0], ["max", "up"])
