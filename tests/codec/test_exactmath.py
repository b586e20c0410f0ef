"""codec.exactmath and codec.portable: exp and log from basic operations (accurate, and the
same whatever the input array's layout), integer-normalised tables, and the portable leaves'
round trips and costs."""
import numpy as np
import pytest

from codec import AnsStack, BinGrid, DiscretisedDiagonalMixture, DiscretisedMixture, exactmath
from codec.portable import (PHASES, STEPS, PortableDiagonalMixture, PortableGaussian,
                            PortableMixture, ladder)

GRID = BinGrid(1 / 16, 4)


def test_exp_and_log_match_numpy_to_a_few_ulp():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-740, 705, 200_001), rng.normal(0, 5, 100_000)])
    e, want = exactmath.exp(x), np.exp(x)
    normal = want > 1e-300
    assert np.max(np.abs(e[normal] - want[normal]) / want[normal]) < 5e-16
    y = np.concatenate([np.exp(rng.uniform(-700, 700, 100_000)), np.linspace(0.5, 2, 100_001)])
    err = np.abs(exactmath.log(y) - np.log(y)) / np.maximum(1.0, np.abs(np.log(y)))
    assert err.max() < 5e-16


def test_exp_and_log_special_values():
    assert np.array_equal(exactmath.exp([np.inf, -np.inf, 0.0, 800.0, -800.0]),
                          [np.inf, 0.0, 1.0, np.inf, 0.0])
    assert np.isnan(exactmath.exp(np.nan))
    out = exactmath.log([0.0, 1.0, np.inf, -1.0, np.nan])
    assert out[0] == -np.inf and out[1] == 0.0 and out[2] == np.inf and np.isnan(out[3:]).all()


