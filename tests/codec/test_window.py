"""codec.window: q(z|x) on a window of its grid, so that bits-back draws stay near the mean."""
import numpy as np
import pytest

from codec import AnsStack, BinGrid, CodecError, DiscretisedGaussian
from codec.portable import PortableGaussian
from codec.testing import assert_roundtrip
from codec.window import WindowedGaussian

WIDE = BinGrid(range=43.0)      # 5,505 bins: the grid 8-bit MNIST's test codes needed


def _draws(codec, seed: int = 1) -> np.ndarray:
    """Symbols popped from seeded random words, as bits-back pops them."""
    return codec.pop(AnsStack.with_initial_bits(1 << 17, seed=seed))


@pytest.mark.parametrize("portable", [False, True])
def test_draws_from_random_bits_stay_in_the_window_and_are_gaussian(portable):
    """From random bits, whole-grid tables put ~n_bins / 2**24 of each draw in the far tails
    (tens of standard deviations out); the window's draws stay within it, with E[eps^2] ~ 1."""
    rng = np.random.default_rng(0)
    mean = rng.normal(0, 10, 60_000)
    whole = (PortableGaussian if portable else DiscretisedGaussian)(mean, 1.0, WIDE)
    eps = WIDE.value(_draws(whole)) - mean
    assert (np.abs(eps) > 8.5).sum() >= 5 and (eps ** 2).mean() > 1.1   # the leak, as measured
    windowed = WindowedGaussian(mean, 1.0, WIDE, 8.0, portable)
    eps = WIDE.value(_draws(windowed)) - mean
    assert np.abs(eps).max() <= 8.0 + WIDE.width
    assert abs((eps ** 2).mean() - 1.0) < 0.03
    assert abs(eps.mean()) < 0.02


@pytest.mark.parametrize("portable", [False, True])
def test_roundtrip_and_cost_match_the_window_table(portable):
    rng = np.random.default_rng(2)
    mean = np.concatenate([rng.normal(0, 5, 500), [42.9, -43.0, 1e6, -1e6]])   # edges, far off
    codec = WindowedGaussian(mean, 1.0, WIDE, 8.0, portable)
    z = _draws(codec, seed=3)
    assert np.all(np.abs(z) <= WIDE.half_bins)
    assert np.all(np.abs(z - codec.centre) <= 512)
    stack = AnsStack.with_initial_bits(64, seed=0)
    bits = assert_roundtrip(codec, z, stack)
    assert abs(bits - codec.info_bits(z).sum()) < 64          # ANS overhead: a few words
    # the cost is -log2 of the offset's mass under N(mean - centre w, 1) on the window's grid
    inner = (PortableGaussian if portable else DiscretisedGaussian)(
        mean - codec.centre * WIDE.width, 1.0, BinGrid(WIDE.width, 8.0))
    assert np.array_equal(codec.info_bits(z), inner.info_bits(z - codec.centre))


def test_the_window_is_moved_inside_the_grid_and_never_wider_than_it():
    grid = BinGrid(range=10.0)                                  # 641 half bins
    c = WindowedGaussian(np.array([0.0, 9.9, -30.0, 0.4]), 1.0, grid, 8.0)
    assert c.centre.tolist() == [0, 640 - 512, 512 - 640, 26]
    small = WindowedGaussian(np.zeros(3), 1.0, BinGrid(range=2.0), 8.0)   # window > grid
    assert small.window.half_bins == 128 and small.centre.tolist() == [0, 0, 0]


def test_a_symbol_outside_the_window_is_refused():
    codec = WindowedGaussian(np.array([0.0, 5.0]), 1.0, WIDE, 8.0)
    stack = AnsStack.with_initial_bits(8, seed=0)
    with pytest.raises(CodecError, match="outside its posterior's window"):
        codec.push(stack, np.array([0, 5 * 64 + 513]))
    with pytest.raises(CodecError, match="integer symbols of shape"):
        codec.push(stack, np.array([0.0, 320.0]))
    with pytest.raises(CodecError, match="at least one bin wide"):
        WindowedGaussian(np.zeros(2), 1.0, WIDE, 0.001)
