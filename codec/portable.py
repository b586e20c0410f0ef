"""Portable entropy models: tables whose every entry is the same on every machine.

The leaves in leaves.py take float parameters and build their tables with numpy's exp and with
float sums whose rounding may differ between CPUs; they are exact only where encoder and
decoder run the same computation. The leaves here guarantee more: given the same float64
parameters, every probability they hand to constriction is the same on every IEEE-754
machine (any CPU, vector unit, thread count, numpy version), because

* Gaussian bin masses come from `GaussianLadder` tables: means are rounded to a lattice of
  1/PHASES bin, scales to a geometric ladder of STEPS per octave; each (scale, phase) table
  is computed once with `exactmath.exp` and correctly rounded elementwise operations;
* a mixture's weights are summed component by component in a fixed order (elementwise), and
  tables are normalised with integer sums (`exactmath.exact_table`);
* log and exp are `exactmath`'s.

Rounding the means to a quarter bin and the scales to 2**(1/8) steps changes the modelled
distributions slightly (measured: docs/portable.md); encoder and decoder round identically.
"""
from __future__ import annotations

import copy
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import exactmath
from .core import BitsBack, Codec
from .grid import BinGrid, DEFAULT_GRID
from .leaves import Categorical, DiscretisedDiagonalMixture, _check_symbols, _finite
from .normal import normal_bin_masses
from .stack import CodecError

__all__ = ["GaussianLadder", "PortableMixture", "PortableGaussian", "PortableDiagonalMixture",
           "BitsBackDiagonalMixture", "PHASES", "STEPS"]

PHASES = 4          # means on a lattice of width / PHASES
STEPS = 8           # scales on a ladder of 2**(1/STEPS)
_LN2 = 0.69314718055994530942
_ROWS_PER_CHUNK = 1 << 16   # table entries per chunk of a mixture's gather (memory bound)


