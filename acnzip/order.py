"""Coding the order of a dataset: a permutation as a Lehmer code of Uniform symbols.

With `--order keep`, the tour (the order images are coded in) must be mapped back to the
original positions. `perm[t]` is the original index of the t-th image of the tour; its Lehmer
code `rank[t]` = how many not-yet-used indices are smaller than perm[t], a Uniform(N - t)
symbol, so the whole permutation costs log2 N! bits.
"""
from __future__ import annotations

import math

import numpy as np

from codec import AnsStack, Uniform

__all__ = ["lehmer_encode", "lehmer_decode", "PermutationCodec", "permutation_bits"]


class _Fenwick:
    """Prefix counts over 0..n-1 with point updates, O(log n) each."""

    def __init__(self, n: int):
        self.n, self.tree = n, [0] * (n + 1)
        for i in range(1, n + 1):          # all indices start present: linear-time build
            self.tree[i] += 1
            j = i + (i & -i)
            if j <= n:
                self.tree[j] += self.tree[i]

    def remove(self, i: int) -> None:
        i += 1
        while i <= self.n:
            self.tree[i] -= 1
            i += i & -i

    def count_below(self, i: int) -> int:
        """How many present indices are < i."""
        s = 0
        while i > 0:
            s += self.tree[i]
            i -= i & -i
        return s

    def find(self, rank: int) -> int:
        """The present index with exactly `rank` present indices below it."""
        pos, step = 0, 1 << self.n.bit_length()
        while step:
            nxt = pos + step
            if nxt <= self.n and self.tree[nxt] <= rank:
                pos, rank = nxt, rank - self.tree[nxt]
            step >>= 1
        return pos


def lehmer_encode(perm: np.ndarray) -> np.ndarray:
    """Lehmer code of a permutation of 0..N-1: rank[t] in [0, N - t)."""
    fen = _Fenwick(len(perm))
    ranks = np.empty(len(perm), dtype=np.int64)
    for t, p in enumerate(map(int, perm)):
        ranks[t] = fen.count_below(p)
        fen.remove(p)
    return ranks


def lehmer_decode(ranks: np.ndarray) -> np.ndarray:
    fen = _Fenwick(len(ranks))
    perm = np.empty(len(ranks), dtype=np.int64)
    for t, r in enumerate(map(int, ranks)):
        perm[t] = fen.find(r)
        fen.remove(int(perm[t]))
    return perm


class PermutationCodec:
    """Codes a permutation of 0..n-1 on an AnsStack: n - 1 Uniform symbols, log2 n! bits."""

    def __init__(self, n: int):
        self.n = n
        self._uniform = Uniform(np.arange(n, 0, -1, dtype=np.int64))

    def push(self, stack: AnsStack, perm: np.ndarray) -> None:
        self._uniform.push(stack, lehmer_encode(perm))

    def pop(self, stack: AnsStack) -> np.ndarray:
        return lehmer_decode(self._uniform.pop(stack))


def permutation_bits(n: int) -> float:
    """log2 n!, the ideal cost of an arbitrary order of n items, in bits."""
    return math.lgamma(n + 1) / math.log(2)
