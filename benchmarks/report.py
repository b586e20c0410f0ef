"""Write a benchmark result as <name>.json, <name>.md (tables) and <name>.png (a bar plot).

The result dict (built by benchmarks.run) holds `methods`: one row per method and form with
measured `total_bytes` and rates derived here; `acnzip`: its compress reports (order set/keep);
`bound`: the Table-2 figures in nats per image. The plot is drawn with Pillow only (no
matplotlib), so it works wherever acnzip itself installs.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from acnzip.runtime import LN2

__all__ = ["LN2", "rates", "write_report", "markdown", "plot", "acnzip_parts_bits",
           "REQUIRED_KEYS", "ROW_KEYS"]

REQUIRED_KEYS = ("schema", "name", "dataset", "split", "n_images", "image_shape", "binary",
                 "dims_per_image", "quick", "machine", "wall_seconds", "acnzip", "bound",
                 "methods", "notes")
ROW_KEYS = ("method", "form", "available", "reason", "total_bytes", "bits_per_image",
            "nats_per_image", "bits_per_dim", "encode_seconds", "decode_seconds", "lossless",
            "details")
SCHEMA = "acnzip-benchmark/1"


def rates(total_bytes: int, n_images: int, dims_per_image: int) -> dict:
    """Bytes of a whole set -> bits and nats per image, bits per dimension (sub-pixel)."""
    bits = 8.0 * total_bytes / n_images
    return {"bits_per_image": bits, "nats_per_image": bits * LN2,
            "bits_per_dim": bits / dims_per_image}


def acnzip_parts_bits(rep: dict) -> dict:
    """acnzip's measured bits/image split into the latents (net of every bit returned),
    recon and overhead (measured archive minus the coded bound: header, initial bits, coder
    rounding)."""
    parts = {"latent (net of bits back)": max(0.0, rep["latent_nats_per_image"]) / LN2,
             "recon": rep["recon_nats_per_image"] / LN2}
    parts["overhead"] = rep["bits_per_image"] - sum(parts.values())
    return parts


# ----- Markdown -----

def _num(v, fmt="{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def _row_md(r: dict) -> str:
    if not r["available"]:
        return f"| {r['method']} | {r['form']} | unavailable: {r['reason']} | | | | | | |"
    return (f"| {r['method']} | {r['form']} | {r['total_bytes']} | {r['bits_per_image']:.1f} | "
            f"{r['nats_per_image']:.1f} | {r['bits_per_dim']:.4f} | "
            f"{_num(r['encode_seconds'])} | {_num(r['decode_seconds'])} | "
            f"{'✓' if r['lossless'] else '✗'} |")


def _bound_rows_md(res: dict) -> list[str]:
    """Table-2 bounds as rows of the main table (no bytes: they are not measured)."""
    b, dims = res["bound"], res["dims_per_image"]
    if not b.get("available"):
        return []
    names = {"ordered": "ordered (Table 2: the paper's greedy tour)",
             "short": "short path (--order tour's, without chain starts)",
             "unordered": "unordered (Table 2)"}
    return [f"| ACN bound, {names[k]} | ideal | — | {b[k] / LN2:.1f} | {b[k]:.1f} | "
            f"{b[k] / (LN2 * dims):.4f} | | | |" for k in names if k in b]


def _acnzip_md(res: dict) -> list[str]:
    a = res["acnzip"]
    if not a.get("available"):
        return [f"acnzip: not run — {a.get('reason')}", ""]
    out = ["## acnzip: measured against its bound (per image)", "",
           "| order | measured nats | coded bound nats | payload over bound % | with header % "
           "| tour KL nats | KL coded nats | j coded - returned nats | choice returned nats "
           "| recon nats | header bytes | encode s | decode s | decode / forward |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    fwd = a.get("forward_pass", {})
    for order in [o for o in ("set", "keep", "tour", "set-float") if o in a]:
        r = a[order]
        out.append(f"| {order} | {r['nats_per_image']:.2f} | {r['bound_nats_per_image']:.2f} | "
                   f"{r['payload_over_bound_pct']:.2f} | "
                   f"{100 * (8 * r['archive_bytes'] / r['bound_bits_total'] - 1):.2f} | "
                   f"{_num(r['kl_tour_nats_per_image'])} | {r['kl_nats_per_image']:.2f} | "
                   f"{r.get('j_nats_per_image', 0) - r.get('j_back_nats_per_image', 0):.2f} | "
                   f"{r.get('choice_back_nats_per_image', 0):.2f} | "
                   f"{r['recon_nats_per_image']:.2f} | "
                   f"{r['header_bytes']} | {r['encode_seconds']:.1f} | {r['decode_seconds']:.1f} | "
                   f"{_num(fwd.get(f'decode_over_forward_{order}'))} |")
    if fwd:
        out += ["", f"One batched full forward pass (encoder + prior + PixelCNN, batch "
                f"{fwd['batch']}, {fwd['threads']} torch thread(s)) over the same "
                f"{res['n_images']} images: {fwd['seconds']:.2f} s."]
    out += ["", "The coded bound is the ideal code length of exactly what was coded: for each "
            "latent, -log2 p(z | previous code) + log2 q(z | x) at the z the coder drew "
            "for --order tour, under the associative mixture net of the choice's bits back for "
            "set and keep), plus -log2 r(x | z), less the bits the multiset choices return "
            "(set); the payload exceeds it only by the initial bits and ANS rounding. The Table-2 "
            "short bound below (ordered: the paper's greedy tour) is the expectation over z "
            "along one path, without chain starts or order."]
    return out + [f"Model: `{a['model']}` (sha256 {a['model_sha256'][:16]}…).", ""]


def _table2_md(res: dict) -> list[str]:
    b, dims = res["bound"], res["dims_per_image"]
    if not b.get("available"):
        return [f"Table 2: not computed — {b.get('reason')}", ""]
    keys = [k for k in ("kl_k1", "kl_k5", "kl_k10", "kl_tour", "kl_uncond", "recon", "ordered",
                        "unordered", "kl_short", "short", "kl_keep", "kl_set", "keep", "set")
            if k in b]
    return ["## Table 2 on this set (nats per image; bits/dim)", "",
            "The paper's rows, then acnzip's associative figures (`acnzip eval`; "
            "acnzip/evaluate.py): kl_short is the KL along --order tour's short path "
            "(ordered: along the paper's greedy tour); kl_keep and kl_set are the latents' "
            "expected net cost under the associative prior of --order keep and set (set net of "
            "the order's return).", "",
            "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
            "| " + " | ".join(f"{b[k]:.2f}" for k in keys) + " |",
            "| " + " | ".join(f"{b[k] / (LN2 * dims):.4f}" for k in keys) + " |", ""]


def markdown(res: dict) -> str:
    """The report as Markdown: header, main table, acnzip breakdown, Table 2, notes."""
    shape = "x".join(map(str, res["image_shape"]))
    head = [f"# {res['name']}: {res['n_images']} images {shape} "
            f"{'binary' if res['binary'] else '8-bit'}{' (quick)' if res['quick'] else ''}", "",
            f"Machine: {res['machine']['summary']}. Wall time of the whole run: "
            f"{res['wall_seconds']:.0f} s.", "",
            "Sizes are measured files/streams; every method was decoded and compared "
            "pixel for pixel (✓). bits/dim counts sub-pixels. whole-set = all images tiled "
            "into one image (image codecs) or one stream (the others).", "",
            "| method | form | bytes | bits/image | nats/image | bits/dim | encode s | "
            "decode s | lossless |", "|---|---|---|---|---|---|---|---|---|"]
    rows = [_row_md(r) for r in res["methods"]] + _bound_rows_md(res)
    notes = ["## Notes", ""] + [f"- {n}" for n in res["notes"]] if res["notes"] else []
    return "\n".join(head + rows + [""] + _acnzip_md(res) + _table2_md(res) + notes) + "\n"


# ----- the plot (Pillow) -----

PART_COLOURS = {"latent (net of bits back)": (214, 96, 77), "recon": (67, 147, 195), "order": (146, 197, 222),
                "overhead": (120, 120, 120)}
PEER_COLOUR, LINE_COLOUR = (170, 170, 170), (200, 30, 30)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                       # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _text(d, xy, text: str, font, anchor: str = "la", fill="black") -> None:
    """Text placed by a two-letter anchor (l/m/r, t/m) computed from its box, so that it also
    works with Pillow's bitmap font (which rejects the `anchor` argument)."""
    x0, y0, x1, y1 = d.textbbox((0, 0), text, font=font)
    x = xy[0] - {"l": x0, "m": (x0 + x1) / 2, "r": x1}[anchor[0]]
    y = xy[1] - {"a": 0, "t": y0, "m": (y0 + y1) / 2}[anchor[1]]
    d.text((x, y), text, fill=fill, font=font)


