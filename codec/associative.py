"""An associative prior: z coded under a mixture of a base prior and H component priors (one
per item the decoder already holds), with bits-back over which component.

    p(z) = w p_base(z) + (1 - w)/H sum_j p(z | j)          (w = base weight, 0 <= w < 1)

With H = 0 the base alone is used; with w = 0 there is no base (the pure associative mixture).

push (encoder), for B rows z at once:
    candidates: the K held items whose anchor points are nearest to z (exact squared L2 in
        float64, accumulated dimension by dimension; ties broken by the lower index), and the
        base when w > 0
    pop  c ~ q(c | z) over those options, q proportional to exp(log-weight + score)
    push the base rows' z under p_base, then the other rows' z under p(z | j)
    push j ~ Uniform(H) for the rows not on the base
    push the flag "base or held" ~ Categorical(w, 1 - w) for every row (when w > 0 and H > 0)
pop (decoder) is the exact inverse: pop the flags, the j's, the held rows' z, the base rows'
z, then recompute the options and q from z and push each row's choice back.

Net cost per row: -log2 p(z | c) - log2 p(c) + log2 q(c | z); with q the exact posterior over
every option this is -log2 p(z), and a q restricted to the K nearest costs a little more.
Guarantees: the candidate search and q use only elementwise float64 numpy operations on arrays
of identical shape on both sides, so the encoder and decoder compute the same tables bit for
bit given the same anchors and scores; `score` and `base_score` must be deterministic in the
same sense.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import exactmath
from .core import Codec
from .leaves import Categorical, Uniform
from .stack import AnsStack, CodecError

__all__ = ["AssociativePrior", "PriorCosts", "nearest", "NEAREST_CHUNK"]


NEAREST_CHUNK = 1 << 15   # anchors per block of the candidate search: memory B x 2**15 floats
_SCREEN_MIN = 1 << 10     # blocks at least this long are screened with a matrix product first
_U = 2.0 ** -53           # unit roundoff of float64


def _squared(points: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Squared L2 over the last axis of (..., D) arrays broadcast against each other, float64,
    accumulated dimension by dimension in index order: elementwise operations, so a pair's
    value is the same bits whatever shape it is computed in."""
    d2 = np.zeros(np.broadcast_shapes(points.shape[:-1], anchors.shape[:-1]))
    for d in range(points.shape[-1]):                    # a fixed order of accumulation
        diff = points[..., d] - anchors[..., d]
        d2 += diff * diff
    return d2


