"""Leaf codecs: one entropy model per symbol, vectorised over numpy arrays of parameters.

Every leaf sanitises its parameters deterministically (NaN, negative or out-of-range values are
clamped, tables renormalised) so that no input can make constriction fail, and exposes
`info_bits(symbols)`: the cost -log2 p of each symbol under the sanitised model as constriction
quantises it (`coded_bits`: every symbol keeps at least one of 2**24 units, so a far-tail
symbol costs about 24 bits, not the hundreds its float probability says). All models use
`perfect=False` where constriction offers the choice: it is fast and version-stable.

    Bernoulli(p)                        binary pixels, P(x = 1) = p
    Categorical(probs)                  K-way symbols (e.g. 256 sub-pixel values), tables (..., K)
    DiscretisedGaussian(mean, std)      a Gaussian on the latent BinGrid (q(z|x) in ACN)
    DiscretisedMixture(w, means, sc)    a Gaussian mixture per dimension on the same grid (prior)
    DiscretisedDiagonalMixture(...)     a D-dim diagonal Gaussian mixture, dimension by dimension
    Uniform(size)                       integers in [0, size), size < 2**24 (headers, indices)
"""
from __future__ import annotations

import copy

import numpy as np
import constriction

from .core import Codec
from .exactmath import exact_table
from .grid import BinGrid, DEFAULT_GRID
from .normal import normal_bin_masses
from .stack import AnsStack, CodecError

__all__ = ["Bernoulli", "Categorical", "DiscretisedGaussian", "DiscretisedMixture",
           "DiscretisedDiagonalMixture", "Uniform", "BERNOULLI_P_MIN", "CATEGORICAL_FLOOR",
           "coded_bits"]

_models = constriction.stream.model

BERNOULLI_P_MIN = 2.0 ** -16   # p is clamped to [P_MIN, 1 - P_MIN]: a sure pixel costs 2.2e-5 bits
CATEGORICAL_FLOOR = 2.0 ** -16  # probs -> (1 - F) probs + F / K: every symbol stays codable
_MAX_ALPHABET = 1 << 24         # constriction's Uniform and quantisation limit
_TABLE_CHUNK = 1 << 17          # floats per chunk of mixture tables: fits in L2, ~10x faster
_UNITS = 1 << 24                # constriction's Python models quantise probabilities to 24 bits


def coded_bits(p, k: int) -> np.ndarray:
    """-log2 of probability p as constriction's leaky quantiser codes it, alphabet size k.

    Each of the k symbols keeps one of the 2**24 units and the rest is shared in proportion to
    p; exact to rounding (one unit). The float -log2 p would overstate far-tail symbols, which
    a bits-back pop does land on now and then (measured: 0.7 bits/image of phantom gain on
    binarized MNIST, 10,000 images, before this).
    """
    return -np.log2((1.0 + (_UNITS - k) * np.asarray(p, dtype=np.float64)) / _UNITS)


def _finite(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise CodecError(f"{what} must be finite")
    return x


def _check_symbols(x, shape, lo: int, hi: int) -> np.ndarray:
    x = np.asarray(x)
    if x.shape != shape:
        raise CodecError(f"symbols have shape {x.shape}, parameters expect {shape}")
    if x.size and (x.min() < lo or x.max() > hi):
        raise CodecError(f"symbols must lie in [{lo}, {hi}]")
    return x


class Bernoulli(Codec):
    """Binary symbols with P(x = 1) = p, one p per symbol (NaN -> 1/2, clamped to P_MIN)."""

    def __init__(self, p):
        p = np.nan_to_num(np.asarray(p, dtype=np.float64), nan=0.5)
        self.p = np.clip(p, BERNOULLI_P_MIN, 1.0 - BERNOULLI_P_MIN)
        self.shape = self.p.shape

    def push(self, stack: AnsStack, symbols) -> None:
        x = _check_symbols(symbols, self.shape, 0, 1)
        stack.push(x, _models.Bernoulli(perfect=False), self.p.ravel())

    def pop(self, stack: AnsStack) -> np.ndarray:
        return stack.pop(_models.Bernoulli(perfect=False), self.p.ravel()).reshape(self.shape)

    def info_bits(self, symbols) -> np.ndarray:
        x = _check_symbols(symbols, self.shape, 0, 1)
        return coded_bits(np.where(x == 1, self.p, 1.0 - self.p), 2)


def sanitise_table(probs: np.ndarray) -> np.ndarray:
    """Rows of non-negative finite numbers -> normalised tables with floor CATEGORICAL_FLOOR/K.

    NaN, infinite and negative entries count as 0; an all-zero row becomes uniform.
    """
    p = np.asarray(probs, dtype=np.float64)
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    k = p.shape[-1]
    total = p.sum(axis=-1, keepdims=True)
    p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / k)
    return (1.0 - CATEGORICAL_FLOOR) * p + CATEGORICAL_FLOOR / k


