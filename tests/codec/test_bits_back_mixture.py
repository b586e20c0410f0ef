"""The GMM p(z) with its component coded by bits back (codec.portable.BitsBackDiagonalMixture):
its lookups equal the one-component tables bit for bit, it round-trips and restores the stack,
its net cost is -log2 of the mixture's probability and what the stack measures, and it costs
what the dimension-by-dimension mixture costs."""
import numpy as np
import pytest

from codec import AnsStack, BinGrid, CodecError, exactmath
from codec.portable import (PHASES, BitsBackDiagonalMixture, PortableDiagonalMixture,
                            PortableGaussian, ladder)

GRID = BinGrid(1 / 16, 6)


def _gmm(rng, k=24, d=5):
    w = rng.random(k) ** 3
    w[3] = 0.0                                      # a component that is never chosen
    return w, rng.normal(0, 2, (k, d)), np.exp(rng.uniform(-2.5, 1, (k, d)))


@pytest.mark.parametrize("grid", [GRID, BinGrid(1 / 64, 3)], ids=["wide", "narrow"])
def test_table_entries_are_the_one_component_tables_bit_for_bit(grid):
    """Every entry the posterior over components reads equals PortableGaussian's table at
    that symbol: means on the grid, beyond it (rows whose bins miss the table's peak take
    exact_table's route) and at every scale."""
    rng = np.random.default_rng(11)
    mean = rng.normal(0, 1.2 * grid.range, (30, 4))
    mean[0] = [2.5 * grid.range, -3 * grid.range, 1e9, grid.range]
    std = np.exp(rng.uniform(-6, 3, mean.shape))
    lad = ladder(grid)
    points, s = lad.quantise(mean, std)
    assert np.any(np.abs(points // PHASES) > grid.half_bins + 1)      # the far route runs
    tables = PortableGaussian(mean, std, grid).probs                    # (30, 4, n_bins)
    bins = rng.integers(-grid.half_bins, grid.half_bins + 1, (50, 4))
    bins[0], bins[1] = -grid.half_bins, grid.half_bins
    got = lad.table_entries(points, s)(bins)                            # (50, 30, 4)
    want = tables[np.arange(30)[None, :, None], np.arange(4)[None, None, :],
                  (bins + grid.half_bins)[:, None, :]]
    assert got.shape == (50, 30, 4) and got.tobytes() == want.tobytes()


def test_round_trip_restores_the_stack_and_the_net_cost_is_the_mixture_probability():
    rng = np.random.default_rng(12)
    w, mu, sc = _gmm(rng)
    codec = BitsBackDiagonalMixture(w, mu, sc, 200, GRID)
    stack = AnsStack.with_initial_bits(4000, seed=3)
    z = codec.pop(stack)                                 # 200 draws from the model itself
    start = stack.words().copy()
    codec.push(stack, z)
    net = codec.info_bits(z)
    assert net.shape == (200, 1)
    grown = 32 * (len(stack.words()) - len(start))
    assert abs(grown - net.sum()) < 64                   # what the stack holds, to a word or two
    # -log2 p(z), p(z) = sum_k pi_k prod_d T_kd(z_d) with the one-component tables
    t = PortableGaussian(mu, sc, GRID).probs             # (K, D, n_bins)
    pz = (exactmath.exact_table(w)[None, :] * np.prod(
        t[np.arange(len(w))[None, :, None], np.arange(mu.shape[1])[None, None, :],
          (z + GRID.half_bins)[:, None, :]], axis=2)).sum(axis=1)
    # constriction's 2**-24 quantisation of each table: ~1e-3 bits per coded symbol
    assert np.allclose(net[:, 0], -np.log2(pz), atol=0.02)
    assert np.array_equal(codec.pop(stack), z)
    assert np.array_equal(stack.words(), start)


def test_it_costs_what_the_dimension_by_dimension_mixture_costs():
    """Nearly the same distribution coded another way: the ideal costs of the same z agree
    to 1e-3 bits per row on average. They differ in constriction's table quantisation and
    where a component's mass reaches past the grid's edge: each component is normalised on
    the grid here, the mixture of raw masses per dimension there (a few hundredths of a bit
    on the rows that reach the edge)."""
    rng = np.random.default_rng(13)
    w, mu, sc = _gmm(rng, k=64, d=8)
    grid = BinGrid(1 / 16, 10)
    old = PortableDiagonalMixture(w, mu, sc, 300, grid)
    z = old.pop(AnsStack.with_initial_bits(4000, seed=4))
    old.push(AnsStack.with_initial_bits(64, seed=5), z)
    new = BitsBackDiagonalMixture(w, mu, sc, 300, grid)
    new.push(AnsStack.with_initial_bits(4000, seed=5), z)
    a, b = old.info_bits(z).sum(axis=1), new.info_bits(z)[:, 0]
    assert np.abs(a - b).mean() < 1e-3 and np.abs(a - b).max() < 0.1, np.abs(a - b)
    assert abs(a.sum() - b.sum()) < 1e-4 * a.sum()


def test_a_row_is_coded_the_same_whatever_rows_share_its_batch():
    """q(k | z) and the component tables are elementwise per row: a row pushed alone and in
    a batch pops the same component from the same stack, so the words agree."""
    rng = np.random.default_rng(14)
    w, mu, sc = _gmm(rng)
    z = BitsBackDiagonalMixture(w, mu, sc, 40, GRID).pop(AnsStack.with_initial_bits(500, 6))
    q_all = BitsBackDiagonalMixture(w, mu, sc, 40, GRID)._posterior(z).probs
    for r in (0, 17, 39):
        one = BitsBackDiagonalMixture(w, mu, sc, 1, GRID)
        assert one._posterior(z[r:r + 1]).probs.tobytes() == q_all[r:r + 1].tobytes()


def test_info_bits_need_a_push_and_bad_parameters_are_refused():
    rng = np.random.default_rng(15)
    w, mu, sc = _gmm(rng)
    codec = BitsBackDiagonalMixture(w, mu, sc, 3, GRID)
    with pytest.raises(CodecError, match="info_bits needs a push first"):
        codec.info_bits(np.zeros((3, 5), np.int64))
    with pytest.raises(CodecError, match="symbols have shape"):
        codec.push(AnsStack.with_initial_bits(8, seed=0), np.zeros((2, 5), np.int64))
    with pytest.raises(CodecError, match="symbols must lie in"):
        codec.push(AnsStack.with_initial_bits(8, seed=0), np.full((3, 5), 10 ** 6))
    with pytest.raises(CodecError, match="mixture means must be finite"):
        BitsBackDiagonalMixture(w, np.full_like(mu, np.nan), sc, 3, GRID)
    with pytest.raises(CodecError, match="weights \\(K,\\), means and scales"):
        BitsBackDiagonalMixture(w[:-1], mu, sc, 3, GRID)


def test_one_component_is_coded_without_a_choice():
    """K = 1: z under the component's tables alone (a one-entry table cannot be coded)."""
    rng = np.random.default_rng(16)
    mu, sc = rng.normal(0, 2, (1, 5)), np.exp(rng.uniform(-2, 1, (1, 5)))
    codec = BitsBackDiagonalMixture(np.ones(1), mu, sc, 30, GRID)
    stack = AnsStack.with_initial_bits(600, seed=7)
    z = codec.pop(stack)
    start = stack.words().copy()
    codec.push(stack, z)
    t = PortableGaussian(mu[0], sc[0], GRID).probs                    # (5, n_bins)
    want = -np.log2(t[np.arange(5), z + GRID.half_bins]).sum(axis=1)
    assert np.allclose(codec.info_bits(z)[:, 0], want, atol=0.01)
    assert np.array_equal(codec.pop(stack), z) and np.array_equal(stack.words(), start)