def _bars(res: dict) -> list[dict]:
    """Plot rows: acnzip (stacked parts) first, then available peers by bits/image."""
    bars = []
    a = res["acnzip"]
    if a.get("available"):
        for order in [o for o in ("set", "keep", "tour", "set-float") if o in a]:
            bars.append({"label": f"acnzip --order {order}", "bits": a[order]["bits_per_image"],
                         "parts": acnzip_parts_bits(a[order])})
    peers = [r for r in res["methods"] if r["available"] and r["method"] != "acnzip"]
    for r in sorted(peers, key=lambda r: r["bits_per_image"]):
        bars.append({"label": f"{r['method']} ({r['form']})", "bits": r["bits_per_image"],
                     "whole": r["form"] != "per-image"})
    return bars


def _lines(res: dict) -> list[tuple[str, float, bool]]:
    """(label, bits/image, dashed) for the bounds drawn across the bars."""
    b = res["bound"]
    if b.get("available"):
        first = ("bound: short path (--order tour)", b["short"] / LN2) if "short" in b else \
            ("bound: ordered (Table 2)", b["ordered"] / LN2)
        return [(*first, False), ("unordered (Table 2)", b["unordered"] / LN2, True)]
    a = res["acnzip"]
    if a.get("available"):
        return [("bound (compress, set)", a["set"]["bound_nats_per_image"] / LN2, False)]
    return []


