"""The permutation codec costs log2 N! bits and round-trips."""
import numpy as np
import pytest

from codec import AnsStack
from acnzip.order import PermutationCodec, lehmer_decode, lehmer_encode, permutation_bits


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000])
def test_lehmer_code_roundtrips_and_matches_definition(n):
    perm = np.random.default_rng(n).permutation(n)
    ranks = lehmer_encode(perm)
    expected = [sum(1 for q in perm[t + 1:] if q < perm[t]) for t in range(n)] if n < 100 else None
    if expected is not None:
        assert ranks.tolist() == expected
    assert np.all(ranks < np.arange(n, 0, -1))
    assert np.array_equal(lehmer_decode(ranks), perm)


def test_permutation_costs_log2_factorial_bits():
    n = 10_000
    perm = np.random.default_rng(0).permutation(n)
    stack = AnsStack()
    PermutationCodec(n).push(stack, perm)
    assert abs(stack.num_valid_bits - permutation_bits(n)) < 64
    assert np.array_equal(PermutationCodec(n).pop(stack), perm)
    assert stack.is_empty()
