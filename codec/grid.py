"""The uniform bin grid on which continuous latents are discretised for ANS coding.

Symbol k (an integer in [-half_bins, half_bins]) stands for the bin [(k - 1/2) w, (k + 1/2) w]
of width w = `width`, centred on k * w. The grid spans [-range, range] plus half a bin each side.

Default: width 1/64, range 8 (1025 bins). Measured against the continuous KL (scipy quadrature,
see docs/codec.md): for a unit-variance Gaussian posterior against 8-component mixtures with
scales log-uniform in [0.05, 2], |discrete - continuous| <= 0.001 nats/dim; against a single
Gaussian of scale 0.3, <= 0.007; of scale 3, <= 0.008 (tail mass beyond the range).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BinGrid", "DEFAULT_GRID"]


@dataclass(frozen=True)
class BinGrid:
    width: float = 1.0 / 64
    range: float = 8.0

    def __post_init__(self):
        if not (self.width > 0 and self.range > 0 and np.isfinite(self.width * self.range)):
            raise ValueError(f"bad bin grid: width={self.width}, range={self.range}")

    @property
    def half_bins(self) -> int:
        return int(round(self.range / self.width))

    @property
    def n_bins(self) -> int:
        return 2 * self.half_bins + 1

    def edges(self) -> np.ndarray:
        """All n_bins + 1 bin edges, in latent units, float64."""
        k = np.arange(-self.half_bins, self.half_bins + 2, dtype=np.float64)
        return (k - 0.5) * self.width

    def index(self, z: np.ndarray) -> np.ndarray:
        """Symbol of the bin containing z (clipped to the grid), int64."""
        k = np.rint(np.asarray(z, dtype=np.float64) / self.width)
        return np.clip(k, -self.half_bins, self.half_bins).astype(np.int64)

    def value(self, k: np.ndarray) -> np.ndarray:
        """Centre of bin k, float64."""
        return np.asarray(k, dtype=np.float64) * self.width


DEFAULT_GRID = BinGrid()
