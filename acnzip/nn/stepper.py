"""Incremental (cached) evaluation of the Gated PixelCNN, one sub-pixel at a time.

Decoding must evaluate the decoder once per sub-pixel; a full forward pass each time would cost
H*W*C passes per image. The stepper reuses the decoder's weights with caches (see the layout in
pixelcnn.py): when row r starts, every block's vertical stack is computed for row r alone (it
depends only on rows < r); then for each sub-pixel only the horizontal stack's 1 x (p+1) window
and the 1x1 convolutions run. Total work is about one forward pass per image plus per-step
overhead.

Alice (encoder) and Bob (decoder) both call `PixelStepper.run`, Alice feeding the true pixels
(teacher forcing), Bob the decoded ones, so every logit is computed by the same operations on the
same batch: the results agree bit for bit, which a one-pass forward would not guarantee.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .encoder import scale_pixels
from .pixelcnn import GatedPixelCNN, _gate

__all__ = ["PixelStepper"]

# choose(row, col, channel, logits) -> pixel values (B,) for that sub-pixel.
# logits: (B,) Bernoulli logits for binary images, (B, 256) otherwise.
Choose = Callable[[int, int, int, torch.Tensor], torch.Tensor]


class _BlockWeights:
    """One block's weights, masked once and reshaped for single-pixel use."""

    def __init__(self, block, z: torch.Tensor):
        p = block.p
        self.p, self.first = p, block.first
        self.v_w, self.v_b = block.v_conv.weight, block.v_conv.bias
        hw = block.h_conv.weight * block.h_mask                    # (2F, Cin, 1, p+1)
        # Column-major window: the cached horizontal inputs are (B, W+p, Cin), so the window
        # of columns c..c+p is a contiguous (B, (p+1)*Cin) view, no copy per sub-pixel.
        self.h_w = hw[:, :, 0, :].permute(0, 2, 1).reshape(hw.shape[0], -1)  # (2F, (p+1)*Cin)
        self.half = hw.shape[0] // 2
        self.h_b = block.h_conv.bias
        self.v_to_h_w = block.v_to_h.weight[:, :, 0, 0]             # (2F, 2F)
        self.v_to_h_b = block.v_to_h.bias
        self.res_w = (block.h_res.weight * block.res_mask)[:, :, 0, 0]  # (F, F)
        self.res_b = block.h_res.bias
        self.v_cond = block.v_cond(z)                               # (B, 2F)
        self.h_cond = block.h_cond(z)                               # (B, 2F)


class PixelStepper:
    """Generates or re-scores a batch of images sub-pixel by sub-pixel with cached stacks."""

    def __init__(self, net: GatedPixelCNN, z: torch.Tensor, height: int, width: int):
        self.net, self.H, self.W = net, height, width
        self.C, self.binary = net.C, net.binary
        with torch.no_grad():
            self.blocks = [_BlockWeights(b, z) for b in net.blocks]
        self.out1_w = (net.out1.weight * net.out1_mask)[:, :, 0, 0]
        self.out2_w = (net.out2.weight * net.out2_mask)[:, :, 0, 0]
        self.B = z.shape[0]

    @torch.no_grad()
    def run(self, choose: Choose) -> torch.Tensor:
        """Visit every sub-pixel in raster order (R, G, B within a pixel); returns raw pixels
        (B, C, H, W) as chosen. `choose` sees only logits that depend on earlier sub-pixels."""
        B, C, H, W = self.B, self.C, self.H, self.W
        x = torch.zeros(B, C, H, W)
        # Vertical inputs per block, padded: p rows on top, p columns on each side.
        v_in = [torch.zeros(B, self.net.block_inputs(i), H + b.p, W + 2 * b.p)
                for i, b in enumerate(self.blocks)]
        for r in range(H):
            if r > 0:   # block 0's vertical input at row r is the image's row r-1
                p0 = self.blocks[0].p
                v_in[0][:, :, p0 + r, p0:p0 + W] = scale_pixels(x[:, :, r - 1], self.binary)
            row_bias = self._vertical_row(v_in, r)
            h_in = [torch.zeros(B, W + b.p, self.net.block_inputs(i))
                    for i, b in enumerate(self.blocks)]
            for c in range(W):
                for g in range(C):
                    logits = self._pixel(h_in, row_bias, c, g)
                    x[:, g, r, c] = choose(r, c, g, logits).to(x.dtype)
                    h_in[0][:, self.blocks[0].p + c, g] = scale_pixels(x[:, g, r, c],
                                                                       self.binary)
        return x

    def _vertical_row(self, v_in, r):
        """Run every block's vertical stack for row r; returns each block's per-row bias for
        the horizontal stack, (B, 2F, W): h_conv bias + v_to_h(v_pre) + h_cond(z)."""
        biases = []
        for i, b in enumerate(self.blocks):
            slab = v_in[i][:, :, r:r + b.p + 1]                        # (B, Cin, p+1, W+2p)
            v_pre = F.conv2d(slab, b.v_w, b.v_b)[:, :, 0]              # (B, 2F, W)
            v_pre = v_pre + b.v_cond[:, :, None]
            if i + 1 < len(self.blocks):
                nxt = self.blocks[i + 1]
                v_in[i + 1][:, :, nxt.p + r, nxt.p:nxt.p + self.W] = _gate(v_pre[:, :, :, None])[..., 0]
            vh = torch.einsum("oi,biw->bow", b.v_to_h_w, v_pre) + b.v_to_h_b[None, :, None]
            biases.append((vh + b.h_b[None, :, None] + b.h_cond[:, :, None])
                          .transpose(1, 2).contiguous())                 # (B, W, 2F)
        return biases

    def _pixel(self, h_in, row_bias, c, g):
        """Logits of sub-pixel (c, g) in the current row; writes each block's output at c."""
        h = None
        for i, b in enumerate(self.blocks):
            window = h_in[i][:, c:c + b.p + 1].reshape(self.B, -1)     # (B, (p+1)*Cin) view
            pre = torch.addmm(row_bias[i][:, c], window, b.h_w.T)       # (B, 2F)
            gated = torch.tanh(pre[:, :b.half]) * torch.sigmoid(pre[:, b.half:])
            h = F.linear(gated, b.res_w, b.res_b)                       # (B, F)
            if not b.first:
                h = h + h_in[i][:, b.p + c]
            if i + 1 < len(self.blocks):
                h_in[i + 1][:, self.blocks[i + 1].p + c] = h
        o = F.relu(F.linear(F.relu(h), self.out1_w, self.net.out1.bias))
        o = F.linear(o, self.out2_w, self.net.out2.bias)               # (B, C*V)
        if self.binary:
            return o[:, g]
        return self.net.log_probs(o.view(self.B, self.C, self.net.V)[:, g])