def _x_limit(bars: list[dict], lines) -> float:
    """Axis end: 15% past the largest acnzip, whole-set or bound figure; longer bars clip."""
    main = [b["bits"] for b in bars if b.get("parts") or b.get("whole")] + [v for _, v, _ in lines]
    return 1.15 * max(main or [b["bits"] for b in bars] or [1.0])


def _tick_step(limit: float) -> float:
    raw = limit / 6
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def _dashed(draw, x, y0, y1, colour, dash=6, horizontal=False):
    """A dashed line from (x, y0) to (x, y1), or from (y0, x) to (y1, x) if horizontal."""
    for t in range(int(y0), int(y1), 2 * dash):
        seg = [(x, t), (x, min(t + dash, y1))]
        draw.line([p[::-1] for p in seg] if horizontal else seg, fill=colour, width=2)


def plot(res: dict, path: Path) -> None:
    """Horizontal bars of bits per image by method; acnzip's bars split into parts, the
    bounds as vertical lines; bars past the axis end are clipped and labelled."""
    bars, lines = _bars(res), _lines(res)
    font, small = _font(14), _font(12)
    width, left, right, top, row = 1100, 250, 110, 50, 24          # pixels
    plot_w = width - left - right
    bottom = top + row * max(len(bars), 1)
    img = Image.new("RGB", (width, bottom + 100), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 12), f"{res['name']}: bits per image ({res['n_images']} images, lower is "
                     "better)", fill="black", font=font)
    limit = _x_limit(bars, lines)
    sx = lambda v: left + plot_w * min(v, limit) / limit                     # noqa: E731
    step = _tick_step(limit)
    for k in range(int(limit // step) + 1):
        x = sx(k * step)
        d.line([(x, top - 4), (x, bottom)], fill=(230, 230, 230))
        _text(d, (x, bottom + 4), f"{k * step:g}", small, "mt")
    for i, b in enumerate(bars):
        y0, y1 = top + i * row + 3, top + (i + 1) * row - 3
        _text(d, (left - 8, (y0 + y1) / 2), b["label"], small, "rm")
        _draw_bar(d, b, sx, y0, y1)
        _text(d, (sx(b["bits"]) + 6, (y0 + y1) / 2), f"{b['bits']:.1f}", small, "lm")
    for label, v, dashed in lines:
        if dashed:
            _dashed(d, sx(v), top - 6, bottom, LINE_COLOUR)
        else:
            d.line([(sx(v), top - 6), (sx(v), bottom)], fill=LINE_COLOUR, width=2)
    _legend(d, lines, bottom + 26, small, any("parts" in b for b in bars))
    img.save(path, optimize=True)


def _draw_bar(d, b: dict, sx, y0, y1) -> None:
    end = sx(b["bits"])
    if "parts" not in b:
        d.rectangle([sx(0), y0, end, y1], fill=PEER_COLOUR)
    else:
        _draw_parts(d, b, sx, y0, y1)
    if end >= sx(float("inf")):                       # clipped: a white break mark "//"
        for dx in (-22, -14):
            d.line([(end + dx, y1), (end + dx + 6, y0)], fill="white", width=3)


def _draw_parts(d, b: dict, sx, y0, y1) -> None:
    """acnzip's bar: its parts end to end, never past the measured total."""
    start = 0.0
    for name, bits in b["parts"].items():
        end = min(start + max(bits, 0.0), b["bits"])
        if end > start:
            d.rectangle([sx(start), y0, sx(end), y1], fill=PART_COLOURS[name])
        start = end


def _legend(d, lines, y: float, font, with_acnzip: bool) -> None:
    x = 20
    for name, colour in PART_COLOURS.items() if with_acnzip else ():
        d.rectangle([x, y, x + 14, y + 14], fill=colour)
        _text(d, (x + 20, y + 7), f"acnzip {name}", font, "lm")
        x += 40 + d.textlength(f"acnzip {name}", font=font)
    d.rectangle([x, y, x + 14, y + 14], fill=PEER_COLOUR)
    _text(d, (x + 20, y + 7), "peer", font, "lm")
    x, y = 20, y + 26
    for label, _, dashed in lines:
        if dashed:
            _dashed(d, y + 7, x, x + 24, LINE_COLOUR, dash=4, horizontal=True)
        else:
            d.line([(x, y + 7), (x + 24, y + 7)], fill=LINE_COLOUR, width=2)
        _text(d, (x + 30, y + 7), label, font, "lm")
        x += 60 + d.textlength(label, font=font)
    _text(d, (x, y + 7), "// = bar runs past the axis (value printed)", font, "lm")


# ----- all three files -----

def write_report(res: dict, outdir: Path, name: str | None = None) -> dict[str, Path]:
    """<name>.json, <name>.md and <name>.png in outdir; returns their paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    name = name or res["name"]
    paths = {ext: outdir / f"{name}.{ext}" for ext in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(res, indent=2) + "\n")
    paths["md"].write_text(markdown(res))
    plot(res, paths["png"])
    return paths
