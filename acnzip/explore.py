"""`acnzip explore`: what the codes capture (ACN paper section 4; Table 3; Figures 3-6, 14).

Figures (PNG, acnzip/figures.py) and summary.json written to one output folder:

  reconstructions.png  real image, then decoder samples x ~ r(x|z) with z = its code c
  samples.png          x ~ r(x|z) with z ~ p(z) (the model file's GMM), beside z ~ q(z|x) =
                       N(c, I) of unrelated real images (what p(z) was fitted to imitate)
  daydreams.png        chains x -> c -> z ~ p(z|c) (the prior network) -> x' ~ r(x|z) -> ...
  neighbours.png       a query, its nearest images by code (L2), then by pixels (L2)
  pca.png              the codes projected on their first two principal axes, by label
  summary.json         what was drawn, PCA variance, and the linear probe (Table 3)

The linear probe (multinomial logistic regression on standardised features) is trained on
`train_data` and reported on `data`, for the codes, the raw pixels and the pixels' first 16
principal components (acnzip/evaluate.py: `probe`); it needs labels for both. Everything random is drawn from generators
seeded by (seed, figure), so a run is reproducible bit for bit and each figure's randomness
does not depend on the others' sizes.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import __version__
from . import figures as fig
from .atomic import atomic_directory, check_folder_output
from .data import Dataset, load_dataset
from .errors import AcnzipError
from .evaluate import pca_basis, probe
from .modelfile import ModelFile, load_model
from .nn import ACN
from .nn.stepper import PixelStepper

__all__ = ["ExploreError", "explore", "FIGURES", "load_labels", "Sampler",
           "sample_prior"]

# Stream numbers for the per-figure generators (seed, stream).
_RECON, _PRIOR, _POSTERIOR, _DREAM, _NEIGHBOURS, _SCATTER = range(6)


class ExploreError(AcnzipError):
    """explore cannot proceed; the message says why in one line."""


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _torch_gen(seed: int, stream: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, stream, 1]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2 ** 63 - 1))


# -- inputs ------------------------------------------------------------------------------------
def load_labels(labels, n: int, what: str = "labels") -> np.ndarray:
    """Labels as int64 (N,): an array, a .npy file, or a .npz file (key `y`, or its only array).

    `n`: the number of images they must describe.
    """
    y = _read_labels(Path(labels)) if isinstance(labels, (str, Path)) else np.asarray(labels)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1 or len(y) != n:
        raise ExploreError(f"{what} have shape {y.shape}, expected ({n},): one per image")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)) or \
            (len(y) and y.min() < 0):
        raise ExploreError(f"{what} must be non-negative integers (dtype {y.dtype})")
    return y.astype(np.int64)


def _read_labels(path: Path) -> np.ndarray:
    """The array in a .npy file, or in a .npz file under key `y` (or its only key)."""
    if not path.is_file():
        raise ExploreError(f"{path}: no such labels file")
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            if "y" in z.files or len(z.files) == 1:
                return z["y" if "y" in z.files else z.files[0]]
            raise ExploreError(f"{path} holds {', '.join(z.files)} and no 'y'")
    except (OSError, ValueError, EOFError) as exc:
        if isinstance(exc, ExploreError):
            raise
        raise ExploreError(f"cannot read labels {path}: {type(exc).__name__}") from None


def _dataset(data) -> Dataset:
    return data if isinstance(data, Dataset) else load_dataset(data)


def _check_fits(mf: ModelFile, pixels: np.ndarray, ds: Dataset) -> None:
    cfg = mf.config
    if cfg.image_shape != tuple(pixels.shape[1:]) or cfg.binary != ds.binary:
        kind = lambda b: "binary" if b else "8-bit"  # noqa: E731
        C, H, W = pixels.shape[1:]
        raise ExploreError(f"the model is for {kind(cfg.binary)} {cfg.height}x{cfg.width}x"
                           f"{cfg.channels} images, {ds.source} holds {kind(ds.binary)} "
                           f"{H}x{W}x{C}")


# -- the networks ------------------------------------------------------------------------------
class Sampler:
    """Draws images from the decoder r(x|z) with the cached PixelStepper, one progress bar."""

    def __init__(self, model: ACN, bar: tqdm):
        self.model, self.bar = model, bar
        cfg = model.config
        self.H, self.W, self.C, self.binary = cfg.height, cfg.width, cfg.channels, cfg.binary

    @torch.no_grad()
    def decode(self, z: torch.Tensor, gen: torch.Generator) -> np.ndarray:
        """z (B, D) -> sampled model pixels (B, C, H, W) uint8, sub-pixel by sub-pixel."""
        def choose(r, c, g, logits):
            if self.binary:                                          # logits (B,)
                u = torch.rand(logits.shape, generator=gen, dtype=torch.float64)
                x = (u < torch.sigmoid(logits.double())).long()
            else:                                                    # logits (B, 256)
                p = torch.softmax(logits.double(), dim=-1)
                x = torch.multinomial(p, 1, generator=gen)[:, 0]
            if c == self.W - 1 and g == self.C - 1:
                self.bar.update(1)
            return x

        stepper = PixelStepper(self.model.decoder, z.float(), self.H, self.W)
        return stepper.run(choose).to(torch.uint8).numpy()


@torch.no_grad()
def sample_prior(model: ACN, codes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """z (B, D) ~ p(z|c) from the prior network's per-dimension mixtures given codes c (B, D)."""
    p = model.prior(codes)                                           # (B, D, M) each
    B, D, M = p.means.shape
    k = torch.multinomial(p.weights.double().reshape(B * D, M), 1, generator=gen).view(B, D, 1)
    eps = torch.randn((B, D), generator=gen, dtype=torch.float64)
    mean = p.means.double().gather(-1, k)[..., 0]
    scale = p.scales.double().gather(-1, k)[..., 0]
    return (mean + scale * eps).float()


