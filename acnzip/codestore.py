"""The code store C of Algorithm 1: one code per training image and its K-nearest-neighbour draw.

Neighbours are found by exact L2 search with faiss over the whole store every batch
(`faiss.knn`, the brute-force search behind IndexFlatL2). Measured on 2 CPU cores, one thread:
50,000 x 16 store, 64 queries, K+1 = 6: about 11 ms per batch, the same as rebuilding an
IndexFlatL2 and searching it, and about 1% of a `cpu`-config training step. So there is no
stale index to refresh: every draw sees the codes as they are now.

On a GPU (`search_device="cuda"`) the same exact search runs there instead (torch.cdist +
topk over a device copy of the store): a faiss CPU search of 256 queries would otherwise take
longer than the GPU's whole training step. Ties may resolve differently from faiss; training
does not need the two to agree, and nothing the coder computes comes from this store.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["CodeStore"]


class CodeStore:
    """codes (N, D) float32, initialised N(0, 1) from `seed`."""

    def __init__(self, n: int, dim: int, seed=0, search_device: str | torch.device = "cpu"):
        """seed: anything np.random.default_rng accepts (an int, a SeedSequence).
        search_device: "cpu" searches with faiss; a CUDA device searches a copy held there."""
        self.codes = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
        self.search_device = torch.device(search_device)
        self._mirror: torch.Tensor | None = None        # device copy of codes (CUDA search)

    @classmethod
    def from_codes(cls, codes: np.ndarray, search_device: str | torch.device = "cpu"
                   ) -> "CodeStore":
        store = cls(0, np.shape(codes)[1], search_device=search_device)
        store.codes = np.array(codes, dtype=np.float32)
        return store

    def set_codes(self, codes: np.ndarray) -> None:
        """Replace the whole store (a checkpoint's codes)."""
        self.codes = np.array(codes, dtype=np.float32)
        self._mirror = None

    def __len__(self) -> int:
        return len(self.codes)

    def update(self, indices: np.ndarray, codes: np.ndarray) -> None:
        """C[indices] <- codes (B, D)."""
        self.codes[np.asarray(indices)] = np.asarray(codes, dtype=np.float32)
        if self._mirror is not None:
            self._mirror[torch.from_numpy(np.asarray(indices)).to(self.search_device)] = \
                torch.from_numpy(np.asarray(codes, dtype=np.float32)).to(self.search_device)

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
        ids = self._knn(codes, k + extra)                                  # (B, k + extra)
        if exclude is None:
            return ids
        keep = ids != np.asarray(exclude)[:, None]                         # own index -> False
        first = np.argsort(~keep, axis=1, kind="stable")[:, :k]            # first k kept
        return np.take_along_axis(ids, first, axis=1)

    def _knn(self, codes: np.ndarray, k: int) -> np.ndarray:
        """Ids (B, k) int64 of the k nearest stored codes by exact L2 distance."""
        if self.search_device.type == "cpu":
            import faiss          # here, so GPU training runs where only torch is installed
            return faiss.knn(codes, self.codes, k)[1]
        if self._mirror is None:
            self._mirror = torch.from_numpy(self.codes).to(self.search_device)
        q = torch.from_numpy(codes).to(self.search_device)
        d2 = torch.cdist(q, self._mirror, compute_mode="donot_use_mm_for_euclid_dist")
        return d2.topk(k, dim=1, largest=False, sorted=True).indices.cpu().numpy()

    def sample_neighbours(self, codes: np.ndarray, indices: np.ndarray | None, k: int,
                          rng: np.random.Generator) -> np.ndarray:
        """c_hat (B, D): for each query, a code drawn uniformly from its K nearest stored codes,
        never the one stored at the query's own index (`indices`, or None for outside queries).
        """
        ids = self.nearest(codes, k, exclude=indices)                     # (B, k)
        pick = rng.integers(0, ids.shape[1], size=len(ids))
        return self.codes[ids[np.arange(len(ids)), pick]]
