"""ACN: encoder q(z|x) = N(c, I), prior p(z|c_hat), decoder r(x|z); the loss in nats/image."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig
from .encoder import Encoder
from .pixelcnn import GatedPixelCNN
from .prior import Prior, kl_estimate

__all__ = ["ACN", "LossTerms"]


class LossTerms(NamedTuple):
    """Per-image terms, each (B,), in nats: loss = kl + recon."""
    kl: torch.Tensor      # single-sample estimate of KL(q(z|x) || p(z|c_hat))
    recon: torch.Tensor   # -log r(x|z)
    code: torch.Tensor    # c (B, D), the encoder output

    @property
    def total(self) -> torch.Tensor:
        return self.kl + self.recon


class ACN(nn.Module):
    """The three networks and the config they were built from."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.prior = Prior(cfg.latent_dim, cfg.prior_components, cfg.prior_hidden,
                           cfg.prior_layers, cfg.scale_floor)
        self.decoder = GatedPixelCNN(cfg)

    def loss(self, x: torch.Tensor, c_hat: torch.Tensor, code: torch.Tensor | None = None,
             eps: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> LossTerms:
        """x (B, C, H, W) raw pixels, c_hat (B, D) neighbour codes -> LossTerms (nats/image).

        `code`: c if already computed (training computes it first to find c_hat); `eps` or
        `generator`: the posterior noise, for reproducible estimates. Under an outer
        torch.autocast (training with --precision bf16) only the encoder's and decoder's
        layers run in low precision: the prior, the KL and the likelihood are float32.
        """
        c = self.encoder(x) if code is None else code                    # (B, D)
        with torch.autocast(x.device.type, enabled=False):   # prior and KL always in float32
            kl, z = kl_estimate(c.float(), self.prior(c_hat.detach().float()), eps=eps,
                                generator=generator)
        recon = self.decoder.nll(x, self.decoder(x, z).float())          # (B,)
        return LossTerms(kl, recon, c)

    @torch.no_grad()
    def codes(self, x, batch: int = 256) -> np.ndarray:
        """Encoder means c (N, D) float32 of images x (N, C, H, W) uint8 (numpy, or a tensor
        on the model's device), in batches of `batch`. Batched for speed: the coder, whose
        codes must not depend on batching, computes them one image at a time instead
        (protocol.SetTables)."""
        x = torch.as_tensor(x)
        out = [self.encoder(x[i:i + batch]).float().cpu().numpy() for i in range(0, len(x), batch)]
        return np.concatenate(out) if out else np.zeros((0, self.config.latent_dim), np.float32)
