"""Helpers for checking codecs, used by the project's tests and usable by anyone's."""
from __future__ import annotations

import numpy as np

from .core import Codec
from .stack import AnsStack

__all__ = ["assert_roundtrip", "assert_equal_symbols"]


def assert_equal_symbols(a, b) -> None:
    """Symbols are arrays or (nested) tuples of arrays; compare them exactly."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), (a, b)
        for x, y in zip(a, b):
            assert_equal_symbols(x, y)
    else:
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, (a.shape, b.shape)
        assert np.array_equal(a, b), "decoded symbols differ"


def assert_roundtrip(codec: Codec, symbols, stack: AnsStack) -> int:
    """Push then pop must return `symbols` and leave `stack` bit-for-bit as it was.

    Returns the number of bits the push added (net, may be negative for bits-back).
    """
    words_before, bits_before = stack.words(), stack.num_valid_bits
    codec.push(stack, symbols)
    bits_pushed = stack.num_valid_bits - bits_before
    decoded = codec.pop(stack)
    assert_equal_symbols(decoded, symbols)
    assert np.array_equal(stack.words(), words_before), "coder state not restored"
    return bits_pushed
