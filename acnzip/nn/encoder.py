"""VGG-style convolutional encoder: image -> code c (B, D); q(z|x) = N(c, I)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig

__all__ = ["Encoder", "scale_pixels"]


def scale_pixels(x: torch.Tensor, binary: bool) -> torch.Tensor:
    """Raw pixel values ({0,1} or 0..255) -> [-1, 1]; floats keep their dtype (and gradient)."""
    x = x if x.is_floating_point() else x.float()
    return 2.0 * x - 1.0 if binary else x / 127.5 - 1.0


class Encoder(nn.Module):
    """3x3 convs + ReLU (stride 2 where the config says) then a linear map to D.

    The posterior has unit variance, so c alone is the code the store and the tour use.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.binary = cfg.binary
        layers, c_in, h, w = [], cfg.channels, cfg.height, cfg.width
        for c_out, stride in zip(cfg.encoder_channels, cfg.encoder_strides):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU()]
            c_in, h, w = c_out, (h - 1) // stride + 1, (w - 1) // stride + 1
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in * h * w, cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) raw pixels -> c (B, D)."""
        feats = self.convs(scale_pixels(x, self.binary))      # (B, C_last, h, w)
        return self.fc(feats.flatten(1))                     # (B, D)
