"""Throughput of the codec/ leaves on the shapes acnzip codes, measured on this machine.

    python -m benchmarks.codec_speed [--repeats 5] [--quick]

Prints symbols/s (push and pop) and measured bits against the ideal -log2 p for: Bernoulli
pixels (784 x 64 binarised images), 256-way categorical sub-pixels (784 x 3 x 16 colour
pixels), and bits-back latent coding (D=16, M=8 mixture prior, 64 images: posterior pop +
prior push, including the mixture table). Writes benchmarks/results/codec_speed.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from codec import (AnsStack, Bernoulli, Categorical, DEFAULT_GRID, DiscretisedGaussian,
                   DiscretisedMixture)

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn, repeats):
    """Best wall time in seconds over `repeats` runs (least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_leaf(name, make, symbols, repeats):
    codec, empty = make(), AnsStack.with_initial_bits(4, 0)
    push = best_of(lambda: codec.push(empty.copy(), symbols), repeats)
    stack = empty.copy()
    codec.push(stack, symbols)
    bits = stack.num_valid_bits - empty.num_valid_bits
    pop = best_of(lambda: codec.pop(stack.copy()), repeats)
    build = best_of(make, repeats)
    n = np.asarray(symbols).size
    return {"name": name, "symbols": n, "build_s": build, "push_s": push, "pop_s": pop,
            "push_symbols_per_s": n / push, "pop_symbols_per_s": n / pop,
            "measured_bits": bits, "ideal_bits": float(codec.info_bits(symbols).sum())}


def bench_latents(rng, n_images, repeats, d=16, m=8):
    """One bits-back latent step for a batch: pop z ~ q(z|x), push z under the mixture prior."""
    mean = rng.normal(0, 1, (n_images, d))
    w, mu = rng.dirichlet(np.ones(m), (n_images, d)), rng.normal(0, 1, (n_images, d, m))
    sc = np.exp(rng.uniform(np.log(0.3), np.log(1.5), (n_images, d, m)))

    def step():
        stack = AnsStack.with_initial_bits(64 * n_images, 1)
        z = DiscretisedGaussian(mean).pop(stack)
        DiscretisedMixture(w, mu, sc).push(stack, z)

    seconds = best_of(step, repeats)
    table = best_of(lambda: DiscretisedMixture(w, mu, sc), repeats)
    n = n_images * d
    return {"name": f"latents D={d} M={m} ({n_images} images)", "symbols": n,
            "step_s": seconds, "mixture_table_s": table, "symbols_per_s": n / seconds,
            "images_per_s": n_images / seconds}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="1 repeat (smoke run)")
    args = ap.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    rng = np.random.default_rng(0)

    p = rng.beta(0.3, 0.3, (64, 784))
    x = (rng.random(p.shape) < p).astype(np.int64)
    probs = rng.dirichlet(np.full(256, 0.1), (16, 784 * 3))
    sub = (probs.cumsum(-1) < rng.random(probs.shape[:-1] + (1,))).sum(-1).clip(0, 255)
    rows = [bench_leaf("Bernoulli 784 x 64", lambda: Bernoulli(p), x, repeats),
            bench_leaf("Categorical-256 784x3 x 16", lambda: Categorical(probs), sub, repeats)]
    latent = bench_latents(rng, 64, repeats)

    lines = ["| codec | symbols | push sym/s | pop sym/s | build s | measured bits | ideal bits |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['symbols']} | {r['push_symbols_per_s']:.3g} | "
                     f"{r['pop_symbols_per_s']:.3g} | {r['build_s']:.3g} | "
                     f"{r['measured_bits']} | {r['ideal_bits']:.1f} |")
    lines += ["", f"Latent bits-back step ({latent['name']}, grid {DEFAULT_GRID.n_bins} bins): "
              f"{latent['symbols_per_s']:.3g} latent symbols/s = {latent['images_per_s']:.1f} "
              f"images/s; mixture table alone {latent['mixture_table_s']:.3f} s."]
    machine = f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}"
    report = "\n".join([f"# codec/ speed ({machine}, best of {repeats})", ""] + lines) + "\n"
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "codec_speed.json").write_text(json.dumps(
        {"machine": machine, "repeats": repeats, "leaves": rows, "latents": latent}, indent=2))
    (RESULTS / "codec_speed.md").write_text(report)


if __name__ == "__main__":
    main()