# -- figures -----------------------------------------------------------------------------------
@dataclass
class _Ctx:
    """What every figure reads: the model, the explored images, their codes and the seed."""
    mf: ModelFile
    pixels: np.ndarray          # (N, C, H, W) uint8 model pixels
    codes: np.ndarray           # (N, D) float32 encoder means
    labels: np.ndarray | None   # (N,) int64
    sampler: Sampler
    seed: int

    def tile(self, x: np.ndarray) -> np.ndarray:
        return fig.tile_rgb(x, self.mf.config.binary)

    def pick(self, stream: int, n: int) -> np.ndarray:
        """n distinct image indices (seeded per figure)."""
        return _rng(self.seed, stream).choice(len(self.pixels), size=min(n, len(self.pixels)),
                                              replace=False)


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| over sub-pixels, in model pixel units (for binary data: the fraction that
    differ)."""
    return float(np.mean(np.abs(a.astype(np.int64) - b.astype(np.int64))))


def reconstructions(ctx: _Ctx, n: int, samples: int):
    """Figure 4: each real image, then `samples` draws x ~ r(x|z) with z = its code c."""
    idx = ctx.pick(_RECON, n)
    z = torch.from_numpy(ctx.codes[idx]).repeat_interleave(samples, 0)          # (n*S, D)
    x = ctx.sampler.decode(z, _torch_gen(ctx.seed, _RECON))
    x = x.reshape(len(idx), samples, *x.shape[1:])                              # (n, S, C, H, W)
    rows = [[ctx.tile(ctx.pixels[i])] + [ctx.tile(s) for s in x[r]] for r, i in enumerate(idx)]
    img = fig.titled(fig.grid(rows, sep_after=(0,)), "real | x ~ r(x|z), z = code c")
    info = {"indices": idx.tolist(), "samples_per_image": samples,
            "mean_abs_diff_to_source": _mean_abs_diff(x, ctx.pixels[idx][:, None])}
    return img, info


def samples_figure(ctx: _Ctx, n: int, per_row: int):
    """Figure 5: x ~ r(x|z) with z ~ p(z) (the GMM), beside z ~ N(c, I) of unrelated images.

    The GMM models z = c + eps, so the right panel is what the left one should look like.
    """
    z_prior = torch.from_numpy(ctx.mf.gmm.sample(n * per_row, _rng(ctx.seed, _PRIOR))).float()          # (n*S, D)
    idx = ctx.pick(_POSTERIOR, n)
    gen = _torch_gen(ctx.seed, _PRIOR)
    c = torch.from_numpy(ctx.codes[idx]).repeat_interleave(per_row, 0)
    z_post = c + torch.randn(c.shape, generator=gen)                             # (n*S, D)
    x = ctx.sampler.decode(torch.cat([z_prior, z_post]), gen)
    left = x[:len(z_prior)].reshape(n, per_row, *x.shape[1:])
    right = x[len(z_prior):].reshape(len(idx), per_row, *x.shape[1:])
    rows_l = [[ctx.tile(s) for s in row] for row in left]
    rows_r = [[ctx.tile(ctx.pixels[i])] + [ctx.tile(s) for s in right[r]]
              for r, i in enumerate(idx)]
    img = fig.side_by_side([fig.titled(fig.grid(rows_l), "z ~ p(z) (GMM)"),
                            fig.titled(fig.grid(rows_r, sep_after=(0,)),
                                       "image | z ~ q(z|x) = N(c, I)")])
    return img, {"prior_samples": int(len(z_prior)), "posterior_indices": idx.tolist(),
                 "samples_per_image": per_row}


def daydreams(ctx: _Ctx, n: int, steps: int):
    """Figure 6: x_0 real; x_t ~ r(x|z), z ~ p(z|c(x_{t-1})) from the prior network."""
    idx = ctx.pick(_DREAM, n)
    gen = _torch_gen(ctx.seed, _DREAM)
    chain = [ctx.pixels[idx]]                                                    # (n, C, H, W)
    model = ctx.mf.model
    with torch.no_grad():
        for _ in range(steps):
            c = model.encoder(torch.from_numpy(chain[-1]))                       # (n, D)
            chain.append(ctx.sampler.decode(sample_prior(model, c, gen), gen))
    rows = [[ctx.tile(x[r]) for x in chain] for r in range(len(idx))]
    img = fig.titled(fig.grid(rows, sep_after=(0,)),
                     f"real | {steps} steps of z ~ p(z|c), x ~ r(x|z), c = code of x")
    drift = [_mean_abs_diff(x, chain[0]) for x in chain[1:]]
    return img, {"indices": idx.tolist(), "steps": steps, "mean_abs_diff_to_start": drift}


def _nearest(dist: np.ndarray, k: int) -> np.ndarray:
    """The k smallest entries of each row of dist (q, N), ties to the lower index: (q, k)."""
    cols = np.arange(dist.shape[1])
    return np.stack([np.lexsort((cols, row))[:k] for row in dist])


def neighbours(ctx: _Ctx, n: int, k: int):
    """Figure 14: each query, its k nearest images by code (L2), then by pixels (L2).

    Pixel distances are exact integers (float64 sums of squared pixel differences).
    """
    idx = ctx.pick(_NEIGHBOURS, n)
    codes = ctx.codes.astype(np.float64)
    d_code = ((codes[None] - codes[idx][:, None]) ** 2).sum(-1)                   # (q, N)
    flat = ctx.pixels.reshape(len(ctx.pixels), -1).astype(np.float64)            # (N, P)
    sq = (flat * flat).sum(1)
    d_pix = sq[idx][:, None] + sq[None] - 2.0 * flat[idx] @ flat.T               # (q, N)
    rows_q = np.arange(len(idx))
    d_code[rows_q, idx] = d_pix[rows_q, idx] = np.inf                             # not itself
    k = min(k, len(ctx.pixels) - 1)
    by_code, by_pix = _nearest(d_code, k), _nearest(d_pix, k)
    rows = [[ctx.tile(ctx.pixels[i])] + [ctx.tile(ctx.pixels[j]) for j in by_code[r]]
            + [ctx.tile(ctx.pixels[j]) for j in by_pix[r]] for r, i in enumerate(idx)]
    img = fig.titled(fig.grid(rows, sep_after=(0, k)),
                     f"query | {k} nearest by code | {k} nearest by pixels")
    info = {"queries": idx.tolist(), "k": k,
            "shared_fraction": float(np.mean([len(set(a) & set(b)) / max(k, 1)
                                              for a, b in zip(by_code.tolist(),
                                                              by_pix.tolist())]))}
    if ctx.labels is not None:
        same = lambda nb: float(np.mean(ctx.labels[nb] == ctx.labels[idx][:, None]))  # noqa: E731
        info.update(code_label_agreement=same(by_code), pixel_label_agreement=same(by_pix))
    return img, info


def pca_scatter(ctx: _Ctx, max_points: int):
    """Figure 3: codes on their first two principal axes, coloured by label when known."""
    mean, axes, ratio = pca_basis(ctx.codes, 2)
    pts = (ctx.codes.astype(np.float64) - mean) @ axes.T                           # (N, 2)
    if pts.shape[1] < 2:                                                          # D = 1
        pts = np.concatenate([pts, np.zeros((len(pts), 1))], axis=1)
    order = _rng(ctx.seed, _SCATTER).permutation(len(pts))[:max_points]          # draw order
    labels = None if ctx.labels is None else ctx.labels[order]
    title = f"codes, PCA axes 1-2 ({100 * ratio.sum():.0f}% of variance)"
    img = fig.titled(fig.scatter(pts[order], labels), title)
    return img, {"points": int(len(order)), "explained_variance_ratio": ratio.tolist(),
                 "coloured_by_label": labels is not None}


# -- the command -------------------------------------------------------------------------------
FIGURES = ("reconstructions", "samples", "daydreams", "neighbours", "pca")


def _inputs(data, model, labels, train_data, train_labels):
    """Load and check everything before any work: (model file, dataset, pixels, labels,
    train pixels, train labels); train_* are None when there is no probe."""
    mf = model if isinstance(model, ModelFile) else load_model(model)
    ds = _dataset(data)
    pixels = ds.model_pixels()
    _check_fits(mf, pixels, ds)
    y = None if labels is None else load_labels(labels, len(pixels), "labels")
    if (train_data is None) != (train_labels is None):
        raise ExploreError("the linear probe needs both train_data and train_labels")
    if train_data is None:
        return mf, ds, pixels, y, None, None
    if y is None:
        raise ExploreError("the linear probe needs labels for the explored data too")
    tds = _dataset(train_data)
    try:
        train_pixels = tds.model_pixels(like=ds)
    except AcnzipError as exc:
        raise ExploreError(f"train_data: {exc}") from None
    return mf, ds, pixels, y, train_pixels, load_labels(train_labels, len(train_pixels),
                                                        "train labels")


def _sha256(model) -> str | None:
    """Hex digest of the model file's bytes (None for a ModelFile passed in directly)."""
    return None if isinstance(model, ModelFile) else hashlib.sha256(
        Path(model).read_bytes()).hexdigest()


