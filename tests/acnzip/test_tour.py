"""The faiss greedy tour equals the O(N^2) definition, ties and duplicates included; the short
path visits every code once, is locally optimal, and is much shorter than the greedy tour."""

import numpy as np
import pytest

from acnzip import tour as tour_module
from acnzip.tour import greedy_tour, greedy_tour_reference, short_tour, tour_cost, tour_pairs


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


def _length(codes, perm) -> float:
    x = np.asarray(codes, dtype=np.float32).astype(np.float64)
    return float(((x[perm[1:]] - x[perm[:-1]]) ** 2).sum())


@pytest.mark.parametrize("name, codes", list(_cases()), ids=[n for n, _ in _cases()])
def test_short_tour_visits_each_code_once_and_is_no_longer_than_greedy(name, codes):
    path = short_tour(codes)
    assert path.dtype == np.int64 and np.array_equal(np.sort(path), np.arange(len(codes)))
    assert _length(codes, path) <= _length(codes, greedy_tour(codes)) + 1e-6
    assert np.array_equal(short_tour(codes), path)                        # deterministic


def test_short_tour_is_much_shorter_than_greedy_on_gaussian_codes():
    codes = np.random.default_rng(2).standard_normal((2000, 4)).astype(np.float32)
    assert _length(codes, short_tour(codes)) < 0.8 * _length(codes, greedy_tour(codes))


def test_short_tour_tiny_inputs():
    assert short_tour(np.zeros((0, 3))).shape == (0,)
    assert short_tour(np.ones((1, 3))).tolist() == [0]
    assert sorted(short_tour(np.array([[0.0], [5.0]]))) == [0, 1]
    assert short_tour(np.array([[0.0], [5.0], [1.0]])).tolist() in ([0, 2, 1], [1, 2, 0])
    with pytest.raises(ValueError):
        short_tour(np.array([[np.nan, 0.0], [1.0, 1.0], [2.0, 2.0]]))


def test_short_tour_on_a_line_is_the_sorted_order():
    x = np.random.default_rng(3).permutation(500).astype(np.float64)[:, None]
    path = short_tour(x)
    assert np.array_equal(x[path, 0], np.arange(500)) or np.array_equal(x[path, 0], np.arange(500)[::-1])


def test_short_tour_is_a_local_optimum_of_its_moves():
    """Checked by brute force over the whole path (not only the candidate lists): no 2-opt
    reversal shortens it, and no single-code move by more than 0.1% (Or-opt prunes its search
    heuristically; here 0.02% is left, 2.5% when Or-opt is switched off)."""
    codes = np.random.default_rng(4).standard_normal((150, 2))
    path = short_tour(codes)
    base = _length(codes, path)
    best_two_opt = min(_length(codes, np.concatenate([path[:i], path[i:j + 1][::-1], path[j + 1:]]))
                       for i in range(150) for j in range(i + 1, 150))
    best_move = min(_length(codes, np.insert(np.delete(path, i), g, path[i]))
                    for i in range(150) for g in range(150))
    assert best_two_opt >= base * (1 - 1e-12)
    assert best_move >= base * (1 - 1e-3)


def test_short_tour_skips_moves_longer_than_max_shift(monkeypatch):
    codes = np.random.default_rng(5).standard_normal((600, 8))
    full = _length(codes, short_tour(codes))
    monkeypatch.setattr(tour_module, "MAX_SHIFT", 8)
    path = short_tour(codes)
    assert np.array_equal(np.sort(path), np.arange(600))
    assert _length(codes, path) < _length(codes, greedy_tour(codes))
    assert full < _length(codes, greedy_tour(codes))


def test_short_tour_chains_exact_duplicates_first(monkeypatch):
    """5,000 copies of one blank code among 1,000 others: the copies are chained at once
    (no faiss search per handful of copies, which made this quadratic), all in one run."""
    rng = np.random.default_rng(6)
    codes = np.concatenate([np.zeros((5000, 8)), rng.standard_normal((1000, 8))])
    codes = codes[rng.permutation(6000)].astype(np.float32)
    calls = []
    real_knn = tour_module.faiss.knn
    monkeypatch.setattr(tour_module.faiss, "knn", lambda *a: calls.append(1) or real_knn(*a))
    path = short_tour(codes)
    assert np.array_equal(np.sort(path), np.arange(6000))
    blank = np.flatnonzero(np.all(codes[path] == 0, axis=1))
    assert blank[-1] - blank[0] == 4999                  # the copies are one stretch of the path
    assert len(calls) <= 12


def test_short_tour_of_codes_too_large_for_float32_squares():
    """|codes| ~ 1e19 overflow faiss's float32 squared norms: the search runs on centred,
    scaled codes, so the path is still a permutation (and still sorted on a line)."""
    x = np.array([[0, 0], [1, 0], [2e19, 0], [3e19, 0]], np.float32)
    assert sorted(short_tour(x).tolist()) == [0, 1, 2, 3]
    line = (np.random.default_rng(7).permutation(50) * 1e18).astype(np.float32)[:, None]
    path = short_tour(line)
    assert np.all(np.diff(line[path, 0]) > 0) or np.all(np.diff(line[path, 0]) < 0)


def test_tour_pairs_are_the_steps_of_greedy_tours_of_disjoint_subsets():
    rng = np.random.default_rng(0)                 # a noisy random walk: near neighbours exist
    codes = (np.cumsum(rng.normal(0, 0.3, (50, 3)), axis=0)
             + rng.normal(0, 0.1, (50, 3))).astype(np.float32)
    pred, succ = tour_pairs(codes, (20, 50, 80), np.random.default_rng(5))
    # 2 subsets of 20, one of 50, one of all 50 (80 > N): 19 + 19 + 49 + 49 steps
    assert len(pred) == len(succ) == 19 * 2 + 49 * 2
    rng = np.random.default_rng(5)
    perm = rng.permutation(50)
    for k, ids in enumerate((perm[:20], perm[20:40])):
        path = ids[greedy_tour_reference(codes[ids])]
        np.testing.assert_array_equal(pred[19 * k:19 * (k + 1)], path[:-1])
        np.testing.assert_array_equal(succ[19 * k:19 * (k + 1)], path[1:])
    assert len(set(succ[:38].tolist())) == 38                  # disjoint subsets
    with pytest.raises(ValueError, match="at least 2 images"):
        tour_pairs(codes[:1], (10,), np.random.default_rng(0))

