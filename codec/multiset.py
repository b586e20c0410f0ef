"""Multisets: which element comes next, coded so that a set's order costs nothing.

Multiset bits-back (Severo et al. 2021): the encoder *pops* the next element of a multiset S as
a draw without replacement, which takes about log2 |S| - log2 m(x) bits off the stack (m(x):
x's multiplicity); the decoder, holding x, *pushes* that choice back. Over a whole set of N
distinct items this saves log2 N! bits: the order is never paid for.

The multiset is a sorted list of keys (bytes, or anything totally ordered); element x of S
occupies the positions [lo, hi) of the sorted list. Choice codec, exact in both directions:

    pop  (encoder):  u ~ Uniform(|S|);  x = S[u];  push u - lo ~ Uniform(hi - lo);  S -= {x}
    push (decoder):  S += {x};  o ~ pop Uniform(hi - lo);  push lo + o ~ Uniform(|S|)

Guarantees: `push` is the exact inverse of `pop` given the same multiset; sizes must stay
below 2**24 (constriction's Uniform). Costs: pop returns log2 |S| - log2 m(x) bits.
"""
from __future__ import annotations

import bisect

import numpy as np

from .leaves import Uniform
from .stack import AnsStack, CodecError

__all__ = ["Multiset"]

_MAX = 1 << 24


class Multiset:
    """A multiset of keys in canonical (sorted) order, with the choice codec on it."""

    def __init__(self, keys=()):
        self.keys = sorted(keys)
        if len(self.keys) >= _MAX:
            raise CodecError(f"a multiset holds at most {_MAX - 1} elements")

    def __len__(self) -> int:
        return len(self.keys)

    def span(self, key) -> tuple[int, int]:
        """Positions [lo, hi) of `key` in canonical order (lo == hi if absent)."""
        return bisect.bisect_left(self.keys, key), bisect.bisect_right(self.keys, key)

    def index(self, key) -> int:
        """Position of (the first copy of) a held key; CodecError if absent."""
        lo, hi = self.span(key)
        if lo == hi:
            raise CodecError("the key is not in the multiset")
        return lo

    def insert(self, key) -> None:
        bisect.insort(self.keys, key)

    def remove(self, key) -> None:
        del self.keys[self.index(key)]

    def pop_element(self, stack: AnsStack):
        """Encoder: draw the next element from the stack's bits and remove it; returns it."""
        if not self.keys:
            raise CodecError("cannot draw from an empty multiset")
        u = int(Uniform(np.int64(len(self.keys))).pop(stack))
        key = self.keys[u]
        lo, hi = self.span(key)
        Uniform(np.int64(hi - lo)).push(stack, np.int64(u - lo))
        del self.keys[lo]
        return key

    def push_element(self, stack: AnsStack, key) -> None:
        """Decoder: add `key` back and push the choice that drew it (inverse of pop_element)."""
        self.insert(key)
        lo, hi = self.span(key)
        o = int(Uniform(np.int64(hi - lo)).pop(stack))
        Uniform(np.int64(len(self.keys))).push(stack, np.int64(lo + o))
