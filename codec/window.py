"""A Gaussian coded on a window of its grid: the bins within a fixed distance of its mean.

Why. A table over the whole grid gives every bin at least the coder's smallest probability
(2**-24: constriction's leaky quantisation, and exactmath's tables alike), so a grid of n bins
hands about n / 2**24 of the mass to its far tails. Popping a posterior sample there is rare but
ruinous: on a grid of 5,505 bins (the range that held 8-bit MNIST's codes) one pop in 3,000
returns a latent tens of standard deviations from the mean (measured: 34 of 100,000 pops from
random bits beyond 6 standard deviations; E[eps^2] = 1.22 instead of 1), and the decoder then
pays for a latent it was never trained on. Restricted to the bins within 8 of the mean (8
standard deviations of a unit-variance posterior), the mass the window leaves out is below
1e-15 and the leak stays inside it.

    WindowedGaussian(mean, std, grid, window=8.0, portable=False)

Symbols are bin indices of `grid`, as for leaves.DiscretisedGaussian. Row r codes the offset
z - k_r from its centre bin k_r = rint(mean / width), moved inside the grid where the window
would cross an edge, under N(mean - k_r width, std^2) on the window's own grid (width, window):
with leaves.DiscretisedGaussian, or portable.PortableGaussian when `portable` (the same table
on every machine: k_r and the offset mean are correctly rounded float64 operations).

Guarantees: pop returns symbols inside each row's window; push refuses a symbol outside it
(CodecError: damaged data); info_bits is the cost push pays.
"""
from __future__ import annotations

import numpy as np

from .core import Codec
from .grid import DEFAULT_GRID, BinGrid
from .leaves import DiscretisedGaussian, _finite
from .portable import PortableGaussian
from .stack import AnsStack, CodecError

__all__ = ["WindowedGaussian", "DEFAULT_WINDOW"]

DEFAULT_WINDOW = 8.0     # half-width of the window, in latent units


class WindowedGaussian(Codec):
    """N(mean, std^2) per symbol on `grid`, restricted to the bins within `window` of the bin
    nearest its mean (see the module docstring)."""

    def __init__(self, mean, std=1.0, grid: BinGrid = DEFAULT_GRID, window: float = DEFAULT_WINDOW,
                 portable: bool = False):
        mean = _finite(mean, "Gaussian means")
        w, s = grid.width, grid.half_bins
        if not (np.isfinite(window) and window >= w):
            raise CodecError(f"a posterior window must be at least one bin wide: {window}")
        reach = min(int(round(window / w)), s)                 # bins each side of the centre
        self.grid, self.window = grid, BinGrid(w, reach * w)
        self.shape = mean.shape
        self.centre = np.clip(np.rint(np.clip(mean / w, -2.0 * s, 2.0 * s)),
                              reach - s, s - reach).astype(np.int64)
        leaf = PortableGaussian if portable else DiscretisedGaussian
        self.inner = leaf(mean - self.centre * w, std, self.window)

    def _offsets(self, symbols) -> np.ndarray:
        z = np.asarray(symbols)
        if z.shape != self.shape or z.dtype.kind not in "iu":
            raise CodecError(f"expected integer symbols of shape {self.shape}")
        u = z.astype(np.int64) - self.centre
        if u.size and np.abs(u).max() > self.window.half_bins:
            raise CodecError("a latent lies outside its posterior's window (damaged data)")
        return u

    def push(self, stack: AnsStack, symbols) -> None:
        self.inner.push(stack, self._offsets(symbols))

    def pop(self, stack: AnsStack) -> np.ndarray:
        return np.asarray(self.inner.pop(stack), dtype=np.int64).reshape(self.shape) + self.centre

    def info_bits(self, symbols) -> np.ndarray:
        return self.inner.info_bits(self._offsets(symbols))