def _distances(points: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Squared L2 (B, H) of every point (B, D) to every anchor (H, D)."""
    return _squared(points[:, None, :], anchors[None, :, :])


def _first_k(rows: np.ndarray, d2: np.ndarray, idx: np.ndarray, b: int, k: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """From (row, distance, index) triples in which every row 0..b-1 has at least k entries,
    each row's first k by distance then index: (b, k) distances and indices."""
    order = np.lexsort((idx, d2, rows))                      # row, distance, index
    counts = np.bincount(rows, minlength=b)
    take = order[(np.cumsum(counts) - counts)[:, None] + np.arange(k)]
    return d2[take], idx[take]


def _smallest(d2: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k (distance, index) pairs that come first by distance then index, in that
    order: (B, min(k, n)) each. idx (B, n) are the indices of the columns of d2 (B, n)."""
    k = min(k, d2.shape[1])
    if k < d2.shape[1]:
        kth = np.partition(d2, k - 1, axis=1)[:, k - 1:k]   # the k-th smallest value: exact
        rows, cols = np.nonzero(d2 <= kth)                   # >= k per row
    else:
        rows, cols = np.nonzero(np.ones(d2.shape, bool))
    return _first_k(rows, d2[rows, cols], idx[rows, cols], len(d2), k)


def _screen(points: np.ndarray, block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) pairs of `block` that include, for every row of points, its k nearest
    columns by the exact distance of `_distances` (ties included).

    The distances are first estimated by one matrix product, |p|^2 + |a|^2 - 2 p.a, in any
    summation order the BLAS library likes; both the estimate and the exact value are within
    eps = (4 D + 9) u (|p|^2 + |a|^2) of the true distance (standard floating-point error
    bounds, u = 2^-53; taken 8x larger here, plus an absolute term for underflow). A column
    whose estimate exceeds the k-th smallest estimate by more than 2 eps is provably not among
    the k nearest, so it is dropped; which columns survive may depend on the machine, but the
    exact re-ranking of the survivors does not."""
    pn = np.einsum("ij,ij->i", points, points)
    an = np.einsum("ij,ij->i", block, block)
    approx = points @ block.T                                # then, in place, the estimate
    approx *= -2.0
    approx += an[None, :]
    approx += pn[:, None]
    eps = 8.0 * (4 * points.shape[1] + 9) * _U * (pn + an.max()) + 1e-290
    kth = np.partition(approx, k - 1, axis=1)[:, k - 1]
    return np.nonzero(approx <= (kth + 4.0 * eps)[:, None])


def nearest(points: np.ndarray, anchors: np.ndarray, k: int,
            chunk: int = NEAREST_CHUNK) -> np.ndarray:
    """Indices (B, k) of the k anchors (H, D) nearest each point (B, D), nearest first; exact
    squared L2 in float64 summed over dimensions in index order; ties by the lower index.

    The anchors are searched in blocks of `chunk`, keeping each row's best k: memory is
    O(B (chunk + k)) for any H; the result does not depend on `chunk` (a selection by
    (distance, index) is the same whichever blocks it is merged from). Long blocks are first
    screened by a matrix product with a certified error bound (`_screen`) and only the
    survivors' exact distances are computed, so the cost is one BLAS product per block, O(B H D)
    multiply-adds at BLAS speed, and the result is the same as the exhaustive exact search's.
    Where more than 2**10 columns per row survive (ties: many identical anchors), the block is
    searched exhaustively in pieces of 2**10 instead, so memory stays O(B (2**15 + 2**10 D))."""
    points = np.asarray(points, dtype=np.float64)
    anchors = np.asarray(anchors, dtype=np.float64)
    b, h = len(points), len(anchors)
    k = min(k, h)
    screen = np.isfinite(points).all() and np.isfinite(anchors).all()
    best_d = np.zeros((b, 0))
    best_i = np.zeros((b, 0), dtype=np.int64)
    for start in range(0, h, chunk):
        block = anchors[start:start + chunk]
        if not (screen and len(block) >= max(_SCREEN_MIN, k)):
            d2 = np.concatenate([best_d, _distances(points, block)], axis=1)
            idx = np.concatenate([best_i, np.broadcast_to(
                np.arange(start, start + len(block)), (b, len(block)))], axis=1)
            best_d, best_i = _smallest(d2, idx, k)
            continue
        rows, cols = _screen(points, block, k)
        if len(rows) > b * _SCREEN_MIN:      # many ties (identical codes): exact, in pieces
            for s in range(0, len(block), _SCREEN_MIN):
                piece = block[s:s + _SCREEN_MIN]
                d2 = np.concatenate([best_d, _distances(points, piece)], axis=1)
                idx = np.concatenate([best_i, np.broadcast_to(
                    np.arange(start + s, start + s + len(piece)), (b, len(piece)))], axis=1)
                best_d, best_i = _smallest(d2, idx, k)
            continue
        kept = best_d.shape[1]
        rows = np.concatenate([np.repeat(np.arange(b), kept), rows])
        d2 = np.concatenate([best_d.ravel(), _squared(points[rows[b * kept:]], block[cols])])
        idx = np.concatenate([best_i.ravel(), cols + start])
        best_d, best_i = _first_k(rows, d2, idx, b, min(k, start + len(block)))
    return best_i


@dataclass
class PriorCosts:
    """What the last `push` cost, per row, in bits (ideal lengths as constriction codes them)."""
    z_bits: np.ndarray        # -log2 p(z | c): the latent under the chosen component or base
    choice_bits: np.ndarray   # -log2 p(c): the flag and log2 H for rows on a held item
    back_bits: np.ndarray     # -log2 q(c | z): returned by popping the choice
    on_base: np.ndarray       # bool: rows coded under the base prior


class AssociativePrior(Codec):
    """n latent rows under the associative mixture (see the module docstring).

    anchors (H, D): where each held item sits (its code), for the candidate search (H may be
    0: then the base codes every row);
    component(j): the codec of rows z given items j (R,); score(z, cand): (R, K) log-densities
    of rows z under the candidates cand (R, K), up to a constant shared with base_score;
    k: candidates per row; n: rows per push/pop. base(r): the base prior's codec for r rows,
    base_score(z): (R,) its log-density on the same scale; base_weight: w. exact: q and the
    flags from codec.exactmath with integer-normalised tables, the same on every machine
    (for portable scores and components).
    """

    def __init__(self, anchors: np.ndarray, component: Callable[[np.ndarray], Codec],
                 score: Callable[[np.ndarray, np.ndarray], np.ndarray], k: int, n: int,
                 to_point: Callable[[np.ndarray], np.ndarray] = lambda z: z,
                 base: Callable[[int], Codec] | None = None,
                 base_score: Callable[[np.ndarray], np.ndarray] | None = None,
                 base_weight: float = 0.0, exact: bool = False):
        self.anchors, self.component, self.score = anchors, component, score
        self.k, self.n, self.to_point = k, n, to_point
        self.h = len(anchors)
        self.base, self.base_score = base, base_score
        self.w = float(base_weight) if self.h else 1.0
        if not 0.0 <= self.w <= 1.0 or (self.w > 0 and base is None) \
                or (self.h and self.w == 1.0):
            raise CodecError("an associative prior needs held items, a base, or both, "
                             "with a base weight in [0, 1)")
        self.exact = exact
        self.log, self.exp = (exactmath.log, exactmath.exp) if exact else (np.log, np.exp)
        self.flags = Categorical(np.tile([self.w, 1.0 - self.w], (n, 1)), exact=exact) \
            if 0.0 < self.w < 1.0 else None
        self.last: PriorCosts | None = None

    def _options(self, z: np.ndarray) -> tuple[np.ndarray, Categorical | None]:
        """Options (R, K') per row — held items, with -1 first for the base when w > 0 — and
        q(c | z) over them (None when there is only one option: no choice to code)."""
        parts, logits = [], []
        if self.w > 0:
            parts.append(np.full((len(z), 1), -1, dtype=np.int64))
            logits.append(self.log(self.w) + self.base_score(z)[:, None])
        if self.h:
            cand = nearest(self.to_point(z), self.anchors, self.k)
            parts.append(cand)
            logits.append(self.log((1.0 - self.w) / self.h) + self.score(z, cand))
        options = np.concatenate(parts, axis=1)
        if options.shape[1] == 1:
            return options, None
        a = np.concatenate(logits, axis=1)
        return options, Categorical(self.exp(a - a.max(axis=1, keepdims=True)),
                                    exact=self.exact)

    def push(self, stack: AnsStack, z) -> None:
        z = np.asarray(z)
        options, q = self._options(z)
        pos = q.pop(stack) if q is not None else np.zeros(len(z), dtype=np.int64)
        choice = options[np.arange(len(z)), pos]
        on_base = choice < 0
        z_bits = np.zeros(len(z))
        if on_base.any():
            codec = self.base(int(on_base.sum()))
            codec.push(stack, z[on_base])
            z_bits[on_base] = codec.info_bits(z[on_base]).sum(axis=-1)
        held = ~on_base
        choice_bits = np.zeros(len(z))
        if held.any():
            j = choice[held]
            codec = self.component(j)
            codec.push(stack, z[held])
            z_bits[held] = codec.info_bits(z[held]).sum(axis=-1)
            Uniform(np.full(j.size, self.h, dtype=np.int64)).push(stack, j)
            choice_bits[held] = np.log2(self.h)
        if self.flags is not None:
            self.flags.push(stack, held.astype(np.int64))
            choice_bits += self.flags.info_bits(held.astype(np.int64))
        back = q.info_bits(pos) if q is not None else np.zeros(len(z))
        self.last = PriorCosts(z_bits, choice_bits, back, on_base)

    def pop(self, stack: AnsStack) -> np.ndarray:
        n = self.n
        held = self.flags.pop(stack).astype(bool) if self.flags is not None \
            else np.full(n, self.w == 0.0)
        z = np.zeros((n, self.anchors.shape[1]), dtype=np.int64)
        if held.any():
            j = Uniform(np.full(int(held.sum()), self.h, dtype=np.int64)).pop(stack)
            z[held] = self.component(j).pop(stack)
        if (~held).any():
            z[~held] = self.base(int((~held).sum())).pop(stack)
        options, q = self._options(z)
        choice = np.full(n, -1, dtype=np.int64)
        if held.any():
            choice[held] = j
        hit = options == choice[:, None]
        if not hit.any(axis=1).all():
            raise CodecError("a decoded component is not among its candidates (damaged data)")
        if q is not None:
            q.push(stack, hit.argmax(axis=1))
        return z

    def info_bits(self, z) -> np.ndarray:
        """Net bits per row of the last push: -log2 p(z | c) - log2 p(c) + log2 q(c | z)."""
        c = self.last
        return c.z_bits + c.choice_bits - c.back_bits
