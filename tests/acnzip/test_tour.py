"""The faiss greedy tour equals the O(N^2) definition, ties and duplicates included."""

import numpy as np
import pytest

from acnzip.tour import greedy_tour, greedy_tour_reference, tour_cost


def _cases():
    rng = np.random.default_rng(0)
    yield "gaussian", rng.standard_normal((800, 16))
    yield "integer grid (many tied distances)", rng.integers(0, 3, (800, 4)).astype(float)
    yield "binary cube", rng.integers(0, 2, (600, 10)).astype(float)
    dups = np.repeat(rng.standard_normal((40, 8)), 20, 0)[rng.permutation(800)]
    yield "clusters of exact duplicates", dups
    yield "all identical", np.zeros((300, 3))
    yield "large scale", rng.standard_normal((500, 2)) * 1e4
    near = np.repeat(rng.standard_normal((100, 4)), 5, 0) + 1e-6 * rng.standard_normal((500, 4))
    yield "near duplicates", near


@pytest.mark.parametrize("name, codes", list(_cases()), ids=[n for n, _ in _cases()])
@pytest.mark.parametrize("k", [1, 4, 32])
def test_tour_equals_reference(name, codes, k):
    start = len(codes) // 3
    tour = greedy_tour(codes, start=start, k=k)
    assert np.array_equal(tour, greedy_tour_reference(codes, start=start))
    assert tour[0] == start and np.array_equal(np.sort(tour), np.arange(len(codes)))


def test_tiny_inputs():
    assert greedy_tour(np.zeros((0, 3))).shape == (0,)
    assert greedy_tour(np.ones((1, 3))).tolist() == [0]
    assert greedy_tour(np.array([[0.0], [5.0], [1.0]])).tolist() == [0, 2, 1]
    with pytest.raises(ValueError):
        greedy_tour(np.ones((3, 2)), start=3)


def test_ties_go_to_the_lowest_index():
    codes = np.array([[0.0], [1.0], [-1.0], [2.0], [-2.0]])
    assert greedy_tour(codes).tolist() == [0, 1, 3, 2, 4]     # 1 before 2 (tie), then on
    assert greedy_tour_reference(codes).tolist() == [0, 1, 3, 2, 4]


def test_ten_thousand_codes_visit_each_once():
    codes = np.random.default_rng(1).standard_normal((10_000, 16)).astype(np.float32)
    tour = greedy_tour(codes)
    assert np.array_equal(np.sort(tour), np.arange(10_000))
    assert tour_cost(codes, tour[:50]).shape == (49,)
