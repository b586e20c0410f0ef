"""The ANS stack: serialisation, initial bits and the no-silent-underflow policy."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from codec import AnsStack, Bernoulli, CodecError, StackUnderflowError, Uniform


def test_bytes_roundtrip_is_little_endian_words():
    s = AnsStack()
    Uniform(np.full(40, 1000)).push(s, np.arange(40))
    data = s.to_bytes()
    assert len(data) == 4 * len(s.words()) == s.num_bits // 8
    assert np.array_equal(np.frombuffer(data, "<u4"), s.words())
    back = AnsStack.from_bytes(data)
    assert np.array_equal(Uniform(np.full(40, 1000)).pop(back), np.arange(40))
    assert back.is_empty()


def test_from_bytes_rejects_partial_words_and_zero_top_word():
    with pytest.raises(CodecError, match="whole 32-bit words"):
        AnsStack.from_bytes(b"\x01\x02\x03")
    with pytest.raises(CodecError, match="zero word"):
        AnsStack.from_bytes(b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_pop_from_empty_stack_raises_instead_of_inventing_bits():
    s = AnsStack()
    with pytest.raises(StackUnderflowError, match="with_initial_bits"):
        Bernoulli(np.full(8, 0.5)).pop(s)
    assert s.is_empty()


def test_initial_bits_are_seeded_reported_and_restored():
    a, b, c = (AnsStack.with_initial_bits(4, seed) for seed in (7, 7, 8))
    assert np.array_equal(a.words(), b.words()) and not np.array_equal(a.words(), c.words())
    assert a.initial_bits == a.num_bits >= 4 * 32
    words = a.words()
    codec = Bernoulli(np.full(50, 0.5))
    x = codec.pop(a)                       # 50 bits borrowed from the supply
    codec.push(a, x)
    assert np.array_equal(a.words(), words)


def test_underflow_leaves_stack_untouched():
    s = AnsStack.with_initial_bits(2, 0)
    words = s.words()
    with pytest.raises(StackUnderflowError):
        Bernoulli(np.full(200, 0.5)).pop(s)   # needs ~200 bits, the supply holds ~64
    assert np.array_equal(s.words(), words)


def test_invalid_initial_supply_is_rejected():
    with pytest.raises(CodecError):
        AnsStack.with_initial_bits(0, 0)


@given(st.integers(1, 6), st.integers(0, 2**32 - 1), st.integers(1, 400))
def test_pop_past_the_supply_raises_and_pop_within_it_roundtrips(n_words, seed, n_bits):
    s = AnsStack.with_initial_bits(n_words, seed)
    words, codec = s.words(), Bernoulli(np.full(n_bits, 0.5))
    if n_bits <= 32 * n_words - 32:
        x = codec.pop(s)
        codec.push(s, x)
    elif n_bits > 32 * n_words + 32:
        with pytest.raises(StackUnderflowError):
            codec.pop(s)
    assert np.array_equal(s.words(), words)
