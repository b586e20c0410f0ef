"""Multiset choices and the associative prior: exact inverses that restore the stack, with the
costs they claim."""
import math

import numpy as np
import pytest

from codec import associative
from codec import (AnsStack, AssociativePrior, CodecError, DiscretisedDiagonalMixture,
                   DiscretisedMixture, Multiset, nearest)
from codec.grid import DEFAULT_GRID


def test_multiset_choices_round_trip_and_save_log_multinomial_bits():
    keys = [b"c", b"a", b"b", b"a", b"d", b"a", b"b"]              # duplicates
    stack = AnsStack.with_initial_bits(8, seed=1)
    start = stack.words().copy()
    ms, drawn, saved = Multiset(keys), [], 0.0
    while len(ms):
        n = len(ms)
        key = ms.pop_element(stack)
        lo, hi = ms.span(key)
        saved += math.log2(n) - math.log2(hi - lo + 1)
        drawn.append(key)
    assert sorted(drawn) == sorted(keys)
    # log2 of the number of distinct orders: 7! / (3! 2!)
    assert saved == pytest.approx(math.log2(math.factorial(7) / (6 * 2)))
    bob = Multiset()
    for key in reversed(drawn):
        bob.push_element(stack, key)
    assert bob.keys == sorted(keys)
    assert np.array_equal(stack.words(), start)                     # every bit came back


def test_multiset_refuses_missing_keys_and_empty_draws():
    with pytest.raises(CodecError, match="not in the multiset"):
        Multiset([b"a"]).remove(b"b")
    with pytest.raises(CodecError, match="empty"):
        Multiset().pop_element(AnsStack.with_initial_bits(2, 0))


def test_nearest_is_exact_with_ties_broken_by_index():
    rng = np.random.default_rng(0)
    anchors = rng.integers(-3, 3, (500, 4)).astype(np.float64)      # many exact ties
    points = rng.integers(-3, 3, (64, 4)).astype(np.float64)
    got = nearest(points, anchors, 7)
    d2 = ((points[:, None] - anchors[None]) ** 2).sum(-1)
    want = np.argsort(d2, axis=1, kind="stable")[:, :7]
    assert np.array_equal(got, want)
    assert np.array_equal(nearest(points, anchors[:3], 7), np.argsort(d2[:, :3], 1, kind="stable"))
    for chunk in (1, 6, 7, 64, 499):          # searched block by block: the same answer
        assert np.array_equal(nearest(points, anchors, 7, chunk=chunk), want), chunk


def _exhaustive(points, anchors, k):
    """The reference: every exact distance, then the first k by (distance, index)."""
    d2 = associative._distances(points, anchors)
    return associative._smallest(d2, np.broadcast_to(np.arange(len(anchors)), d2.shape), k)[1]


@pytest.mark.parametrize("case", ["ties", "near-ties", "large", "tiny", "one-far"])
def test_screened_search_equals_the_exhaustive_one(case):
    """Blocks of >= 1024 anchors are screened by a BLAS product with a certified error bound;
    the answer must equal the exhaustive exact search's, near-ties and exact ties included."""
    rng = np.random.default_rng(5)
    d = 32
    if case == "ties":              # grid values: many exactly equal distances
        anchors = rng.integers(-2, 3, (3000, d)) * 0.25
        points = rng.integers(-2, 3, (40, d)) * 0.25
    elif case == "near-ties":       # distances differing in the last bits
        base = rng.normal(0, 1, (1, d))
        anchors = base + rng.integers(-4, 5, (3000, d)) * 2.0 ** -50
        points = base + rng.integers(-4, 5, (40, d)) * 2.0 ** -50 + 1e-3
    elif case == "large":
        anchors = rng.normal(0, 1, (3000, d)) * 1e6 + 1e7
        points = anchors[rng.integers(0, 3000, 40)] + rng.normal(0, 1, (40, d))
    elif case == "tiny":
        anchors = rng.normal(0, 1, (3000, d)) * 1e-160
        points = rng.normal(0, 1, (40, d)) * 1e-160
    else:                           # one anchor far away inflates |a|^2 for the whole block
        anchors = rng.normal(0, 1, (3000, d))
        anchors[17] = 1e8
        points = rng.normal(0, 1, (40, d))
    for k in (1, 16, 64):
        want = _exhaustive(points, anchors, k)
        assert np.array_equal(nearest(points, anchors, k), want), (case, k)
        assert np.array_equal(nearest(points, anchors, k, chunk=1100), want), (case, k)


