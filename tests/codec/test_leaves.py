"""Every leaf codec round-trips exactly and costs what its model says (-log2 p)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from codec import (AnsStack, Bernoulli, BinGrid, Categorical, CodecError, DEFAULT_GRID,
                   DiscretisedDiagonalMixture,
                   DiscretisedGaussian, DiscretisedMixture, Uniform)
from codec.testing import assert_roundtrip

SMALL_GRID = BinGrid(width=1 / 8, range=4.0)  # 65 bins keeps property tests fast
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)
# Probabilities including the extremes the coder must survive: 0, 1, subnormal, NaN.
probability = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 5e-324, 1e-12, np.nan]))
finite = st.floats(-1e6, 1e6, allow_nan=False)


def stack(seed=0) -> AnsStack:
    return AnsStack.with_initial_bits(16, seed)


def sample(rng, probs):
    """Draw one symbol per row of a (sanitised) table."""
    c = probs.cumsum(-1)
    return (rng.random(c.shape[:-1] + (1,)) * c[..., -1:] > c).sum(-1)


@given(hnp.arrays(np.float64, shapes, elements=probability), st.integers(0, 2**32 - 1))
def test_bernoulli_roundtrip_restores_coder_state(p, seed):
    rng = np.random.default_rng(seed)
    codec = Bernoulli(p)
    x = (rng.random(p.shape) < codec.p).astype(np.int64)
    x[rng.random(p.shape) < 0.1] ^= 1  # some surprising symbols too
    assert_roundtrip(codec, x, stack(seed))


@given(st.data(), shapes, st.integers(2, 300), st.integers(0, 2**32 - 1))
def test_categorical_roundtrip_restores_coder_state(data, shape, k, seed):
    entry = st.one_of(st.floats(0, 1e30), st.sampled_from([0.0, np.nan, np.inf, -1.0, 1e-300]))
    probs = data.draw(hnp.arrays(np.float64, shape + (k,), elements=entry))
    rng = np.random.default_rng(seed)
    codec = Categorical(probs)
    x = rng.integers(0, k, size=shape) if seed % 2 else sample(rng, codec.probs)
    assert_roundtrip(codec, x, stack(seed))


@given(st.data(), shapes, st.integers(0, 2**32 - 1))
def test_discretised_gaussian_roundtrip_restores_coder_state(data, shape, seed):
    mean = data.draw(hnp.arrays(np.float64, shape, elements=finite))
    std = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(1e-9, 1e6)))
    rng = np.random.default_rng(seed)
    s = SMALL_GRID.half_bins
    x = rng.integers(-s, s + 1, size=shape)
    assert_roundtrip(DiscretisedGaussian(mean, std, SMALL_GRID), x, stack(seed))


@given(st.data(), shapes, st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_discretised_mixture_roundtrip_restores_coder_state(data, shape, m, seed):
    full = shape + (m,)
    weights = data.draw(hnp.arrays(np.float64, full, elements=st.one_of(
        st.floats(0, 1e6), st.sampled_from([0.0, np.nan]))))
    means = data.draw(hnp.arrays(np.float64, full, elements=finite))
    scales = data.draw(hnp.arrays(np.float64, full, elements=st.floats(0, 1e6)))
    rng = np.random.default_rng(seed)
    codec = DiscretisedMixture(weights, means, scales, SMALL_GRID)
    x = sample(rng, codec.probs) - SMALL_GRID.half_bins
    assert_roundtrip(codec, x, stack(seed))


@given(hnp.arrays(np.int64, shapes, elements=st.integers(1, 2**24 - 1)),
       st.integers(0, 2**32 - 1))
def test_uniform_roundtrip_restores_coder_state(size, seed):
    x = np.random.default_rng(seed).integers(0, size)
    assert_roundtrip(Uniform(size), x, stack(seed))


def test_uniform_size_one_costs_nothing():
    s = stack()
    before = s.words()
    Uniform(np.ones(5, dtype=np.int64)).push(s, np.zeros(5, dtype=np.int64))
    assert np.array_equal(s.words(), before)


@pytest.mark.parametrize("make, symbols", [
    (lambda: Bernoulli(np.full(3, 0.5)), np.array([0, 2, 1])),
    (lambda: Categorical(np.ones((3, 4))), np.array([0, 4, 1])),
    (lambda: Uniform(np.array([3, 3])), np.array([0, 3])),
    (lambda: DiscretisedGaussian(np.zeros(2), grid=SMALL_GRID), np.array([0, 33])),
    (lambda: Bernoulli(np.full(3, 0.5)), np.zeros(4, dtype=np.int64)),
])
def test_out_of_range_symbols_are_rejected(make, symbols):
    with pytest.raises(CodecError):
        make().push(stack(), symbols)


@pytest.mark.parametrize("make", [
    lambda: DiscretisedGaussian(np.array([np.nan])),
    lambda: DiscretisedMixture(np.ones((1, 2)), np.array([[0.0, np.inf]]), np.ones((1, 2))),
    lambda: Uniform(np.array([0])),
    lambda: Uniform(np.array([2**24])),
    lambda: Categorical(np.ones((2, 1))),
])
def test_invalid_parameters_raise_codec_error(make):
    with pytest.raises(CodecError):
        make()


# --- rate: measured bits = sum(-log2 p) within 0.1% + 64 bits over >= 10k symbols -------------

def measured_bits(codec, x) -> int:
    s = AnsStack()
    codec.push(s, x)
    return s.num_valid_bits


def assert_rate(codec, x):
    ideal = codec.info_bits(x).sum()
    bits = measured_bits(codec, x)
    assert abs(bits - ideal) <= 1e-3 * ideal + 64, (bits, ideal)


def test_bernoulli_rate_matches_information_content():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.random(20_000), rng.choice([1e-6, 0.999999, 0.0, 1.0], 2_000)])
    x = (rng.random(p.size) < p).astype(np.int64)
    assert_rate(Bernoulli(p), x)


def test_categorical_rate_matches_information_content():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.full(256, 0.05), size=10_000)
    probs[::7] = 0.0
    probs[::7, 3] = 1.0  # near-deterministic rows
    codec = Categorical(probs)
    assert_rate(codec, sample(rng, codec.probs))


def test_discretised_gaussian_rate_matches_information_content():
    rng = np.random.default_rng(3)
    mean = rng.normal(0, 2, 10_000)
    codec = DiscretisedGaussian(mean, 1.0)
    x = DEFAULT_GRID.index(mean + rng.normal(size=mean.shape))
    assert_rate(codec, x)


def test_discretised_mixture_rate_matches_information_content():
    rng = np.random.default_rng(4)
    n, m = 10_000, 8
    codec = DiscretisedMixture(rng.dirichlet(np.ones(m), n), rng.normal(0, 1.5, (n, m)),
                               np.exp(rng.uniform(np.log(0.05), np.log(2), (n, m))))
    assert_rate(codec, sample(rng, codec.probs) - DEFAULT_GRID.half_bins)


def test_uniform_rate_matches_information_content():
    rng = np.random.default_rng(5)
    size = rng.integers(2, 10_000, 10_000)
    assert_rate(Uniform(size), rng.integers(0, size))



@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_diagonal_mixture_roundtrip_restores_coder_state(k, d, n, seed):
    rng = np.random.default_rng(seed)
    codec = DiscretisedDiagonalMixture(rng.random(k), rng.normal(0, 2, (k, d)),
                                       np.exp(rng.normal(0, 1, (k, d))), n, SMALL_GRID)
    s = SMALL_GRID.half_bins
    assert_roundtrip(codec, rng.integers(-s, s + 1, (n, d)), stack(seed))


def test_diagonal_mixture_costs_its_joint_probability():
    """Sum of the per-dimension conditionals = -log2 of the joint discretised mixture."""
    rng = np.random.default_rng(7)
    k, d, n = 3, 2, 500
    pi, mu, sc = rng.dirichlet(np.ones(k)), rng.normal(0, 1.5, (k, d)), rng.uniform(0.3, 1, (k, d))
    codec = DiscretisedDiagonalMixture(pi, mu, sc, n)
    comp = rng.choice(k, n, p=pi)
    z = DEFAULT_GRID.index(rng.normal(mu[comp], sc[comp]))
    mass = codec.mass                                                   # (K, D, n_bins)
    s = DEFAULT_GRID.half_bins
    joint = np.einsum("k,kn->n", pi, mass[:, 0, z[:, 0] + s] * mass[:, 1, z[:, 1] + s])
    ideal = -np.log2(joint).sum()
    assert abs(codec.info_bits(z).sum() - ideal) < 1e-3 * ideal
    assert abs(measured_bits(codec, z) - ideal) < 1e-3 * ideal + 64


# --- info_bits is the cost of the quantised model, one symbol at a time ----------------------

def exact_push_bits(codec, x) -> float:
    """log2 of the ANS state after pushing x minus before (exact, not whole words)."""
    def log2_state(s: AnsStack) -> float:
        w = s.words().astype(np.float64)
        return 32 * (w.size - 2) + np.log2(w[-1] * 2.0**32 + w[-2])
    s = AnsStack.with_initial_bits(8, seed=3)
    before = log2_state(s)
    codec.push(s, x)
    return log2_state(s) - before


def assert_same_units(measured_bits, info_bits):
    """Equal up to constriction's rounding: one of the 2**24 probability units."""
    units = lambda bits: 2.0 ** (24 - bits)
    assert abs(units(measured_bits) - units(info_bits)) <= 1.0 + 1e-6 * units(info_bits), \
        (measured_bits, info_bits)