def test_results_do_not_depend_on_the_array_layout():
    """Element by element: the same value whatever the shape, stride or neighbours (a
    vectorised library exp may take another path for a tail of the array)."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 20, 1001)
    full = exactmath.exp(x)
    assert np.array_equal(np.concatenate([exactmath.exp(x[i:i + 7]) for i in range(0, 1001, 7)]),
                          full)
    assert np.array_equal(exactmath.exp(x[::-1])[::-1], full)
    assert np.array_equal(np.array([exactmath.exp(v) for v in x[:50]]), full[:50])
    y = np.abs(x) + 1e-3
    assert np.array_equal(exactmath.log(y.reshape(7, 11, 13)).ravel(), exactmath.log(y))


def test_exact_table_is_normalised_with_a_floor_and_independent_of_the_order():
    w = np.array([[1.0, 2.0, 0.0, np.nan], [0.0, 0.0, 0.0, 0.0], [1e-300, 1.0, -5.0, np.inf]])
    t = exactmath.exact_table(w)
    assert np.all(t > 0)
    assert np.allclose(t.sum(axis=1), 1.0, atol=1e-15)
    assert t[0, 1] == pytest.approx(2 * t[0, 0]) and np.allclose(t[1], 0.25)
    perm = np.array([2, 0, 3, 1])
    assert np.array_equal(exactmath.exact_table(w[:, perm]), t[:, perm])


@pytest.mark.parametrize("grid", [GRID, BinGrid(1 / 64, 24), BinGrid(0.1, 3)],
                         ids=["coarse", "wide", "tiny"])
def test_portable_gaussian_table_is_the_one_component_mixture_bit_for_bit(grid):
    """The fast route (the ladder table's own counts, sums from prefix sums) gives exactly the
    table of PortableMixture with one component: every scale of the ladder, means on the grid,
    beyond it (rows whose bins miss the peak take exact_table's route) and clipped."""
    rng = np.random.default_rng(5)
    mean = rng.normal(0, 1.5 * grid.range, (40, 6))
    mean[0] = [2.5 * grid.range, -3 * grid.range, 1e9, -grid.range, grid.range, 0.0]
    for std in (np.full(mean.shape, 1.0), np.exp(rng.uniform(-9, 5, mean.shape))):
        fast = PortableGaussian(mean, std, grid)
        slow = PortableMixture(np.ones(mean.shape + (1,)), mean[..., None], std[..., None],
                               grid)
        assert fast.offset == slow.offset == -grid.half_bins
        assert fast.probs.shape == slow.probs.shape and np.array_equal(fast.probs, slow.probs)
    points, _ = ladder(grid).quantise(mean, std)
    assert np.any(np.abs(points // PHASES) > grid.half_bins + 1)   # the slow route ran too


def _masses(lad, points, s):
    """The ladder's bin masses (..., n_bins) entry by entry, as its docstring defines them:
    bin k of a mean PHASES b + f lattice points from 0 is entry k - b of table (s, f)."""
    half, out = lad.grid.half_bins, []
    for p, si in zip(points.ravel(), s.ravel()):
        b, f = divmod(int(p), PHASES)
        start = lad.reach - half - b
        out.append(lad.mass(si, f)[start:start + lad.grid.n_bins])
    return np.array(out).reshape(points.shape + (lad.grid.n_bins,))


def test_portable_mixture_table_is_the_ordered_sum_of_its_components_bit_for_bit():
    """The row-chunked table equals exact_table of the components' masses times their
    weights added in index order (the definition), zero weights (whole components, and in
    some rows only: those are skipped) and far means included."""
    rng = np.random.default_rng(7)
    grid = BinGrid(1 / 64, 10)
    w, mu = rng.random((300, 5, 3)), rng.normal(0, 6, (300, 5, 3))
    sc = np.exp(rng.uniform(-6, 3, (300, 5, 3)))
    w[::3, :, 1] = 0.0
    w[::2, :, 2] = 0.0
    w[0, 0] = [0.0, 1e-300, 0.5]
    w[1] = [0.3, 0.0, 0.0]
    mu[1, 0] = [25.0, -40.0, 1e12]
    lad = ladder(grid)
    points, s = lad.quantise(mu, sc)
    masses = _masses(lad, points, s)                                 # (300, 5, 3, n_bins)
    assert np.array_equal(lad.gather(points, s), masses)
    want = exactmath.exact_table(exactmath.ordered_sum(
        masses[..., m, :] * w[..., m, None] for m in range(3)))
    got = PortableMixture(w, mu, sc, grid)
    assert np.array_equal(got.probs, want) and got.offset == -grid.half_bins
    only_zeros = PortableMixture(np.where(np.arange(3) == 0, w, 0.0), mu, sc, grid)
    assert np.array_equal(only_zeros.probs, exactmath.exact_table(masses[..., 0, :] * w[..., 0, None]))


def test_weighted_sum_is_the_ordered_sum_bit_for_bit():
    """weighted_sum's buffers change nothing: the same bits as the ordered sum of the
    products, with zeros, denormals and magnitudes far apart (where the order matters)."""
    rng = np.random.default_rng(8)
    w = rng.random((9, 300)) * np.exp(rng.uniform(-700, 5, (9, 300)))
    rows = rng.random((300, 257)) * np.exp(rng.uniform(-40, 40, (300, 257)))
    w[0, :50], rows[3] = 0.0, 5e-324
    want = exactmath.ordered_sum(w[:, k, None] * rows[k] for k in range(300))
    got = exactmath.weighted_sum(w, rows)
    assert got.shape == (9, 257) and got.tobytes() == want.tobytes()
    assert exactmath.weighted_sum(w[:, :1], rows[:1]).tobytes() == (w[:, :1] * rows[0]).tobytes()
    assert not np.array_equal(want, exactmath.ordered_sum(w[:, k, None] * rows[k]
                                                          for k in reversed(range(300))))


def test_exact_counts_are_exact_tables_before_the_division():
    rng = np.random.default_rng(6)
    w = rng.random((7, 33)) ** 8
    w[0, :3] = [np.nan, -1.0, np.inf]
    c = exactmath.exact_counts(w)
    assert c.dtype == np.int64 and c.min() >= 1 and np.all(c.max(axis=1) == 2 ** 40 + 1)
    assert np.array_equal(c / c.sum(axis=1, keepdims=True), exactmath.exact_table(w))


def test_ladder_rounds_means_and_scales_and_its_tables_sum_to_one():
    lad = ladder(GRID)
    points, s = lad.quantise(np.array([0.0, 0.01, -1.0]), np.array([1.0, 0.3, 1e-9]))
    assert points.tolist() == [0, round(0.01 * PHASES / GRID.width), -PHASES * 16]
    assert s[0] == STEPS * 4 and s[2] == lad.s_min            # 1.0 = 16 bins = 2**4
    assert lad.scale(STEPS * 4) == 1.0
    assert lad.mass(s[1], 1).sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("make", [
    lambda rng: PortableMixture(rng.random((5, 3, 2)), rng.normal(0, 2, (5, 3, 2)),
                                rng.uniform(0.01, 3, (5, 3, 2)), GRID),
    lambda rng: PortableGaussian(rng.normal(0, 2, (5, 3)), 1.0, GRID),
    lambda rng: PortableDiagonalMixture(rng.random(4), rng.normal(0, 2, (4, 3)),
                                        rng.uniform(0.1, 2, (4, 3)), 5, GRID),
], ids=["mixture", "gaussian", "diagonal"])
def test_portable_leaves_round_trip_and_restore_the_stack(make):
    rng = np.random.default_rng(3)
    codec = make(rng)
    stack = AnsStack.with_initial_bits(20, seed=1)
    z = codec.pop(stack)                       # symbols drawn from the model itself
    words = stack.words().copy()
    codec.push(stack, z)
    assert np.array_equal(codec.pop(stack), z)
    assert np.array_equal(stack.words(), words)


def test_portable_mixture_costs_close_to_the_float_model():
    """Means on a quarter-bin lattice and scales on 2**(1/8) steps: the coded cost of z drawn
    from the float model moves by well under 1%."""
    rng = np.random.default_rng(4)
    grid = BinGrid(1 / 64, 8)
    w, mu, sc = rng.random((64, 16, 3)), rng.normal(0, 2, (64, 16, 3)), \
        np.exp(rng.uniform(-3, 1, (64, 16, 3)))
    exact, port = DiscretisedMixture(w, mu, sc, grid), PortableMixture(w, mu, sc, grid)
    z = exact.pop(AnsStack.with_initial_bits(4000, seed=2))
    a, b = exact.info_bits(z).sum(), port.info_bits(z).sum()
    assert abs(b - a) / a < 0.01, (a, b)
    gw, gm, gs = rng.random(8), rng.normal(0, 2, (8, 16)), rng.uniform(0.3, 2, (8, 16))
    f, p = DiscretisedDiagonalMixture(gw, gm, gs, 40, grid), \
        PortableDiagonalMixture(gw, gm, gs, 40, grid)
    z = f.pop(AnsStack.with_initial_bits(4000, seed=3))
    a, b = f.info_bits(z).sum(), p.info_bits(z).sum()
    assert abs(b - a) / a < 0.01, (a, b)
