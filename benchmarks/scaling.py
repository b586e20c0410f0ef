"""How the parts of `--order set` that grow with the number of held images H cost, per batch.

    python -m benchmarks.scaling [--sizes 10000,50000,200000,1000000] [--batch 256]

Everything else a batch does (the networks, the pixel coder) costs the same whatever H is, so
these parts decide whether a million images stay feasible. Measured on synthetic codes with the
shipped models' shape (D = 16 latents; codes ~ N(0, 1), latents on the 1/8 grid), per batch of
B images:
  search       `codec.nearest`: the K = 16 held codes nearest each latent (screened BLAS
               product + exact re-rank; the answer equals the exhaustive search's)
  exhaustive   the same answer by every exact distance (the search before the screen;
               measured up to 50,000 only)
  bookkeeping  Bob's held rows in canonical order (one dict lookup per held image), the
               multiset insertions of the batch's keys, and the gather of the held codes
Summed over a whole run (H = 0, B, 2B, ..., N), a part that costs a*H per batch costs about
a*N^2/(2B) in all: the table extrapolates that total for N = 1,000,000.
Writes benchmarks/results/scaling.{json,md}.
"""
from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np

from codec import associative

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(h: int, b: int, d: int, k: int, rng) -> dict:
    codes = rng.normal(0, 1, (h, d)).astype(np.float32)
    z = np.round(rng.normal(0, 1, (b, d)) * 8) / 8
    keys = sorted(hashlib.sha256(i.to_bytes(8, "little")).digest() for i in range(h))
    row_of = {key: i for i, key in enumerate(keys)}
    new = [hashlib.sha256(b"new" + i.to_bytes(8, "little")).digest() for i in range(b)]
    held = np.arange(h)

    def bookkeeping():
        rows = np.array([row_of[key] for key in keys], dtype=np.int64)
        merged = keys[:]
        for key in new:
            bisect.insort(merged, key)
        return codes[rows]

    out = {"held": h, "search_s": timed(lambda: associative.nearest(z, codes[held], k)),
           "bookkeeping_s": timed(bookkeeping)}
    if h <= 50_000:
        anchors = codes.astype(np.float64)

        def exhaustive():
            d2 = associative._distances(z, anchors)
            return associative._smallest(d2, np.broadcast_to(np.arange(h), d2.shape), k)

        out["exhaustive_s"] = timed(exhaustive, 1)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,50000,200000,1000000")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    b, d, k, n_total = args.batch, 16, 16, 1_000_000
    rows = [measure(int(h), b, d, k, rng) for h in args.sizes.split(",")]
    for r in rows:
        r["search_per_held_us"] = 1e6 * r["search_s"] / r["held"]
        r["bookkeeping_per_held_us"] = 1e6 * r["bookkeeping_s"] / r["held"]
    big = rows[-1]
    total = {part: big[f"{part}_per_held_us"] * 1e-6 * n_total ** 2 / (2 * b)
             for part in ("search", "bookkeeping")}
    report = {"machine": platform.processor() or platform.machine(), "batch": b, "d": d,
              "k": k, "rows": rows, "extrapolated_total_s_for_1M": total}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Parts of `--order set` that grow with the held images (batch B = {b}, "
             f"D = {d}, K = {k})", "",
             "| held H | search s/batch | exhaustive s/batch | bookkeeping s/batch |",
             "|---|---|---|---|"]
    for r in rows:
        ex = f"{r['exhaustive_s']:.2f}" if "exhaustive_s" in r else "-"
        lines.append(f"| {r['held']:,} | {r['search_s']:.3f} | {ex} | "
                     f"{r['bookkeeping_s']:.3f} |")
    lines += ["", f"Extrapolated over a whole run of N = 1,000,000 images (a*N^2/(2B) from "
              f"the H = {big['held']:,} row): search {total['search']:,.0f} s, bookkeeping "
              f"{total['bookkeeping']:,.0f} s."]
    (RESULTS / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