def _check_table_shape(probs: np.ndarray) -> np.ndarray:
    if probs.ndim < 1 or not 2 <= probs.shape[-1] < _MAX_ALPHABET:
        raise CodecError(f"probability tables need 2..2**24-1 entries, got {probs.shape}")
    return probs


class Categorical(Codec):
    """Symbols in [0, K) with an explicit probability table per symbol: probs (..., K).

    `exact`: normalise with `exactmath.exact_table` (integer sums) instead of `sanitise_table`
    (float sums), so the same weights give the same table on every machine."""

    def __init__(self, probs, offset: int = 0, exact: bool = False):
        probs = _check_table_shape(np.asarray(probs))
        # symbol s is coded as table index s - offset
        self._use_table(exact_table(probs) if exact else sanitise_table(probs), offset)

    @classmethod
    def from_table(cls, probs: np.ndarray, offset: int = 0) -> "Categorical":
        """A Categorical on tables (..., K) that are already normalised as `exact_table` or
        `sanitise_table` leave them (positive entries summing to 1 up to rounding); used as
        given, so a table computed by a faster route that equals exact_table's bit for bit
        codes exactly as exact=True would."""
        self = cls.__new__(cls)
        self._use_table(_check_table_shape(np.asarray(probs, dtype=np.float64)), offset)
        return self

    def _use_table(self, probs: np.ndarray, offset: int) -> None:
        """Code with the normalised float64 tables `probs` (..., K) as they are."""
        self.probs, self.shape, self.offset = probs, probs.shape[:-1], offset

    def _table(self) -> np.ndarray:
        return self.probs.reshape(-1, self.probs.shape[-1])

    def push(self, stack, symbols) -> None:
        k = self.probs.shape[-1]
        x = _check_symbols(symbols, self.shape, self.offset, self.offset + k - 1)
        stack.push(np.asarray(x) - self.offset, _models.Categorical(perfect=False), self._table())

    def pop(self, stack) -> np.ndarray:
        out = stack.pop(_models.Categorical(perfect=False), self._table())
        return (out.astype(np.int64) + self.offset).reshape(self.shape)

    def info_bits(self, symbols) -> np.ndarray:
        k = self.probs.shape[-1]
        x = _check_symbols(symbols, self.shape, self.offset, self.offset + k - 1)
        idx = (np.asarray(x) - self.offset)[..., None].astype(np.int64)
        return coded_bits(np.take_along_axis(self.probs, idx, axis=-1)[..., 0], k)


