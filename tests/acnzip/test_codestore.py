"""The code store's neighbour draw never returns the query's own entry."""
import numpy as np
import pytest

from acnzip.codestore import CodeStore


def _brute_force_knn(codes, q, k, exclude):
    d = ((codes - q) ** 2).sum(1)
    d[exclude] = np.inf
    return set(np.argsort(d, kind="stable")[:k].tolist())


def test_initial_codes_are_seeded_standard_normal():
    a, b = CodeStore(5000, 8, seed=3), CodeStore(5000, 8, seed=3)
    assert np.array_equal(a.codes, b.codes) and a.codes.dtype == np.float32
    assert abs(a.codes.mean()) < 0.05 and abs(a.codes.std() - 1) < 0.05


@pytest.mark.parametrize("n, k", [(2, 5), (3, 1), (50, 5), (400, 8)])
def test_neighbours_exclude_the_query_itself(n, k):
    rng = np.random.default_rng(n)
    store = CodeStore(n, 4, seed=n)
    idx = rng.choice(n, size=min(n, 32), replace=False)
    queries = store.codes[idx]                  # each query sits exactly on its own entry
    for _ in range(20):
        ids = store.nearest(queries, k, exclude=idx)
        assert ids.shape == (len(idx), min(k, n - 1))
        assert not np.any(ids == idx[:, None])
        c_hat = store.sample_neighbours(queries, idx, k, rng)
        own = np.all(c_hat == store.codes[idx], axis=1)
        assert not np.any(own)


def test_neighbours_exclude_self_among_many_duplicates():
    store = CodeStore(100, 3, seed=0)
    store.codes[:] = 1.0                        # every code identical: all distances 0
    idx = np.arange(0, 100, 7)
    ids = store.nearest(store.codes[idx], 5, exclude=idx)
    assert not np.any(ids == idx[:, None])
    assert np.all((ids >= 0) & (ids < 100))


def test_draw_is_uniform_over_the_k_nearest():
    rng = np.random.default_rng(0)
    store = CodeStore(300, 4, seed=1)
    q, own, k = store.codes[[10]], np.array([10]), 5
    allowed = _brute_force_knn(store.codes, q[0], k, exclude=10)
    assert set(store.nearest(q, k, exclude=own)[0].tolist()) == allowed
    picks = []
    for _ in range(2000):
        c_hat = store.sample_neighbours(q, own, k, rng)[0]
        picks.append(int(np.flatnonzero(np.all(store.codes == c_hat, axis=1))[0]))
    counts = np.bincount(picks, minlength=300)[sorted(allowed)]
    assert set(np.flatnonzero(np.bincount(picks, minlength=300))) == allowed
    assert np.all(np.abs(counts - 400) < 80)


def test_update_and_outside_queries():
    store = CodeStore(10, 2, seed=0)
    store.update(np.array([3, 4]), np.array([[100.0, 100.0], [101.0, 100.0]]))
    assert np.array_equal(store.nearest(np.array([[100.2, 100.0]]), 2)[0], [3, 4])
    with pytest.raises(ValueError, match="at least 2"):
        CodeStore(1, 2).nearest(np.zeros((1, 2)), 1, exclude=np.array([0]))
