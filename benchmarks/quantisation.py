"""What integer arithmetic would cost in rate (issue 14, measurement before building).

Every convolution and linear layer of a model is fake-quantised: weights symmetric per output
channel, inputs symmetric per tensor (per call), to the given bit widths, rounded to nearest;
the products are summed as integers (in float32 or float64, exactly, while every partial sum
stays below 2**24 or 2**53) and scaled back. Nonlinearities, the prior's softmax and the
pixel distributions stay float. The negative ELBO's parts are measured on the same images at
z = c + eps with the same eps, the prior conditioned on each image's nearest other code in its
batch of 250 (a stand-in for the associative prior), against the float32 model.

    python -m benchmarks.quantisation --n 1000

Writes benchmarks/results/quantisation-binarized_mnist-test.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from acnzip.modelfile import DEFAULT_MODEL, load_model
from acnzip.nn.prior import mixture_log_prob, posterior_log_prob

SETTINGS = {"float32": None, "w8a8": (8, 8), "w8a12": (8, 12), "w8a16": (8, 16), "w6a8": (6, 8),
            "w8a8 fixed scales + tables": (8, 8, "fixed")}
_CONV, _LINEAR, _TANH, _SIGMOID = F.conv2d, F.linear, torch.tanh, torch.sigmoid


def _quantise(t: torch.Tensor, bits: int, axis: int | None = None):
    """Integer values (as floats) and the scale: t ~ q * s, |q| <= 2**(bits-1) - 1."""
    lim = 2 ** (bits - 1) - 1
    if axis is None:
        s = t.abs().max().clamp_min(1e-12) / lim
    else:
        s = t.abs().amax(dim=[d for d in range(t.dim()) if d != axis],
                         keepdim=True).clamp_min(1e-12) / lim
    return torch.round(t / s).clamp(-lim, lim), s


def _restore() -> None:
    F.conv2d, F.linear, torch.tanh, torch.sigmoid = _CONV, _LINEAR, _TANH, _SIGMOID


def _patch(wbits: int, abits: int, stats: dict, fixed: dict | None = None) -> None:
    """Route F.conv2d and F.linear (which nn.Conv2d / nn.Linear call) through integers.
    `fixed`: per call site (the n-th layer call of a forward pass) the input scale calibrated
    beforehand, and tanh / sigmoid as tables: an 8-bit input on a fixed scale, an 8-bit
    output (what a lookup table indexed by the integer would give)."""
    calls = {"n": 0}

    def input_scale(inp):
        lim = 2 ** (abits - 1) - 1
        if fixed is None:
            return _quantise(inp, abits)
        key = calls["n"]
        calls["n"] += 1
        s = fixed["scales"].setdefault(key, 0.0) if fixed["calibrate"] else fixed["scales"][key]
        if fixed["calibrate"]:
            fixed["scales"][key] = max(s, float(inp.abs().max()) / lim)
            s = fixed["scales"][key]
        s = max(s, 1e-12)
        return torch.round(inp / s).clamp(-lim, lim), torch.tensor(s)

    def table(fn, lo):
        def lookup(x):
            s_in = 8.0 / 127                                   # inputs in [-8, 8], 8 bits
            q = torch.round(x / s_in).clamp(-127, 127) * s_in
            y = fn(q)
            s_out = 1.0 / (255 if lo == 0 else 127)
            return torch.round(y / s_out) * s_out
        return lookup

    if fixed is not None:
        torch.tanh, torch.sigmoid = table(_TANH, -1), table(_SIGMOID, 0)
        fixed["reset"] = lambda: calls.update(n=0)

    def integer(op, inp, w, shape):
        qi, si = input_scale(inp)
        qw, sw = _quantise(w, wbits, 0)
        acc = op(qi, qw)
        stats["max_accumulator"] = max(stats["max_accumulator"], float(acc.abs().max()))
        return acc * si * sw.reshape(shape)

    def conv(inp, w, b=None, *args, **kw):
        out = integer(lambda a, c: _CONV(a, c, None, *args, **kw), inp, w, (1, -1, 1, 1))
        return out if b is None else out + b.reshape(1, -1, 1, 1)

    def linear(inp, w, b=None):
        out = integer(_LINEAR, inp, w, (1, -1))
        return out if b is None else out + b

    F.conv2d, F.linear = conv, linear


@torch.no_grad()
def measure(model, x: torch.Tensor, eps: torch.Tensor, batch: int = 250,
            fixed: dict | None = None) -> tuple[float, float]:
    """Mean KL (against the nearest other code's prior) and recon, nats per image."""
    kl, rec = [], []
    for i in range(0, len(x), batch):
        xb, e = x[i:i + batch], eps[i:i + batch]
        if fixed is not None:
            fixed["reset"]()
        c = model.encoder(xb)
        d = torch.cdist(c, c)
        d.fill_diagonal_(float("inf"))
        z = c + e
        kl.append(posterior_log_prob(e) - mixture_log_prob(z, model.prior(c[d.argmin(1)]))
                  .double().numpy())
        rec.append(model.decoder.nll(xb, model.decoder(xb, z)).double().numpy())
    return float(np.concatenate(kl).mean()), float(np.concatenate(rec).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" /
                                          "datasets" / "binarized_mnist" / "test.npz"))
    ap.add_argument("--calibrate", type=int, default=1000,
                    help="training images that set the fixed scales")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(a.model).model
    x = torch.from_numpy(np.load(a.data)["x"][:a.n, None])
    eps = torch.randn((a.n, model.config.latent_dim), generator=torch.Generator().manual_seed(0))
    rows = []
    try:
        for name, bits in SETTINGS.items():
            stats = {"max_accumulator": 0.0}
            _restore()
            fixed = None
            if bits and len(bits) == 3:               # calibrate on training images first
                fixed = {"scales": {}, "calibrate": True}
                _patch(bits[0], bits[1], stats, fixed)
                train = np.load(Path(a.data).with_name("train.npz"))["x"][:a.calibrate, None]
                measure(model, torch.from_numpy(train), eps[:0].new_zeros(
                    (len(train), eps.shape[1])), fixed=fixed)
                fixed["calibrate"] = False
            elif bits:
                _patch(*bits, stats)
            t0 = time.perf_counter()
            kl, recon = measure(model, x, eps, fixed=fixed)
            rows.append({"setting": name, "kl_nats": kl, "recon_nats": recon,
                         "total_nats": kl + recon, "max_accumulator": stats["max_accumulator"],
                         "seconds": time.perf_counter() - t0})
            print(f"{name:8s} KL {kl:.3f} + recon {recon:.3f} = {kl + recon:.3f} nats/image, "
                  f"max |accumulator| {stats['max_accumulator']:.3g}", flush=True)
    finally:
        _restore()
    base = rows[0]["total_nats"]
    stem = Path(a.out) / "quantisation-binarized_mnist-test"
    stem.with_suffix(".json").write_text(json.dumps({"n_images": a.n, "model": a.model,
                                                     "rows": rows}, indent=2) + "\n")
    lines = [f"# Integer arithmetic's rate cost: {a.n} binarized MNIST test images, "
             f"{Path(a.model).name}", "",
             "Post-training fake quantisation of every conv and linear layer (weights per "
             "output channel, inputs per tensor, each batch's own scale); nonlinearities float. "
             "The last row: input scales fixed per layer from the first training images "
             "(calibration), and tanh / sigmoid as tables (8-bit input on [-8, 8], 8-bit "
             "output). `python -m benchmarks.quantisation`.", "",
             "| setting | KL nats | recon nats | total nats | vs float32 | max \\|accumulator\\| |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['kl_nats']:.3f} | {r['recon_nats']:.3f} | "
                     f"{r['total_nats']:.3f} | {100 * (r['total_nats'] / base - 1):+.3f}% | "
                     f"{r['max_accumulator']:.3g} |")
    lines += ["", "float32 sums integers exactly while every partial sum stays below 2^24 = "
              "1.68e7; float64 below 2^53 = 9.0e15."]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
