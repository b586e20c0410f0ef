"""Growing a trained Gated PixelCNN wider without changing what it computes (`train --init
MODEL.pt --filters F`): the warm start of a larger decoder from a smaller one's weights.

Each stack of F feature maps becomes one of F' >= F. The file's maps keep their weights and
their colour-channel group (an old map of group g takes one of the new model's group-g slots,
in order, so every centre mask reads the same groups as before); the new maps keep the fresh
model's initialisation for the weights into them, and every weight *out of* a new map into an
old one (the next block's convolutions, `v_to_h`, `h_res`, the head) is zero. So the old maps,
and the logits, are what the file's model computed, up to the rounding of adding zeros; the
new maps carry values from the start and learn through those zero weights, whose gradients
are not zero.
"""
from __future__ import annotations

import torch

from .pixelcnn import channel_groups

__all__ = ["map_slots", "widened"]


def map_slots(old: int, new: int, channels: int) -> torch.Tensor:
    """(old,) index in a stack of `new` maps of each of `old` maps, group by group (the
    groups of `channel_groups`). ValueError if a group would have fewer slots than before."""
    g_old, g_new = channel_groups(old, channels), channel_groups(new, channels)
    slots = torch.empty(old, dtype=torch.long)
    for g in range(channels):
        src, dst = (g_old == g).nonzero()[:, 0], (g_new == g).nonzero()[:, 0]
        if len(dst) < len(src):
            raise ValueError(f"{new} feature maps give colour channel {g} {len(dst)} of them, "
                             f"fewer than the {len(src)} of the model's {old}")
        slots[src] = dst[:len(src)]
    return slots


def _place(old: torch.Tensor, fresh: torch.Tensor, out_idx, in_idx) -> torch.Tensor:
    """fresh, with old written at rows out_idx (None: all rows) and columns in_idx (None: all
    columns), and the rest of those rows (weights from new inputs into old outputs) zero."""
    w = fresh.clone()
    rows = torch.arange(w.shape[0]) if out_idx is None else out_idx
    if w.dim() == 1:
        w[rows] = old
        return w
    if in_idx is not None:
        w[rows] = 0.0
    cols = torch.arange(w.shape[1]) if in_idx is None else in_idx
    w[rows[:, None], cols[None, :]] = old
    return w


def widened(weights: dict, fresh: dict, channels: int) -> dict:
    """The state dict `weights` (a model whose PixelCNN has F maps per stack) laid into
    `fresh` (the state dict of the same model with F' >= F maps, freshly initialised) as the
    module docstring says; keys outside the PixelCNN are taken from `weights` unchanged.
    `fresh` may have more PixelCNN blocks than `weights`: those are left as they are."""
    f_old = weights["decoder.out1.weight"].shape[0]
    f_new = fresh["decoder.out1.weight"].shape[0]
    if f_new < f_old:
        raise ValueError(f"the model has {f_old} feature maps per stack; growing cannot make "
                         f"{f_new}")
    m = map_slots(f_old, f_new, channels)
    m2 = torch.cat([m, f_new + m])          # gated pre-activations: map j pairs with F + j
    out = dict(weights)
    for key, w in weights.items():
        if not key.startswith("decoder."):
            continue
        part = key.split(".")
        layer, first = (part[3], part[2] == "0") if part[1] == "blocks" else (part[1], False)
        rows, cols = {
            "v_conv": (m2, None if first else m), "h_conv": (m2, None if first else m),
            "v_to_h": (m2, m2), "h_res": (m, m), "v_cond": (m2, None), "h_cond": (m2, None),
            "out1": (m, m), "out2": (None, m),
        }[layer]
        out[key] = _place(w, fresh[key], rows, cols if w.dim() > 1 else None)
    return out