class DiscretisedGaussian(Codec):
    """N(mean, std^2) on a BinGrid, truncated to it and renormalised; symbols are bin indices.

    Uses constriction's QuantizedGaussian in units of bins. Means are clipped to twice the grid
    range and std to [width / 16, 2**20 width], so any finite parameters code.
    """

    def __init__(self, mean, std=1.0, grid: BinGrid = DEFAULT_GRID):
        mean = _finite(mean, "Gaussian means")
        std = np.broadcast_to(_finite(std, "Gaussian std"), mean.shape)
        self.grid, self.shape = grid, mean.shape
        w = grid.width
        self.mean = np.clip(mean, -2 * grid.range, 2 * grid.range)
        self.std = np.clip(std, w / 16, w * 2.0 ** 20)

    def _model(self):
        s = self.grid.half_bins
        return _models.QuantizedGaussian(-s, s)

    def push(self, stack, symbols) -> None:
        s = self.grid.half_bins
        x = _check_symbols(symbols, self.shape, -s, s)
        w = self.grid.width
        stack.push(x, self._model(), (self.mean / w).ravel(), (self.std / w).ravel())

    def pop(self, stack) -> np.ndarray:
        w = self.grid.width
        out = stack.pop(self._model(), (self.mean / w).ravel(), (self.std / w).ravel())
        return out.astype(np.int64).reshape(self.shape)

    def table(self) -> np.ndarray:
        """Bin probabilities (..., n_bins) computed in numpy (for analysis)."""
        return _gaussian_table(self.mean[..., None], self.std[..., None],
                               np.ones(self.shape + (1,)), self.grid)

    def info_bits(self, symbols) -> np.ndarray:
        """Cost of each symbol; only its own bin's two edges are evaluated, with the same
        arithmetic as `table()`, so the result equals the table entry bit for bit."""
        s = self.grid.half_bins
        x = _check_symbols(symbols, self.shape, -s, s)
        idx = (np.asarray(x) + s).astype(np.int64)
        edges = self.grid.edges()[np.stack([idx, idx + 1], axis=-1)]          # (..., 2)
        p = normal_bin_masses((edges - self.mean[..., None]) / self.std[..., None])[..., 0]
        return coded_bits(p, self.grid.n_bins)


