"""Gated PixelCNN decoder r(x|z) (van den Oord et al. 2016), without blind spot, conditioned on z.

Layout of block l (p = k // 2, pixel (r, c), raster order, channels R -> G -> B):

* Vertical stack, weight `v_conv` of shape (2F, C_in, p+1, k): v_pre_l[r, c] reads rows
  r-p .. r and columns c-p .. c+p of its input, which is the image shifted down one row for
  l = 0 (so x rows r-p-1 .. r-1) and v_{l-1} for l > 0. By induction v_l[r] depends only on
  x rows < r: the vertical stack never sees the current row.
* Horizontal stack, weight `h_conv` of shape (2F, C_in, 1, p+1): h_pre_l[r, c] reads row r,
  columns c-p .. c of its input (x for l = 0, h_{l-1} for l > 0), plus `v_to_h` (1x1) of
  v_pre_l[r, c] and the z projection. The centre tap (column c, kernel index p) is masked by
  channel group: feature maps are split into C contiguous groups (group of map j is j*C // F)
  and output group g may read input group i at the centre only if i < g (type A, block 0,
  input = image channels) or i <= g (type B, later blocks). For C = 1 type A removes the centre.
* Gates: pre-activations are 2F maps, out = tanh(pre[:F]) * sigmoid(pre[F:]); map j and F+j
  share a group. Horizontal output = h_in + `h_res` (1x1, type B) of the gate (no residual in
  block 0, whose input has C channels).
* z enters every block through `v_cond` and `h_cond`, Linear(D, 2F), added to the pre-activations.
* Head: relu -> 1x1 (F -> F, type B) -> relu -> 1x1 (F -> C*V, type B; outputs of channel g
  form group g), V = 1 (Bernoulli logit) for binary images; for 8-bit ones V = 256 logits
  (likelihood "softmax") or V = 3L parameters of a discretised logistic mixture (likelihood
  "logistic", PixelCNN++: L mixture logits, L means, L log-scales; `log_probs` turns them
  into the 256 log-probabilities the coder uses).

So the logits at (r, c, channel g) depend on x rows < r, row r columns < c, and channels < g
of pixel (r, c). For a cached step-by-step evaluation: when row r-1 is complete, run the
vertical convs of every block for row r (each needs the last p+1 rows of its input);
then per pixel, each block's horizontal conv needs the last p+1 columns of its input row.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .encoder import scale_pixels

__all__ = ["GatedPixelCNN", "GatedBlock", "channel_groups", "centre_mask",
           "logistic_log_probs"]

_HALF_BIN = 1.0 / 255.0                  # half a pixel level on the [-1, 1] scale


def logistic_log_probs(params: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    """log P(x) under a discretised mixture of L logistics (PixelCNN++, Salimans et al. 2017)
    on the 256 levels, the level x mapped to x / 127.5 - 1 and the end levels taking the tails.

    params (..., 3L): mixture logits, means, log-scales (clamped at -7). x (...,) levels:
    returns (...,) log P(x); x None: (..., 256) log P of every level (the coder's table)."""
    L = params.shape[-1] // 3
    logit_pi, mu, log_s = params[..., :L], params[..., L:2 * L], params[..., 2 * L:]
    log_s = log_s.clamp(min=-7.0)
    if x is None:
        levels = torch.arange(256, device=params.device, dtype=params.dtype)
        x = levels.view((1,) * (params.dim() - 1) + (256,))
        logit_pi, mu, log_s = (t.unsqueeze(-2) for t in (logit_pi, mu, log_s))   # (..., 1, L)
    xs = (x.to(params.dtype) / 127.5 - 1.0).unsqueeze(-1)                        # (..., 1)
    centred, inv_s = xs - mu, torch.exp(-log_s)
    plus, minus = inv_s * (centred + _HALF_BIN), inv_s * (centred - _HALF_BIN)
    log_cdf_plus = plus - F.softplus(plus)                  # log sigmoid(plus): level 0
    log_sf_minus = -F.softplus(minus)                       # log(1 - sigmoid(minus)): level 255
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centred                                   # density at the centre, when tiny
    log_pdf_mid = mid - log_s - 2.0 * F.softplus(mid) + math.log(2.0 * _HALF_BIN)
    inner = torch.where(delta > 1e-5, torch.log(delta.clamp(min=1e-12)), log_pdf_mid)
    xl = x.unsqueeze(-1)
    log_p = torch.where(xl == 0, log_cdf_plus, torch.where(xl == 255, log_sf_minus, inner))
    return torch.logsumexp(log_p + F.log_softmax(logit_pi, dim=-1), dim=-1)


def channel_groups(n: int, channels: int) -> torch.Tensor:
    """Group (colour channel) of each of n feature maps: contiguous blocks, (n,) long."""
    return torch.arange(n) * channels // n


def centre_mask(out_groups: torch.Tensor, in_groups: torch.Tensor, strict: bool) -> torch.Tensor:
    """(out, in) float mask: 1 where output group may read input group at the same pixel."""
    o, i = out_groups[:, None], in_groups[None, :]
    return ((i < o) if strict else (i <= o)).float()


def _gate(pre: torch.Tensor) -> torch.Tensor:
    """(B, 2F, H, W) -> (B, F, H, W): tanh(first half) * sigmoid(second half)."""
    a, b = pre.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedBlock(nn.Module):
    """One gated block of both stacks; see the module docstring for what each weight reads."""

    def __init__(self, in_ch: int, filters: int, kernel: int, latent_dim: int, channels: int,
                 first: bool):
        super().__init__()
        p, f2 = kernel // 2, 2 * filters
        self.p, self.first = p, first
        self.v_conv = nn.Conv2d(in_ch, f2, (p + 1, kernel))
        self.h_conv = nn.Conv2d(in_ch, f2, (1, p + 1))
        self.v_to_h = nn.Conv2d(f2, f2, 1)
        self.h_res = nn.Conv2d(filters, filters, 1)
        self.v_cond = nn.Linear(latent_dim, f2)
        self.h_cond = nn.Linear(latent_dim, f2)
        groups = channel_groups(filters, channels)                      # (F,)
        in_groups = torch.arange(channels) if first else groups
        h_mask = torch.ones(f2, in_ch, 1, p + 1)
        h_mask[:, :, 0, p] = centre_mask(groups.repeat(2), in_groups, strict=first)
        self.register_buffer("h_mask", h_mask, persistent=False)
        self.register_buffer("res_mask", centre_mask(groups, groups, False)[:, :, None, None],
                             persistent=False)

    def forward(self, v, h, z):
        """v, h (B, C_in, H, W); z (B, D) -> v, h (B, F, H, W)."""
        p = self.p
        v_pre = F.conv2d(F.pad(v, (p, p, p, 0)), self.v_conv.weight, self.v_conv.bias)
        v_pre = v_pre + self.v_cond(z)[:, :, None, None]                 # (B, 2F, H, W)
        h_pre = F.conv2d(F.pad(h, (p, 0, 0, 0)), self.h_conv.weight * self.h_mask,
                         self.h_conv.bias)
        h_pre = h_pre + self.v_to_h(v_pre) + self.h_cond(z)[:, :, None, None]
        h_out = F.conv2d(_gate(h_pre), self.h_res.weight * self.res_mask, self.h_res.bias)
        if not self.first:
            h_out = h + h_out                                            # residual
        return _gate(v_pre), h_out


class GatedPixelCNN(nn.Module):
    """Autoregressive decoder: forward(x, z) -> logits; nll(x, logits) -> nats per image."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        C, Fm = cfg.channels, cfg.pixelcnn_filters
        self.binary, self.C = cfg.binary, C
        self.logistic = not cfg.binary and cfg.likelihood == "logistic"
        self.V = 1 if cfg.binary else 3 * cfg.logistic_components if self.logistic else 256
        self.blocks = nn.ModuleList(
            GatedBlock(C if i == 0 else Fm, Fm, cfg.pixelcnn_kernel, cfg.latent_dim, C, i == 0)
            for i in range(cfg.pixelcnn_blocks))
        self.out1 = nn.Conv2d(Fm, Fm, 1)
        self.out2 = nn.Conv2d(Fm, C * self.V, 1)
        groups = channel_groups(Fm, C)
        self.register_buffer("out1_mask", centre_mask(groups, groups, False)[:, :, None, None],
                             persistent=False)
        out_groups = torch.arange(C * self.V) // self.V
        self.register_buffer("out2_mask", centre_mask(out_groups, groups, False)[:, :, None, None],
                             persistent=False)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) raw pixels, z (B, D) -> logits.

        Binary: (B, C, H, W) Bernoulli logits. 8-bit: (B, C, H, W, V): 256 categorical logits,
        or the logistic mixture's 3L parameters (`log_probs` gives the 256 log-probabilities).
        """
        x = scale_pixels(x, self.binary)
        v = F.pad(x, (0, 0, 1, 0))[:, :, :-1]                  # v[r] = x[r-1], row 0 zeros
        h = x
        for block in self.blocks:
            v, h = block(v, h, z)
        o = F.relu(F.conv2d(F.relu(h), self.out1.weight * self.out1_mask, self.out1.bias))
        o = F.conv2d(o, self.out2.weight * self.out2_mask, self.out2.bias)  # (B, C*V, H, W)
        if self.binary:
            return o
        B, _, H, W = o.shape
        return o.view(B, self.C, self.V, H, W).permute(0, 1, 3, 4, 2)

    def nll(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """-log r(x|z) in nats per image: x (B, C, H, W) raw pixels -> (B,)."""
        if self.binary:
            nats = F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none")
        elif self.logistic:
            nats = -logistic_log_probs(logits.float(), x.long())
        else:
            nats = F.cross_entropy(logits.reshape(-1, self.V), x.reshape(-1).long(),
                                   reduction="none")
        return nats.view(x.shape[0], -1).sum(1)

    def block_inputs(self, i: int) -> int:
        """Channels entering block i: the image's for block 0, else block i-1's feature maps."""
        return self.C if i == 0 else self.blocks[i - 1].h_res.weight.shape[0]

    def log_probs(self, out: torch.Tensor) -> torch.Tensor:
        """8-bit: the head's outputs (..., V) -> (..., 256) log-probabilities of the levels
        (softmax: the logits themselves, which the coder normalises; logistic: the mixture's
        bin masses)."""
        return logistic_log_probs(out) if self.logistic else out
