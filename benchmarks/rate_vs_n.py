"""Rate against dataset size: acnzip's three order modes on the first N images of a split
(random order: the split files are not sorted by class), each archive decoded and compared.

    python -m benchmarks.rate_vs_n --dataset binarized_mnist --split test --n 100 1000
    python -m benchmarks.rate_vs_n --split train --n 50000 --no-decode   # sizes only
    python -m benchmarks.rate_vs_n --split train --n 50000 --no-decode --orders tour

Writes benchmarks/results/rate_vs_n-<dataset>-<split>.json and .md (or --out).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from acnzip.api import compress, decompress

ORDERS = ("set", "keep", "tour")


def measure(images: np.ndarray, order: str, tmp: Path, decode: bool = True) -> dict:
    """Compress and (unless told not to) decompress; the report's per-image figures plus the
    decode time. Without decoding the archive's size is still exact: only the check is left."""
    src = tmp / "x.npy"
    np.save(src, images)
    r = compress(src, tmp / f"{order}.acn", order=order, force=True, quiet=True)
    parts = {k: r[k] for k in ("nats_per_image", "bound_nats_per_image", "archive_bytes",
                               "encode_seconds", "latent_nats_per_image", "recon_nats_per_image")}
    if not decode:
        return {**parts, "decode_seconds": None, "lossless": None}
    t0 = time.perf_counter()
    back = decompress(tmp / f"{order}.acn", tmp / f"out-{order}", force=True, quiet=True)
    back_images = np.load(Path(back["outdir"]) / "x.npy")
    key = lambda x: sorted(bytes(i) for i in x.reshape(len(x), -1))
    ok = np.array_equal(back_images, images) if order == "keep" else key(back_images) == key(images)
    if not ok:
        raise AssertionError(f"--order {order}: not lossless")
    return {**parts, "decode_seconds": time.perf_counter() - t0, "lossless": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="binarized_mnist")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--orders", nargs="+", default=list(ORDERS), choices=ORDERS)
    ap.add_argument("--no-decode", action="store_true",
                    help="compress only (the sizes are exact; decoding is not checked)")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = ap.parse_args()
    x = np.load(Path(a.data_root) / a.dataset / f"{a.split}.npz")["x"]
    x = x[np.random.default_rng(0).permutation(len(x))]
    rows = []
    with tempfile.TemporaryDirectory(prefix="acnzip-rate-") as tmp:
        for n in a.n:
            for order in a.orders:
                r = measure(x[:n], order, Path(tmp), not a.no_decode)
                rows.append({"n": n, "order": order, **r})
                print(f"N={n} {order}: {r['nats_per_image']:.2f} nats/image "
                      f"(bound {r['bound_nats_per_image']:.2f}), {r['encode_seconds']:.1f} s / "
                      f"{r['decode_seconds'] or 0:.1f} s", flush=True)
    stem = Path(a.out) / f"rate_vs_n-{a.dataset}-{a.split}"
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [f"# Rate against N: {a.dataset} {a.split} (first N of a seeded shuffle), shipped model",
             "", "Measured archives (header included), nats per image; "
             + ("not decoded (sizes only)." if a.no_decode else "every archive decoded and compared."), "", "| N | " + " | ".join(a.orders) + " |", "|---" * (len(a.orders) + 1) + "|"]
    for n in a.n:
        cells = [next(f"{r['nats_per_image']:.2f}" for r in rows if r["n"] == n and r["order"] == o)
                 for o in a.orders]
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