def _gaussian_table(means, scales, weights, grid: BinGrid) -> np.ndarray:
    """sum_m weights[..., m] * P(bin | N(means[..., m], scales[..., m])), shape (..., n_bins)."""
    edges = grid.edges()
    batch = means.shape[:-1]
    n_rows = int(np.prod(batch, dtype=np.int64))
    mu, sd, wt = (a.reshape(n_rows, -1) for a in (means, scales, weights))
    out = np.empty((n_rows, grid.n_bins))
    rows = max(1, _TABLE_CHUNK // (mu.shape[1] * edges.size))
    for i in range(0, n_rows, rows):
        m, s, w = mu[i:i + rows, :, None], sd[i:i + rows, :, None], wt[i:i + rows, :, None]
        mass = normal_bin_masses((edges - m) / s)            # (rows, M, n_bins)
        out[i:i + rows] = np.einsum("rmb,rm->rb", mass, w[..., 0])
    return out.reshape(batch + (grid.n_bins,))


class DiscretisedMixture(Codec):
    """A Gaussian mixture per symbol on a BinGrid: weights, means, scales of shape (..., M).

    Weights are sanitised like a probability table (need not sum to 1); scales are clipped to
    [width / 16, 2**20 width]. The table of bin masses is coded as a Categorical.
    """

    def __init__(self, weights, means, scales, grid: BinGrid = DEFAULT_GRID):
        means = _finite(means, "mixture means")
        scales = _finite(scales, "mixture scales")
        if not (np.shape(weights) == means.shape == scales.shape) or means.ndim < 1:
            raise CodecError("mixture weights, means and scales must share a shape (..., M)")
        w = grid.width
        weights = sanitise_table(weights) if means.shape[-1] > 1 else np.ones(means.shape)
        table = _gaussian_table(np.clip(means, -2 * grid.range, 2 * grid.range),
                                np.clip(scales, w / 16, w * 2.0 ** 20), weights, grid)
        self.grid = grid
        self._categorical = Categorical(table, offset=-grid.half_bins)
        self.shape = self._categorical.shape

    @property
    def probs(self) -> np.ndarray:
        return self._categorical.probs

    def push(self, stack, symbols) -> None:
        self._categorical.push(stack, symbols)

    def pop(self, stack) -> np.ndarray:
        return self._categorical.pop(stack)

    def info_bits(self, symbols) -> np.ndarray:
        return self._categorical.info_bits(symbols)


class Uniform(Codec):
    """Integers in [0, size) with size per symbol (1 <= size < 2**24); size-1 symbols cost 0."""

    def __init__(self, size):
        size = np.asarray(size)
        if size.dtype.kind not in "iu" or (size.size and (size.min() < 1
                                                          or size.max() >= _MAX_ALPHABET)):
            raise CodecError("Uniform sizes must be integers in [1, 2**24)")
        self.size = size.astype(np.int64)
        self.shape = self.size.shape
        self._coded = self.size.ravel() > 1  # constriction cannot code a one-symbol alphabet

    def push(self, stack, symbols) -> None:
        x = np.asarray(symbols)
        if x.shape != self.shape or (x.size and (x.min() < 0 or np.any(x >= self.size))):
            raise CodecError("Uniform symbols must lie in [0, size)")
        stack.push(x.ravel()[self._coded], _models.Uniform(),
                   self.size.ravel()[self._coded].astype(np.int32))

    def pop(self, stack) -> np.ndarray:
        out = np.zeros(self.size.size, dtype=np.int64)
        out[self._coded] = stack.pop(_models.Uniform(),
                                     self.size.ravel()[self._coded].astype(np.int32))
        return out.reshape(self.shape)

    def info_bits(self, symbols) -> np.ndarray:
        return np.log2(self.size.astype(np.float64)) + 0 * np.asarray(symbols)


class DiscretisedDiagonalMixture(Codec):
    """n vectors z (n, D) from one mixture of K diagonal Gaussians on a BinGrid.

    Coded one dimension at a time, exactly: p(z) = prod_d p(z_d | z_<d) with
    p(z_d | z_<d) = sum_k w_k(z_<d) P_kd(z_d) and w_k proportional to pi_k prod_{d'<d} P_kd'(z_d'),
    where P_kd is component k's bin mass in dimension d. `push` and `pop` build the conditional
    tables with the same operations in the same order, so they agree bit for bit.
    """

    def __init__(self, weights, means, scales, n: int, grid: BinGrid = DEFAULT_GRID):
        means, scales = _finite(means, "mixture means"), _finite(scales, "mixture scales")
        k, d = means.shape
        if scales.shape != (k, d) or np.shape(weights) != (k,):
            raise CodecError("weights (K,), means and scales (K, D) expected")
        w = grid.width
        self.log_pi = np.log(sanitise_table(weights) if k > 1 else np.ones(1))
        mass = _gaussian_table(np.clip(means, -2 * grid.range, 2 * grid.range)[..., None],
                               np.clip(scales, w / 16, w * 2.0 ** 20)[..., None],
                               np.ones((k, d, 1)), grid)                  # (K, D, n_bins)
        self.mass = mass
        self.n, self.D, self.grid = n, d, grid
        self.shape = (n, d)

    def for_rows(self, n: int) -> "DiscretisedDiagonalMixture":
        """The same mixture for n vectors (shares the tables)."""
        out = copy.copy(self)
        out.n, out.shape = n, (n, self.D)
        return out

    def _leaf(self, d: int, log_w: np.ndarray) -> Categorical:
        w = np.exp(log_w - log_w.max(axis=1, keepdims=True))               # (n, K)
        return Categorical(w @ self.mass[:, d, :], offset=-self.grid.half_bins)

    def _log(self, x: np.ndarray) -> np.ndarray:
        return np.log(x)

    def _update(self, log_w, d, z_d):
        """log w_k after z_d: the log of each component's mass at the n symbols only (a log
        table of all K x D x n_bins masses would double the memory of a large p(z))."""
        mass = self.mass[:, d, z_d + self.grid.half_bins].T                # (n, K)
        return log_w + self._log(np.maximum(mass, 1e-300))

    def _leaves(self, z):
        log_w = np.broadcast_to(self.log_pi, (self.n, self.log_pi.size))
        for d in range(self.D):
            yield self._leaf(d, log_w)
            log_w = self._update(log_w, d, z[:, d])

    def push(self, stack, symbols) -> None:
        z = _check_symbols(symbols, self.shape, -self.grid.half_bins, self.grid.half_bins)
        leaves = list(self._leaves(z))
        for d in reversed(range(self.D)):
            leaves[d].push(stack, z[:, d])

    def pop(self, stack) -> np.ndarray:
        z = np.zeros(self.shape, dtype=np.int64)
        log_w = np.broadcast_to(self.log_pi, (self.n, self.log_pi.size))
        for d in range(self.D):
            z[:, d] = self._leaf(d, log_w).pop(stack)
            log_w = self._update(log_w, d, z[:, d])
        return z

    def info_bits(self, symbols) -> np.ndarray:
        z = _check_symbols(symbols, self.shape, -self.grid.half_bins, self.grid.half_bins)
        return np.stack([leaf.info_bits(z[:, d]) for d, leaf in enumerate(self._leaves(z))], 1)