def explore(data, model, outdir, labels=None, seed: int = 0, n: int = 8, train_data=None,
            train_labels=None, *, samples: int = 8, steps: int = 12, k: int = 8,
            scatter_points: int = 5000, force: bool = False, quiet: bool = False) -> dict:
    """Write the figures and summary.json for DATA under `outdir`; returns the summary.

    data, train_data: a DATA spec (folder, .npy, .npz[:KEY]) or a Dataset. model: a model file
    path (or a ModelFile). labels, train_labels: an int array or a .npy/.npz file (key y), one
    per image; the probe runs when train_data and both label sets are given. n: images (rows)
    per figure; samples: decoder samples per row; steps: daydream length; k: neighbours shown.
    `outdir` is created atomically and must not exist unless `force`.
    """
    if min(n, samples, steps, k, scatter_points) < 1 or seed < 0:
        raise ExploreError("n, samples, steps, k and scatter_points must be >= 1, seed >= 0")
    check_folder_output(Path(outdir), force)                   # before any work
    mf, ds, pixels, y, train_pixels, train_y = _inputs(data, model, labels, train_data,
                                                       train_labels)
    model_net = mf.model.eval()
    codes = model_net.codes(pixels)
    rows = (2 + steps) * mf.config.height                      # one tick per sampled image row
    with tqdm(total=rows, desc="explore: sampling", unit="row", disable=quiet,
              leave=False) as bar, torch.no_grad():
        ctx = _Ctx(mf, pixels, codes, y, Sampler(model_net, bar), seed)
        drawn = {"reconstructions": reconstructions(ctx, n, samples),
                 "samples": samples_figure(ctx, n, samples),
                 "daydreams": daydreams(ctx, n, steps),
                 "neighbours": neighbours(ctx, n, k),
                 "pca": pca_scatter(ctx, scatter_points)}
    summary = {"acnzip_version": __version__, "seed": seed, "data": ds.source,
               "model_sha256": _sha256(model), "n_images": int(len(pixels)), "latent_dim": mf.config.latent_dim,
               "figures": {name: f"{name}.png" for name in FIGURES},
               **{name: info for name, (_, info) in drawn.items()}, "probe": None}
    if train_pixels is not None:
        summary["probe"] = probe(model_net.codes(train_pixels), train_pixels, train_y,
                                 codes, pixels, y, quiet)
    with atomic_directory(Path(outdir), force) as tmp:
        for name, (img, _) in drawn.items():
            (tmp / f"{name}.png").write_bytes(fig.png_bytes(img))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
