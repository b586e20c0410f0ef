"""Pillow drawing for `acnzip explore`: image grids, titled panels and a labelled scatter.

No plotting library: figures are small, exact images (tiles upscaled by whole pixels), so the
same inputs give the same PNG bytes. Tiles are model pixels (C, H, W) uint8 as the model sees
them ({0, 1} for binary data, shown as black and white).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["PALETTE", "tile_rgb", "grid", "titled", "side_by_side", "scatter", "png_bytes"]

# Ten distinct colours (the Tableau 10 palette), class k gets PALETTE[k % 10].
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
GAP_RGB = (200, 200, 200)      # light grey between tiles
BG_RGB = (255, 255, 255)
TEXT_RGB = (0, 0, 0)


def _font(size: int = 12):
    return ImageFont.load_default(size=size)


def tile_rgb(pixels: np.ndarray, binary: bool) -> np.ndarray:
    """Model pixels (C, H, W) uint8 -> (H, W, 3) uint8 for display (grey for 1-2 channels,
    the first three channels as RGB otherwise; binary 1 -> 255)."""
    x = np.asarray(pixels, dtype=np.uint8)
    if binary:
        x = x * np.uint8(255)
    rgb = np.repeat(x[:1], 3, axis=0) if x.shape[0] < 3 else x[:3]
    return np.ascontiguousarray(rgb.transpose(1, 2, 0))


def grid(rows: list[list[np.ndarray | None]], scale: int = 2, gap: int = 2,
         sep_after: tuple[int, ...] = ()) -> Image.Image:
    """Tiles (H, W, 3) in rows and columns -> one image; None leaves a blank cell.

    Each tile is upscaled `scale` times (nearest), cells are `gap` pixels apart, and a wider
    gap follows each column index in `sep_after` (to set a source image apart from samples).
    """
    first = next(t for row in rows for t in row if t is not None)
    th, tw = first.shape[0] * scale, first.shape[1] * scale
    ncol = max(len(row) for row in rows)
    xs = [gap + c * (tw + gap) + sum(3 * gap for s in sep_after if s < c) for c in range(ncol)]
    width, height = xs[-1] + tw + gap, gap + len(rows) * (th + gap)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = GAP_RGB
    for r, row in enumerate(rows):
        y = gap + r * (th + gap)
        for c, tile in enumerate(row):
            if tile is None:
                canvas[y:y + th, xs[c]:xs[c] + tw] = BG_RGB
                continue
            canvas[y:y + th, xs[c]:xs[c] + tw] = tile.repeat(scale, 0).repeat(scale, 1)
    return Image.fromarray(canvas, "RGB")


def titled(img: Image.Image, title: str, size: int = 12) -> Image.Image:
    """`img` under a white strip holding `title` (one line, clipped at the image width)."""
    strip = size + 8
    out = Image.new("RGB", (max(img.width, 8), img.height + strip), BG_RGB)
    ImageDraw.Draw(out).text((4, 3), title, fill=TEXT_RGB, font=_font(size))
    out.paste(img, (0, strip))
    return out


def side_by_side(panels: list[Image.Image], gap: int = 12) -> Image.Image:
    """Panels left to right, top-aligned, on white."""
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    out = Image.new("RGB", (width, max(p.height for p in panels)), BG_RGB)
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + gap
    return out


def scatter(points: np.ndarray, labels: np.ndarray | None, size: int = 480, radius: int = 2,
            names: list[str] | None = None) -> Image.Image:
    """2-D points (N, 2) as dots, coloured by integer label (PALETTE cycles), with a legend.

    Points are drawn in the given order (shuffle first so no class hides the others). Without
    labels every dot is grey and there is no legend. `names`: legend text per label value.
    """
    pts = np.asarray(points, dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    margin = 10
    xy = margin + (pts - lo) / span * (size - 2 * margin)
    xy[:, 1] = size - xy[:, 1]                                  # y up
    classes = [] if labels is None else sorted(set(np.asarray(labels).tolist()))
    legend_w = 0 if not classes else 70
    img = Image.new("RGB", (size + legend_w, size), BG_RGB)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, size - 1, size - 1), outline=GAP_RGB)
    for i, (x, y) in enumerate(np.rint(xy).astype(int).tolist()):
        colour = PALETTE[int(labels[i]) % 10] if labels is not None else (90, 90, 90)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    font = _font(12)
    for row, k in enumerate(classes):
        y = 10 + 18 * row
        draw.rectangle((size + 10, y, size + 22, y + 12), fill=PALETTE[int(k) % 10])
        text = names[int(k)] if names is not None else str(k)
        draw.text((size + 28, y - 1), text, fill=TEXT_RGB, font=font)
    return img


def png_bytes(img: Image.Image) -> bytes:
    """The PNG encoding of `img` (no metadata, so equal images give equal bytes)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