def test_identical_anchors_are_searched_in_bounded_memory():
    """All-equal codes (an all-black dataset): every anchor ties, every column survives the
    screen; the block is then searched exactly in pieces, with the exhaustive answer and
    memory far below the B x H x D floats the survivors' distances would take."""
    import tracemalloc
    b, h, d = 64, 1 << 15, 16
    anchors, points = np.zeros((h, d)), np.zeros((b, d))
    anchors[h - 3] = 5.0                                   # one anchor that is not a tie
    want = np.broadcast_to(np.arange(16), (b, 16))         # ties by the lower index
    tracemalloc.start()
    try:
        got = nearest(points, anchors, 16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(got, want)
    assert peak < b * h * d * 8 // 2, peak    # the survivors and their distances: > 536 MB
    far = np.full((b, d), 5.0)
    assert np.array_equal(nearest(far, anchors, 2)[:, 0], np.full(b, h - 3))


def _prior(rng, h, d=3, k=4, n=25, base_weight=0.0):
    means = rng.normal(0, 2, (h, d))
    mix = lambda j: DiscretisedMixture(np.ones((len(j), d, 1)), means[j][..., None],
                                       np.ones((len(j), d, 1)))
    score = lambda z, cand: -0.5 * ((DEFAULT_GRID.value(z)[:, None] - means[cand]) ** 2).sum(-1)
    base_mu, base_sc = np.zeros((1, d)), np.full((1, d), 3.0)
    base = lambda r: DiscretisedDiagonalMixture(np.ones(1), base_mu, base_sc, r)
    base_score = lambda z: (-np.log(3.0) * d - 0.5 * ((DEFAULT_GRID.value(z) / 3.0) ** 2).sum(-1))
    return means, AssociativePrior(means, mix, score, k, n, to_point=DEFAULT_GRID.value,
                                   base=base, base_score=base_score, base_weight=base_weight)


@pytest.mark.parametrize("h, base_weight", [(40, 0.0), (40, 0.25), (0, 0.0), (1, 0.5)],
                         ids=["associative", "with-base", "base-only", "one-held"])
def test_associative_prior_round_trips_restores_the_stack_and_counts_bits(h, base_weight):
    rng = np.random.default_rng(3)
    means, prior = _prior(rng, h, base_weight=base_weight)
    centres = means[rng.integers(0, h, 25)] if h else np.zeros((25, 3))
    z = DEFAULT_GRID.index(centres + rng.normal(0, 2, (25, 3)))
    stack = AnsStack.with_initial_bits(200, seed=2)
    start_bits = stack.num_bits
    start = stack.words().copy()
    prior.push(stack, z)
    claimed = float(prior.info_bits(z).sum())
    assert abs((stack.num_bits - start_bits) - claimed) < 64 + 1e-3 * abs(claimed)
    c = prior.last
    if 0 < base_weight:                         # both kinds of rows occur, each costed
        assert c.on_base.any() and (~c.on_base).any()
        assert np.allclose(c.choice_bits[~c.on_base], np.log2(h) - np.log2(1 - base_weight),
                           atol=1e-4)
    if h == 0:
        assert c.on_base.all() and not c.choice_bits.any() and not c.back_bits.any()
    _, bob = _prior(np.random.default_rng(3), h, base_weight=base_weight)
    assert np.array_equal(bob.pop(stack), z)
    assert np.array_equal(stack.words(), start)


def test_the_exact_posterior_makes_the_mixture_cost_its_marginal():
    """With every held item a candidate and q the exact posterior, the net cost of a row is
    -log2 of the mixture's mass at z (up to the coder's quantisation)."""
    rng = np.random.default_rng(7)
    h, d = 6, 2
    means, _ = _prior(rng, h, d=d)
    mix = lambda j: DiscretisedMixture(np.ones((len(j), d, 1)), means[j][..., None],
                                       np.ones((len(j), d, 1)))
    masses = mix(np.arange(h)).probs                                  # (H, D, bins)
    log_mass = lambda z, cand: np.log(np.take_along_axis(
        masses[cand], (z + DEFAULT_GRID.half_bins)[:, None, :, None], -1)[..., 0]).sum(-1)
    prior = AssociativePrior(means, mix, log_mass, h, 10, to_point=DEFAULT_GRID.value)
    z = DEFAULT_GRID.index(means[rng.integers(0, h, 10)] + rng.normal(0, 1, (10, d)))
    prior.push(AnsStack.with_initial_bits(100, seed=1), z)
    marginal = np.exp(log_mass(z, np.tile(np.arange(h), (10, 1)))).mean(axis=1)
    assert np.allclose(prior.info_bits(z), -np.log2(marginal), atol=0.01)


def test_a_component_outside_the_candidates_is_damage():
    rng = np.random.default_rng(4)
    means, prior = _prior(rng, 40, k=1, n=5)
    stack = AnsStack.with_initial_bits(50, seed=5)
    with pytest.raises(CodecError):
        for _ in range(20):                          # random words: j lands far from z
            prior.pop(stack)


def test_an_associative_prior_needs_something_to_mix():
    with pytest.raises(CodecError, match="held items, a base, or both"):
        AssociativePrior(np.zeros((0, 2)), None, None, 4, 3)
