"""An associative prior: z coded under a uniform mixture of H component priors (one per item
the decoder already holds), with bits-back over which component.

    p(z) = (1/H) sum_j p(z | j)

push (encoder), for B rows z at once:
    candidates: the K held items whose anchor points are nearest to z (exact squared L2 in
        float64, accumulated dimension by dimension; ties broken by the lower index)
    pop  j ~ q(j | z), q proportional to exp(score(z, j)) over the K candidates (Categorical)
    push z ~ p(z | j)                                       (the component's codec)
    push j ~ Uniform(H)
pop (decoder) is the exact inverse: pop j, pop z, recompute the candidates and q from z,
push j's position among them.

Net cost per row: -log2 p(z | j) + log2 H + log2 q(j | z); with q the exact posterior over all
H items this is -log2 p(z), and a q restricted to the K nearest costs a little more.
Guarantees: the candidate search and q use only elementwise float64 numpy operations on arrays
of identical shape on both sides, so the encoder and decoder compute the same tables bit for
bit given the same anchors and scores; `score` must be deterministic in the same sense.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .core import Codec
from .leaves import Categorical, Uniform
from .stack import AnsStack, CodecError

__all__ = ["AssociativePrior", "nearest"]


def nearest(points: np.ndarray, anchors: np.ndarray, k: int) -> np.ndarray:
    """Indices (B, k) of the k anchors (H, D) nearest each point (B, D), nearest first; exact
    squared L2 in float64 summed over dimensions in index order; ties by the lower index."""
    points = np.asarray(points, dtype=np.float64)
    anchors = np.asarray(anchors, dtype=np.float64)
    h = len(anchors)
    k = min(k, h)
    d2 = np.zeros((len(points), h))
    for d in range(points.shape[1]):                     # a fixed order of accumulation
        diff = points[:, d, None] - anchors[None, :, d]
        d2 += diff * diff
    if k == h:
        return np.argsort(d2, axis=1, kind="stable")
    kth = np.partition(d2, k - 1, axis=1)[:, k - 1:k]     # the k-th smallest value: exact
    rows, cols = np.nonzero(d2 <= kth)                   # >= k per row, cols ascending
    order = np.lexsort((cols, d2[rows, cols], rows))     # by row, then distance, then index
    rows, cols = rows[order], cols[order]
    counts = np.bincount(rows, minlength=len(points))
    starts = np.cumsum(counts) - counts
    return cols[starts[:, None] + np.arange(k)]


class AssociativePrior(Codec):
    """B latent rows under the uniform mixture over H held items (see the module docstring).

    anchors (H, D): where each item sits (its code) for the candidate search; component(j):
    the codec of rows z given items j (B,); score(z, cand): (B, K) log-weights of candidates
    cand (B, K) for rows z; k: candidates per row.
    """

    def __init__(self, anchors: np.ndarray, component: Callable[[np.ndarray], Codec],
                 score: Callable[[np.ndarray, np.ndarray], np.ndarray], k: int,
                 to_point: Callable[[np.ndarray], np.ndarray] = lambda z: z):
        self.anchors, self.component, self.score = anchors, component, score
        self.k, self.to_point = k, to_point
        self.h = len(anchors)
        if self.h < 1:
            raise CodecError("an associative prior needs at least one held item")

    def _posterior(self, z: np.ndarray) -> tuple[np.ndarray, Categorical | None]:
        """Candidates (B, K) and q(j | z) over them (None when K = 1: no choice to code)."""
        cand = nearest(self.to_point(z), self.anchors, self.k)
        if cand.shape[1] == 1:
            return cand, None
        logits = self.score(z, cand)
        logits = logits - logits.max(axis=1, keepdims=True)
        return cand, Categorical(np.exp(logits))

    def push(self, stack: AnsStack, z) -> None:
        z = np.asarray(z)
        cand, q = self._posterior(z)
        pos = q.pop(stack) if q is not None else np.zeros(len(z), dtype=np.int64)
        j = cand[np.arange(len(z)), pos]
        self.component(j).push(stack, z)
        Uniform(np.full(len(z), self.h, dtype=np.int64)).push(stack, j)
        self.last = (j, pos, q)

    def pop_rows(self, stack: AnsStack, n: int) -> np.ndarray:
        j = Uniform(np.full(n, self.h, dtype=np.int64)).pop(stack)
        z = self.component(j).pop(stack)
        cand, q = self._posterior(z)
        hit = cand == j[:, None]
        if not hit.any(axis=1).all():
            raise CodecError("a decoded component is not among its candidates (damaged data)")
        if q is not None:
            q.push(stack, hit.argmax(axis=1))
        return z

    def pop(self, stack: AnsStack):
        raise CodecError("AssociativePrior.pop needs the row count: use pop_rows(stack, n)")

    def info_bits(self, z) -> np.ndarray:
        """Net bits per row of the last push: -log2 p(z | j) + log2 H - (-log2 q(j | z))."""
        j, pos, q = self.last
        returned = q.info_bits(pos) if q is not None else 0.0
        return self.component(j).info_bits(z).sum(axis=-1) + np.log2(self.h) - returned
