"""Greedy nearest-unvisited-neighbour tour through the codes (the order images are coded in).

From the start index, repeatedly move to the nearest unvisited code; ties go to the lowest
index. "Nearest" is decided by one canonical distance, the float64 squared L2 distance of the
float32 codes summed over dimensions in index order (`_sqdist`), so `greedy_tour` and the
O(N^2) `greedy_tour_reference` return identical tours.

`greedy_tour` takes candidates from faiss (float32, approximate up to rounding) and accepts
the best unvisited candidate only if no code outside the candidate list can be as near:
faiss returns the k smallest of its own distances, which differ from the canonical ones by at
most `_faiss_error`, so the winner is certain when its canonical distance is below the k-th
faiss distance minus that bound. Otherwise it searches again among the unvisited codes only,
doubling k until certain. Exact duplicates of the current code are taken first, lowest index
first (their distance is exactly 0), which keeps many identical codes from going quadratic.
"""
from __future__ import annotations

import faiss
import numpy as np

__all__ = ["greedy_tour", "greedy_tour_reference", "tour_cost"]


def _sqdist(cols: np.ndarray, rows: np.ndarray | None, q: np.ndarray) -> np.ndarray:
    """Canonical squared distances from q (D,) to points `rows` of cols (D, N) float64.

    Element-wise operations in a fixed order, so a value never depends on which rows are asked.
    """
    acc = np.zeros(cols.shape[1] if rows is None else len(rows))
    for j in range(cols.shape[0]):
        t = (cols[j] if rows is None else cols[j, rows]) - q[j]
        acc += t * t
    return acc


def _prepare(codes) -> tuple[np.ndarray, np.ndarray]:
    """codes (N, D) -> (float32 (N, D) contiguous, float64 columns (D, N))."""
    x = np.ascontiguousarray(codes, dtype=np.float32)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError("codes must be a finite (N, D) array")
    return x, np.ascontiguousarray(x.T, dtype=np.float64)


def greedy_tour_reference(codes, start: int = 0) -> np.ndarray:
    """O(N^2 D) greedy tour, the definition: perm (N,) int64, perm[t] = t-th code visited."""
    x, cols = _prepare(codes)
    n = len(x)
    visited = np.zeros(n, dtype=bool)
    perm = np.empty(n, dtype=np.int64)
    cur = start
    for t in range(n):
        perm[t], visited[cur] = cur, True
        if t + 1 < n:
            d = _sqdist(cols, None, cols[:, cur])
            d[visited] = np.inf
            cur = int(np.argmin(d))                      # first minimum = lowest index
    return perm


def _faiss_error(x: np.ndarray) -> float:
    """Bound on |faiss float32 squared distance - canonical distance| for any pair of rows.

    faiss computes |a|^2 + |b|^2 - 2 a.b (or sum (a-b)^2) in float32: each term errs by at most
    about D u |a| |b| (u = 2^-24), so 8 (D + 4) u max|a|^2 covers it with room to spare.
    """
    u = 2.0 ** -24
    r2 = float(np.max(np.sum(x.astype(np.float64) ** 2, axis=1)))
    return 8 * (x.shape[1] + 4) * u * r2 + 1e-300


def _best(cols, cand, cur, visited, kth, certain_anyway, err):
    """Best unvisited candidate if provably the global nearest unvisited, else None."""
    cand = cand[(cand >= 0) & ~visited[np.maximum(cand, 0)]]
    if len(cand) == 0:
        return None
    d = _sqdist(cols, cand, cols[:, cur])
    m = d.min()
    if certain_anyway or m < kth - err:
        return int(cand[d == m].min())
    return None


class _Unvisited:
    """faiss search restricted to the unvisited codes; the subset is rebuilt once half of it
    has been visited, so each search costs O(unvisited) and rebuilds O(N log N) in all."""

    def __init__(self, x: np.ndarray, visited: np.ndarray, k: int):
        self.x, self.visited, self.k = x, visited, k
        self._rebuild()

    def _rebuild(self) -> None:
        self.ids = np.flatnonzero(~self.visited)
        self.sub, self.stale = self.x[self.ids], 0

    def mark_visited(self) -> None:
        self.stale += 1
        if 2 * self.stale > len(self.ids):
            self._rebuild()

    def nearest(self, cols: np.ndarray, cur: int, err: float) -> int:
        k = min(self.k, len(self.ids))
        while True:
            dist, j = faiss.knn(self.x[cur:cur + 1], self.sub, k)          # (1, k)
            best = _best(cols, self.ids[j[0]], cur, self.visited, dist[0, -1],
                         k == len(self.ids), err)
            if best is not None:
                return best
            k = min(2 * k, len(self.ids))


class _Duplicates:
    """Exact duplicate rows grouped; next_unvisited gives the lowest unvisited twin of a row."""

    def __init__(self, x: np.ndarray, visited: np.ndarray):
        _, group = np.unique(x, axis=0, return_inverse=True)
        self.group = group.ravel()
        self.members = np.argsort(self.group, kind="stable")                # by group, then id
        self.ptr = np.searchsorted(self.group[self.members], np.arange(self.group.max() + 1))
        self.end = np.append(self.ptr[1:], len(x))
        self.visited = visited

    def next_unvisited(self, i: int) -> int | None:
        g = self.group[i]
        while self.ptr[g] < self.end[g] and self.visited[self.members[self.ptr[g]]]:
            self.ptr[g] += 1
        return int(self.members[self.ptr[g]]) if self.ptr[g] < self.end[g] else None


def greedy_tour(codes, start: int = 0, k: int = 32) -> np.ndarray:
    """Greedy tour, identical to greedy_tour_reference: perm (N,) int64.

    k: faiss candidates per code (more: fewer fallback searches, more memory N x k).
    """
    x, cols = _prepare(codes)
    n = len(x)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if not 0 <= start < n:
        raise ValueError(f"start {start} is not an index of {n} codes")
    err, kk = _faiss_error(x), min(k + 1, n)
    dist, nbr = faiss.knn(x, x, kk)                                          # (N, kk)
    visited = np.zeros(n, dtype=bool)
    twins, unvisited = _Duplicates(x, visited), None
    perm, cur = np.empty(n, dtype=np.int64), start
    for t in range(n):
        perm[t], visited[cur] = cur, True
        if unvisited is not None:
            unvisited.mark_visited()
        if t + 1 == n:
            break
        nxt = twins.next_unvisited(cur)
        if nxt is None:
            nxt = _best(cols, nbr[cur], cur, visited, dist[cur, -1], kk == n, err)
        if nxt is None:
            unvisited = unvisited or _Unvisited(x, visited, max(k, 1))
            nxt = unvisited.nearest(cols, cur, err)
        cur = nxt
    return perm


def tour_cost(codes, perm: np.ndarray) -> np.ndarray:
    """Canonical squared distance of each step of the tour: (N - 1,) float64."""
    _, cols = _prepare(codes)
    return np.array([_sqdist(cols, np.array([b]), cols[:, a])[0]
                     for a, b in zip(perm[:-1], perm[1:])])
