"""IntegerACN's PixelCNN one sub-pixel at a time, with caches: Bob's decoder.

Same caches as nn/stepper.py: when row r starts, every block's vertical stack is computed for
row r alone (convolutions over the rows above, in torch); then each sub-pixel needs only the
horizontal stack's 1 x (p+1) window, the 1x1 layers and the head. That sub-pixel work is ~150
operations on tiny arrays (one row per image), so it runs in numpy, whose per-call overhead is
a fifth of torch's (measured at one image: the lock-step batches of `--order set` and `keep`
start and end with a handful of images); the products switch to torch's for large batches.

Every operation is one of IntegerACN's, with the same bits: exact integer sums, then the same
correctly rounded float32 operations in the same order (nn/integer.py's `*_numpy` twins), so
the logits equal IntegerACN.logits bit for bit (tested for both products, both pixel kinds).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .integer import _DT, pixel_ints, quantise_numpy, relu_numpy

__all__ = ["IntegerStepper", "Choose"]

# choose(row, col, channel, logits) -> the pixel values (B,) of that sub-pixel (uint8 or any
# integer tensor); logits: float32 (B,) Bernoulli logits or (B, 256) softmax logits.
Choose = Callable[[int, int, int, torch.Tensor], torch.Tensor]


class IntegerStepper:
    """IntegerACN's PixelCNN sub-pixel by sub-pixel; the logits passed to `choose` are float32
    and equal IntegerACN.logits bit for bit."""

    def __init__(self, net, z_bins: np.ndarray, height: int, width: int):
        self.net, self.H, self.W = net, height, width
        self.C, self.binary = net.C, net.binary
        self.B = len(z_bins)
        z = torch.from_numpy(np.asarray(z_bins, dtype=np.float64)).to(_DT)
        self.blocks = []
        for i, b in enumerate(net.dec.blocks):
            L = net._block_lins(i, net.code_width)
            lins = {k: L[k] for k in ("v", "h", "v_to_h", "res")}
            self.blocks.append((b.p, b.first, lins, L["v_cond"](z), L["h_cond"](z)))
        sc = net.scales
        self.h_scales = [(sc(f"h{i}"), sc.levels(f"h{i}")) for i in range(1, len(self.blocks))] \
            + [None]
        self.inputs = [net.dec.block_inputs(i) for i in range(len(self.blocks))]
        s1, s2 = (sc("out1"), sc.levels("out1")), (sc("out2"), sc.levels("out2"))
        self.head = (s1, net._head_lin(1, s1[0]), s2, net._head_lin(2, s2[0]))

    def run(self, choose: Choose) -> torch.Tensor:
        """Visit every sub-pixel in raster order; returns the raw pixels (B, C, H, W) chosen,
        as float32 values."""
        # inference mode: a quarter less per-operation overhead than no_grad for the rows'
        # torch work (measured at B = 1)
        with torch.inference_mode():
            x = self._run(choose)
        return torch.from_numpy(x)

    def _run(self, choose: Choose) -> np.ndarray:
        B, C, H, W = self.B, self.C, self.H, self.W
        x = np.zeros((B, C, H, W), dtype=np.float32)
        # Vertical inputs channels-last, (B, H+p, W+2p, C_in): a row slab is one contiguous
        # block per image, and oneDNN's channels-last convolution is the fast one (measured).
        v_in = [torch.zeros(B, H + p, W + 2 * p, cin, dtype=_DT)
                for (p, *_), cin in zip(self.blocks, self.inputs)]
        p0 = self.blocks[0][0]
        offset = np.float32(1.0 if self.binary else 255.0)      # pixel_ints: 2x - 1, 2x - 255
        for r in range(H):
            if r > 0:
                v_in[0][:, p0 + r, p0:p0 + W] = pixel_ints(torch.from_numpy(x[:, :, r - 1]),
                                                           self.binary)[0].transpose(1, 2)
            row_bias = self._vertical_row(v_in, r)
            h_in = [np.zeros((B, W + p, cin), dtype=np.float32)
                    for (p, *_), cin in zip(self.blocks, self.inputs)]
            for c in range(W):
                for g in range(C):
                    logits = self._pixel(h_in, row_bias, c, g)
                    x[:, g, r, c] = choose(r, c, g, torch.from_numpy(logits)).numpy()
                    h_in[0][:, p0 + c, g] = np.float32(2.0) * x[:, g, r, c] - offset
        return x

    def _vertical_row(self, v_in, r) -> list[np.ndarray]:
        """Every block's vertical stack at row r (torch); returns each block's horizontal row
        bias (B, W, 2F) as numpy: v_to_h(quantised v_pre) + h_cond(z) + the h_conv bias."""
        biases, sc = [], self.net.scales
        for i, (p, first, L, v_cond, h_cond) in enumerate(self.blocks):
            slab = v_in[i][:, r:r + p + 1].contiguous().permute(0, 3, 1, 2)   # channels-last
            v_pre = L["v"].conv(slab, channels_last=True).permute(0, 2, 3, 1).reshape(
                self.B, self.W, -1)
            v_pre.add_(v_cond[:, None, :])                                    # (B, W, 2F)
            if i + 1 < len(self.blocks):
                nxt = self.blocks[i + 1][0]
                v_in[i + 1][:, nxt + r, nxt:nxt + self.W] = self.net.tables.gate(v_pre, dim=2)
            vh = L["v_to_h"](sc.quantise(f"v{i}", v_pre))
            biases.append(vh.add_(h_cond[:, None, :]).add_(L["h"].bias).numpy())
        return biases

    def _pixel(self, h_in, row_bias, c, g) -> np.ndarray:
        """The logits of sub-pixel (c, g) of the current row (numpy; IntegerACN.logits'
        operations on one column)."""
        hv, gate_numpy = None, self.net.tables.gate_numpy
        for i, (p, first, L, _, _) in enumerate(self.blocks):
            window = h_in[i][:, c:c + p + 1].reshape(self.B, -1)      # (B, (p+1) C_in) view
            pre = L["h"].scaled_numpy(window)
            pre += row_bias[i][:, c]
            out = L["res"].call_numpy(gate_numpy(pre))
            if not first:
                out += hv
            hv = out
            if self.h_scales[i] is not None:
                h_in[i + 1][:, self.blocks[i + 1][0] + c] = quantise_numpy(hv, *self.h_scales[i])
        s1, out1, s2, out2 = self.head                                 # IntegerACN._head
        o = out2.call_numpy(quantise_numpy(relu_numpy(
            out1.call_numpy(quantise_numpy(relu_numpy(hv), *s1))), *s2))
        if self.binary:
            return o[:, g]
        return o.reshape(self.B, self.C, 256)[:, g]
