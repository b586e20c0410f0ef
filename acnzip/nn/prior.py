"""The ACN prior p(z|c_hat): an MLP giving a Gaussian mixture per latent dimension.

All log densities here are in nats. The mixture factorises over the D dimensions; each
dimension has M components (weights from a softmax, means, scales > 0).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MixtureParams", "Prior", "mixture_log_prob", "posterior_log_prob",
           "unit_gaussian_log_prob", "kl_estimate"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class MixtureParams(NamedTuple):
    """Per-dimension Gaussian mixture; every field (B, D, M)."""
    logits: torch.Tensor   # unnormalised log weights (softmax over M)
    means: torch.Tensor
    scales: torch.Tensor   # standard deviations, >= the floor

    @property
    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)


class Prior(nn.Module):
    """MLP c_hat (B, D) -> MixtureParams, after the ACN paper.

    `layers` hidden layers of `hidden` tanh units; the input feeds every hidden layer (skip
    connections) and every hidden layer feeds the output layer.
    """

    def __init__(self, latent_dim: int, components: int, hidden: int = 512, layers: int = 3,
                 scale_floor: float = 1e-3):
        super().__init__()
        self.D, self.M, self.floor = latent_dim, components, scale_floor
        self.from_input = nn.ModuleList(nn.Linear(latent_dim, hidden) for _ in range(layers))
        self.from_below = nn.ModuleList(nn.Linear(hidden, hidden, bias=False)
                                        for _ in range(layers - 1))
        self.out = nn.Linear(hidden * layers, latent_dim * components * 3)

    def forward(self, c_hat: torch.Tensor) -> MixtureParams:
        """c_hat (B, D) -> mixture parameters, each (B, D, M)."""
        hiddens, h = [], None
        for i, lin in enumerate(self.from_input):
            pre = lin(c_hat) if h is None else lin(c_hat) + self.from_below[i - 1](h)
            h = torch.tanh(pre)                                  # (B, hidden)
            hiddens.append(h)
        raw = self.out(torch.cat(hiddens, dim=1))                # (B, D*M*3)
        raw = raw.view(-1, self.D, self.M, 3)
        scales = F.softplus(raw[..., 2]) + self.floor
        return MixtureParams(raw[..., 0], raw[..., 1], scales)


def mixture_log_prob(z: torch.Tensor, p: MixtureParams) -> torch.Tensor:
    """log p(z) in nats, summed over dimensions: z (B, D) -> (B,)."""
    log_w = torch.log_softmax(p.logits, dim=-1)                  # (B, D, M)
    u = (z.unsqueeze(-1) - p.means) / p.scales                   # (B, D, M)
    log_n = -0.5 * u * u - torch.log(p.scales) - _HALF_LOG_2PI
    return torch.logsumexp(log_w + log_n, dim=-1).sum(-1)        # (B,)


def posterior_log_prob(eps: torch.Tensor) -> np.ndarray:
    """log q(z | x) = log N(c + eps; c, I) in nats per row, float64 numpy (N,): the posterior's
    density at the z it drew, which only eps decides."""
    e = eps.double().cpu().numpy()
    return -0.5 * (e ** 2 + 2 * _HALF_LOG_2PI).sum(1)


def unit_gaussian_log_prob(z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """log N(z; c, I) in nats: z, c (B, D) -> (B,)."""
    return (-0.5 * (z - c) ** 2 - _HALF_LOG_2PI).sum(-1)


def kl_estimate(c: torch.Tensor, p: MixtureParams, eps: torch.Tensor | None = None,
                generator: torch.Generator | None = None):
    """Single-sample Monte-Carlo estimate of KL(N(c, I) || p) in nats; returns (kl (B,), z (B, D)).

    z = c + eps with eps ~ N(0, I) (reparameterised, so gradients reach c), and the estimate is
    log q(z) - log p(z) at that z. Its expectation over eps is exactly the KL (unbiased), and it
    is the net bits-back cost of coding that z, which is why the same z feeds the decoder.
    """
    if eps is None:
        eps = torch.randn(c.shape, generator=generator).to(c.device, c.dtype)
    z = c + eps                                                  # (B, D)
    return unit_gaussian_log_prob(z, c) - mixture_log_prob(z, p), z
