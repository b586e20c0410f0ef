"""The unconditional prior p(z): a diagonal-covariance Gaussian mixture fitted by EM (numpy).

p(z) codes the latent of an image that has no neighbour to condition on (the first image of
a tour). It is fitted to the training codes c by EM, then convolved with the posterior noise
N(0, I) (variances + 1), so it models the aggregate posterior of z = c + eps. The number of
components is the candidate with the best mean log-likelihood of validation z samples.
All log densities are in nats.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DiagonalGMM", "fit_gmm", "select_gmm"]

_LOG_2PI = math.log(2 * math.pi)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


@dataclass
class DiagonalGMM:
    weights: np.ndarray     # (K,) summing to 1
    means: np.ndarray       # (K, D)
    variances: np.ndarray   # (K, D)

    def joint_log_prob(self, x: np.ndarray) -> np.ndarray:
        """log w_k + log N(x; mu_k, diag var_k): x (N, D) -> (N, K)."""
        inv = 1.0 / self.variances                                          # (K, D)
        quad = (x * x) @ inv.T - 2.0 * x @ (self.means * inv).T + np.sum(self.means ** 2 * inv, 1)
        log_det = np.sum(np.log(self.variances), axis=1)                    # (K,)
        return np.log(self.weights) - 0.5 * (x.shape[1] * _LOG_2PI + log_det + quad)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """log p(x): (N, D) -> (N,)."""
        return _logsumexp(self.joint_log_prob(np.asarray(x, dtype=np.float64)), axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws (n, D) float64: a component by weight, then its Gaussian."""
        k = rng.choice(len(self.weights), size=n, p=self.weights / self.weights.sum())
        eps = rng.standard_normal((n, self.means.shape[1]))
        return self.means[k] + np.sqrt(self.variances[k]) * eps

    def convolved(self, noise_var: float = 1.0) -> "DiagonalGMM":
        """The mixture of x + noise, noise ~ N(0, noise_var I)."""
        return DiagonalGMM(self.weights, self.means, self.variances + noise_var)

    def to_dict(self) -> dict:
        """Tensors only, so model files load with torch.load(weights_only=True)."""
        return {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k)))
                for k in ("weights", "means", "variances")}

    @classmethod
    def from_dict(cls, d: dict) -> "DiagonalGMM":
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in ("weights", "means", "variances")))


def _seed_means(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each new mean a data point drawn with probability ~ squared distance."""
    means = [x[rng.integers(len(x))]]
    d2 = np.sum((x - means[0]) ** 2, axis=1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1.0 / len(x))
        means.append(x[rng.choice(len(x), p=p)])
        d2 = np.minimum(d2, np.sum((x - means[-1]) ** 2, axis=1))
    return np.array(means)


def fit_gmm(x: np.ndarray, k: int, seed: int = 0, max_iter: int = 200, tol: float = 1e-6,
            var_floor: float = 1e-4) -> tuple[DiagonalGMM, float]:
    """EM for a k-component diagonal GMM on x (N, D); returns (gmm, mean log-lik in nats).

    Stops when the mean log-likelihood improves by less than `tol` nats per point.
    """
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(x)))
    var0 = np.maximum(x.var(axis=0), var_floor)
    gmm = DiagonalGMM(np.full(k, 1.0 / k), _seed_means(x, k, rng), np.tile(var0, (k, 1)))
    prev = -np.inf
    for _ in range(max_iter):
        joint = gmm.joint_log_prob(x)                                       # (N, K)
        norm = _logsumexp(joint, axis=1)                                    # (N,)
        ll = float(norm.mean())
        resp = np.exp(joint - norm[:, None])                                # (N, K)
        nk = resp.sum(axis=0) + 1e-10
        means = (resp.T @ x) / nk[:, None]
        var = np.maximum((resp.T @ (x * x)) / nk[:, None] - means ** 2, var_floor)
        gmm = DiagonalGMM(nk / nk.sum(), means, var)
        if ll - prev < tol:
            break
        prev = ll
    return gmm, float(gmm.log_prob(x).mean())


def select_gmm(train_codes: np.ndarray, valid_codes: np.ndarray, candidates=(1, 2, 4, 8, 16, 32),
               seed: int = 0, max_points: int = 50000, samples: int = 4):
    """Fit each candidate size on the training codes, keep the best on validation z samples.

    The returned mixture is convolved with N(0, I): a prior for z = c + eps. At most
    `max_points` training codes (a seeded subset) are used to fit. Returns (gmm, report) with
    report = {components: mean validation log p(z), nats per code}.
    """
    rng = np.random.default_rng(seed)
    train = np.asarray(train_codes, dtype=np.float64)
    if len(train) > max_points:
        train = train[rng.choice(len(train), max_points, replace=False)]
    valid = np.repeat(np.asarray(valid_codes, dtype=np.float64), samples, axis=0)
    z_valid = valid + rng.standard_normal(valid.shape)
    best, report = None, {}
    for k in candidates:
        if k > len(train):
            continue
        gmm = fit_gmm(train, k, seed=seed)[0].convolved(1.0)
        report[k] = float(gmm.log_prob(z_valid).mean())
        if best is None or report[k] > report[best[0]]:
            best = (k, gmm)
    return best[1], report