class GaussianLadder:
    """Bin masses of N(mean, scale**2) on a BinGrid with mean = (PHASES b + f) width / PHASES
    and scale = width 2**(s / STEPS), for integers b, f in [0, PHASES), s in [s_min, s_max].

    mass(s, f)[o + reach] is the mass of bin o (o in [-reach, reach], the bin centred on
    o * width) for the mean f * width / PHASES; a mean PHASES b + f lattice points from 0
    gives bin k the mass at o = k - b. Means are clipped to twice the grid's range (so
    reach = 3 half_bins) and scales to [width / 16, 4 range]."""

    def __init__(self, grid: BinGrid):
        self.grid = grid
        self.reach = 3 * grid.half_bins
        self.s_min = -4 * STEPS
        self.s_max = int(np.ceil(np.log2(4 * grid.range / grid.width) * STEPS))
        self._tables: dict[tuple[int, int], np.ndarray] = {}
        self._counts: dict[tuple[int, int], tuple] = {}

    def scale(self, s) -> np.ndarray:
        """Ladder scale of index s: width 2**(s // STEPS) 2**((s % STEPS) / STEPS)."""
        s = np.asarray(s, dtype=np.int64)
        frac = exactmath.exp((s % STEPS).astype(np.float64) * (_LN2 / STEPS))
        return np.ldexp(frac * self.grid.width, s // STEPS)

    def quantise(self, means, scales) -> tuple[np.ndarray, np.ndarray]:
        """Float64 means and scales -> (lattice points, ladder indices), int64, rounded to the
        nearest; exactmath.log, so the same everywhere."""
        w, lim = self.grid.width, 2 * self.grid.half_bins * PHASES
        m = np.clip(np.rint(np.asarray(means, np.float64) * (PHASES / w)), -lim, lim)
        ratio = np.maximum(np.asarray(scales, np.float64) / w, 2.0 ** -8)
        s = np.rint(exactmath.log(ratio) * (STEPS / _LN2))
        return m.astype(np.int64), np.clip(s, self.s_min, self.s_max).astype(np.int64)

    def mass(self, s: int, f: int) -> np.ndarray:
        """The table of (scale index s, phase f), (2 reach + 1,), computed once."""
        key = (int(s), int(f))
        if key not in self._tables:
            w = self.grid.width
            o = np.arange(-self.reach, self.reach + 2, dtype=np.float64)
            edges = (o - 0.5) * w - (f * w) / PHASES
            self._tables[key] = normal_bin_masses(edges / self.scale(s), exactmath.exp)
        return self._tables[key]

    def counts(self, s: int, f: int) -> tuple[np.ndarray, np.ndarray, int]:
        """exact_counts of the whole table (s, f), their prefix sums (a leading 0) and the
        index of its first largest entry, computed once."""
        key = (int(s), int(f))
        if key not in self._counts:
            m = self.mass(s, f)
            c = exactmath.exact_counts(m)
            self._counts[key] = (c, np.concatenate([[0], np.cumsum(c)]), int(np.argmax(m)))
        return self._counts[key]

    def gaussian_table(self, points: np.ndarray, s: np.ndarray) -> np.ndarray:
        """exact_table(gather(points, s)), bit for bit, (..., n_bins): one Gaussian per row,
        normalised on the grid. A row whose bins hold its ladder table's largest entry has
        that entry as its maximum, so its counts are the table's own counts (computed once)
        and its sum a difference of prefix sums; other rows (means far off the grid) take
        exact_table's own route."""
        counts, which, lo, total, held = self._held_rows(points, s)
        n = self.grid.n_bins
        out = np.empty((which.size, n))
        cols = np.arange(n)
        for sl in self._chunks(which.size):
            out[sl] = counts[which[sl, None], lo[sl, None] + cols] / total[sl, None]
        if not held.all():
            far = np.flatnonzero(~held)
            out[far] = exactmath.exact_table(self.gather(points.ravel()[far], s.ravel()[far]))
        return out.reshape(points.shape + (n,))

    def table_entries(self, points: np.ndarray, s: np.ndarray):
        """A lookup for fixed Gaussians (points, s) of shape (K, D): bins (n, D) symbols ->
        (n, K, D), entry [r, k, d] equal bit for bit to gaussian_table(points, s)[k, d] at
        symbol bins[r, d], without building the (K, D, n_bins) rows (the same integer counts
        divided by the same integer sums; rows off the grid from their exact_table rows)."""
        counts, which, lo, total, held = self._held_rows(points, s)
        half = self.grid.half_bins
        far = np.flatnonzero(~held)
        far_rows = exactmath.exact_table(self.gather(points.ravel()[far], s.ravel()[far])) \
            if far.size else None

        def lookup(bins: np.ndarray) -> np.ndarray:
            col = np.broadcast_to(np.asarray(bins, np.int64)[:, None, :] + half,
                                  (len(bins),) + points.shape).reshape(len(bins), -1)
            out = counts[which, lo + col] / total
            if far.size:
                out[:, far] = far_rows[np.arange(far.size), col[:, far]]
            return out.reshape((len(bins),) + points.shape)
        return lookup

    def gather(self, points: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Masses (..., n_bins) of every grid bin for lattice means `points` and ladder
        indices `s` (same shape (...))."""
        stacked, which, b = self._tables_of(points, s)
        out = np.empty((b.size, self.grid.n_bins))
        for sl in self._chunks(b.size):
            out[sl] = self._rows(stacked, which[sl], b[sl])
        return out.reshape(points.shape + (self.grid.n_bins,))

    def mixture_table(self, weights: np.ndarray, points: np.ndarray,
                      s: np.ndarray) -> np.ndarray:
        """exact_table of sum_m weights[..., m] gather(points[..., m], s[..., m]), (...,
        n_bins): products and sums elementwise, components added in index order, computed
        a chunk of rows at a time so that the rows stay in the CPU cache."""
        m = points.shape[-1]
        stacked, which, b = self._tables_of(points, s)
        which, b, w = which.reshape(-1, m), b.reshape(-1, m), weights.reshape(-1, m)
        out = np.empty((len(b), self.grid.n_bins))
        for sl in self._chunks(len(b)):
            acc = self._rows(stacked, which[sl, 0], b[sl, 0]) * w[sl, 0, None]
            for k in range(1, m):
                # a component of weight 0 adds +0 (masses are finite and >= 0): skipped, the
                # same bits; priors' rows have few components above MIN_WEIGHT
                live = np.flatnonzero(w[sl, k])
                if live.size == len(acc):
                    acc += self._rows(stacked, which[sl, k], b[sl, k]) * w[sl, k, None]
                elif live.size:
                    r = live + sl.start
                    acc[live] += self._rows(stacked, which[r, k], b[r, k]) * w[r, k, None]
            out[sl] = exactmath.exact_table(acc)
        return out.reshape(points.shape[:-1] + (self.grid.n_bins,))

    def _held_rows(self, points, s):
        """What gaussian_table's rows are made of, for rows (points, s) of any shape, raveled:
        (the exact counts of the distinct ladder tables they use, stacked; each row's table;
        the table index of its first grid bin; its integer total over the grid's bins;
        whether those bins hold its table's largest entry, i.e. whether the row is those
        counts over that total, bit for bit, as exact_table would make it)."""
        uniq, which, b = self._keys(points, s)
        parts = [self.counts(k // PHASES, k % PHASES) for k in uniq]
        counts = np.stack([c for c, _, _ in parts])
        sums = np.stack([q for _, q, _ in parts])
        peak = np.array([a for _, _, a in parts])[which]
        n = self.grid.n_bins
        lo = self.reach - self.grid.half_bins - b
        held = (lo <= peak) & (peak < lo + n)
        return counts, which, lo, sums[which, lo + n] - sums[which, lo], held

    def _keys(self, points, s):
        """(the distinct table keys s PHASES + f the rows use; each row's; its bin offset b)."""
        b, f = np.divmod(points.ravel(), PHASES)
        uniq, which = np.unique(s.ravel() * PHASES + f, return_inverse=True)
        return uniq, which, b

    def _tables_of(self, points, s):
        """(the distinct tables the rows use, stacked; each row's table; its bin offset b)."""
        uniq, which, b = self._keys(points, s)
        return np.stack([self.mass(k // PHASES, k % PHASES) for k in uniq]), which, b

    def _rows(self, stacked, which, b):
        """Rows of bin masses: bin k of a row with offset b is its table's entry k - b, i.e.
        the n_bins entries from reach - half_bins - b on (copied as whole windows: 10x faster
        than indexing entry by entry)."""
        windows = sliding_window_view(stacked, self.grid.n_bins, axis=1)
        return windows[which, self.reach - self.grid.half_bins - b]

    def _chunks(self, n: int):
        rows = max(1, _ROWS_PER_CHUNK // self.grid.n_bins)
        return (slice(i, i + rows) for i in range(0, n, rows))


@lru_cache(maxsize=8)
def ladder(grid: BinGrid) -> GaussianLadder:
    """The ladder of a grid, shared (its tables are computed once per process)."""
    return GaussianLadder(grid)


class PortableMixture(Categorical):
    """A Gaussian mixture per symbol on a BinGrid, weights, means, scales (..., M), like
    leaves.DiscretisedMixture, with portable tables (see the module docstring). Weights need
    not sum to 1 (they are normalised with the table)."""

    def __init__(self, weights, means, scales, grid: BinGrid = DEFAULT_GRID):
        means = _finite(means, "mixture means")
        scales = _finite(scales, "mixture scales")
        weights = np.asarray(weights, dtype=np.float64)
        if not (weights.shape == means.shape == scales.shape) or means.ndim < 1:
            raise CodecError("mixture weights, means and scales must share a shape (..., M)")
        weights = np.where(np.isfinite(weights) & (weights > 0), weights, 0.0)
        lad = ladder(grid)
        table = lad.mixture_table(weights, *lad.quantise(means, scales))
        self._use_table(table, -grid.half_bins)         # exact_table'd already
        self.grid = grid


def PortableGaussian(mean, std=1.0, grid: BinGrid = DEFAULT_GRID) -> PortableMixture:
    """N(mean, std**2) on a BinGrid: PortableMixture with one component, bit for bit (its
    table from `GaussianLadder.gaussian_table`, several times faster)."""
    mean = _finite(mean, "Gaussian means")
    std = np.broadcast_to(_finite(std, "Gaussian std"), mean.shape)
    lad = ladder(grid)
    out = PortableMixture.from_table(lad.gaussian_table(*lad.quantise(mean, std)),
                                     offset=-grid.half_bins)
    out.grid = grid
    return out


class PortableDiagonalMixture(DiscretisedDiagonalMixture):
    """leaves.DiscretisedDiagonalMixture with portable tables: n vectors (n, D) under one
    mixture of K diagonal Gaussians, coded dimension by dimension; component masses from the
    ladder, the conditional weights with exactmath and summed over components in index order."""

    def __init__(self, weights, means, scales, n: int, grid: BinGrid = DEFAULT_GRID):
        means, scales = _finite(means, "mixture means"), _finite(scales, "mixture scales")
        k, d = means.shape
        if scales.shape != (k, d) or np.shape(weights) != (k,):
            raise CodecError("weights (K,), means and scales (K, D) expected")
        pi = exactmath.exact_table(weights) if k > 1 else np.ones(1)
        self.log_pi = exactmath.log(pi)
        lad = ladder(grid)
        self.mass = lad.gather(*lad.quantise(means, scales))              # (K, D, n_bins)
        self.n, self.D, self.grid = n, d, grid
        self.shape = (n, d)

    def _log(self, x: np.ndarray) -> np.ndarray:
        return exactmath.log(x)

    def _leaf(self, d: int, log_w: np.ndarray) -> Categorical:
        w = exactmath.exp(log_w - log_w.max(axis=1, keepdims=True))       # (n, K)
        table = exactmath.weighted_sum(w, self.mass[:, d])              # components in order
        return Categorical(table, offset=-self.grid.half_bins, exact=True)


class _LadderGaussians(Codec):
    """Vectors z (n, D), dimension d of row r under the ladder Gaussian (points[r, d],
    s[r, d]), normalised on the grid as PortableGaussian's tables (`gaussian_table`); built
    one dimension at a time, so memory is n x n_bins. A push keeps what each row cost
    (`last_bits`, (n, D)), read off the tables it pushed with."""

    def __init__(self, lad: GaussianLadder, points: np.ndarray, s: np.ndarray):
        self.lad, self.points, self.s = lad, points, s
        self.shape = points.shape
        self.last_bits: np.ndarray | None = None

    def _leaf(self, d: int) -> Categorical:
        table = self.lad.gaussian_table(self.points[:, d], self.s[:, d])
        return Categorical.from_table(table, offset=-self.lad.grid.half_bins)

    def push(self, stack, z) -> None:
        bits = np.empty(self.shape)
        for d in reversed(range(self.shape[1])):
            leaf = self._leaf(d)
            leaf.push(stack, z[:, d])
            bits[:, d] = leaf.info_bits(z[:, d])
        self.last_bits = bits

    def pop(self, stack) -> np.ndarray:
        z = np.zeros(self.shape, dtype=np.int64)
        for d in range(self.shape[1]):
            z[:, d] = self._leaf(d).pop(stack)
        return z

    def info_bits(self, z) -> np.ndarray:
        return np.stack([self._leaf(d).info_bits(z[:, d]) for d in range(self.shape[1])], 1)


class BitsBackDiagonalMixture(Codec):
    """n vectors z (n, D) under one mixture of K diagonal Gaussians, with the component coded
    by bits back instead of the dimensions in turn (PortableDiagonalMixture):

        push: pop k ~ q(k | z), push z under component k, push k ~ pi
        pop:  pop k ~ pi, pop z under component k, push k under q(k | z)

    (`codec.core.BitsBack` with the component as the latent). Component k's table in dimension
    d is T_kd = PortableGaussian(means[k, d], scales[k, d]) (ladder-rounded, normalised on the
    grid) and q(k | z) is proportional to pi_k prod_d T_kd(z_d), summed in log space over d in
    index order with exactmath (exact_table'd), so the decoder rebuilds it bit for bit on any
    machine. Net cost per row: -log2 T_k(z) - log2 pi_k + log2 q(k | z) = -log2 sum_k pi_k
    T_k(z), the mixture's own code length up to the tables' rounding, at O(K D) work per row
    for q plus D one-component tables, where PortableDiagonalMixture sums K tables of n_bins
    entries per dimension. A pop needs bits on the stack (start from initial bits)."""

    def __init__(self, weights, means, scales, n: int, grid: BinGrid = DEFAULT_GRID):
        means, scales = _finite(means, "mixture means"), _finite(scales, "mixture scales")
        k, d = means.shape
        if scales.shape != (k, d) or np.shape(weights) != (k,):
            raise CodecError("weights (K,), means and scales (K, D) expected")
        self.pi = exactmath.exact_table(weights) if k > 1 else np.ones(1)
        self.log_pi = exactmath.log(self.pi)
        self.lad = ladder(grid)
        self.points, self.s = self.lad.quantise(means, scales)                 # (K, D)
        self.entries = self.lad.table_entries(self.points, self.s)
        self.n, self.D, self.grid = n, d, grid
        self.shape = (n, d)
        self.last_bits: np.ndarray | None = None

    def for_rows(self, n: int) -> "BitsBackDiagonalMixture":
        """The same mixture for n vectors (shares the tables)."""
        out = copy.copy(self)
        out.n, out.shape, out.last_bits = n, (n, self.D), None
        return out

    def _posterior(self, z: np.ndarray) -> Categorical:
        """q(k | z) for rows z (n, D)."""
        log_t = exactmath.log(self.entries(z))                                # (n, K, D)
        a = self.log_pi + log_t[:, :, 0]
        for d in range(1, self.D):                                            # index order
            a = a + log_t[:, :, d]
        return Categorical(exactmath.exp(a - a.max(axis=1, keepdims=True)), exact=True)

    def _component(self, k: np.ndarray) -> _LadderGaussians:
        return _LadderGaussians(self.lad, self.points[k], self.s[k])

    def _codec(self) -> BitsBack:
        prior = Categorical.from_table(np.tile(self.pi, (self.n, 1)))
        return BitsBack(prior, self._component, self._posterior)

    def push(self, stack, symbols) -> None:
        h = self.grid.half_bins
        z = _check_symbols(symbols, self.shape, -h, h)
        if self.pi.size == 1:                           # one component: nothing to choose
            component = self._component(np.zeros(self.n, dtype=np.int64))
            component.push(stack, z)
            self.last_bits = component.last_bits.sum(axis=1)[:, None]
            return
        codec = self._codec()
        codec.push(stack, z)
        k, component, q = codec.last
        self.last_bits = (component.last_bits.sum(axis=1) + codec.prior.info_bits(k)
                          - q.info_bits(k))[:, None]

    def pop(self, stack) -> np.ndarray:
        if self.pi.size == 1:
            return self._component(np.zeros(self.n, dtype=np.int64)).pop(stack)
        return self._codec().pop(stack)

    def info_bits(self, symbols) -> np.ndarray:
        """Net bits (n, 1) of the last push (of these symbols): the component's, plus its
        choice's, minus those returned by popping it."""
        if self.last_bits is None:
            raise CodecError("info_bits needs a push first (the bits depend on the component "
                             "it popped)")
        return self.last_bits