@pytest.mark.parametrize("offset_bins", [0, 40, 300, 600, 1500])
def test_far_tail_latent_costs_what_the_coder_charges(offset_bins):
    """A bits-back pop can land in q's far tail; it must be credited ~24 bits, not hundreds."""
    grid = BinGrid(width=1 / 64, range=25.0)
    codec = DiscretisedGaussian(np.array([0.3]), 1.0, grid)
    z = np.array([19 + offset_bins])
    assert_same_units(exact_push_bits(codec, z), codec.info_bits(z)[0])
    assert codec.info_bits(z)[0] <= 24.0 + 1e-9


def test_table_tails_cost_at_most_the_quantiser_floor():
    probs = np.r_[1.0, np.full(999, 1e-15)][None]
    codec = Categorical(probs)
    for s in (0, 500):
        x = np.array([s])
        assert_same_units(exact_push_bits(codec, x), codec.info_bits(x)[0])


def test_gaussian_info_bits_equal_its_table_entries_exactly():
    """info_bits evaluates only each symbol's bin; it must agree with the full table."""
    from codec.leaves import coded_bits
    rng = np.random.default_rng(5)
    grid = BinGrid(width=1 / 64, range=25.0)
    codec = DiscretisedGaussian(rng.normal(size=(30, 16)) * 8, rng.uniform(0.01, 5), grid)
    z = rng.integers(-grid.half_bins, grid.half_bins + 1, size=(30, 16))
    table = codec.table()[np.arange(30)[:, None], np.arange(16), z + grid.half_bins]
    assert np.array_equal(codec.info_bits(z), coded_bits(table, grid.n_bins))


def test_categorical_from_a_ready_table_codes_as_the_exact_one():
    from codec import exactmath
    rng = np.random.default_rng(9)
    w = rng.random((6, 5)) ** 4
    ready = Categorical.from_table(exactmath.exact_table(w), offset=2)
    built = Categorical(w, offset=2, exact=True)
    assert np.array_equal(ready.probs, built.probs) and ready.shape == (6,)
    stack = AnsStack.with_initial_bits(40, seed=4)
    x = built.pop(stack)
    words = stack.words().copy()
    ready.push(stack, x)
    assert np.array_equal(built.pop(stack), x) and np.array_equal(stack.words(), words)
    with pytest.raises(CodecError, match="2..2\\*\\*24-1 entries"):
        Categorical.from_table(np.ones((3, 1)))
