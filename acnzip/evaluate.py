"""Evaluating a model: the ACN paper's Table 2 on a dataset treated as its own set (section
3.3), in nats per image, acnzip's associative figures, and Table 3's linear probe of the codes.

Every KL is the single-sample estimate log q(z|x) - log p(z) at z = c + eps (unbiased; the same
eps per image for every prior, so differences between rows are not noise in eps), which is also
the net bits-back cost of coding that z. Reconstruction is -log r(x|z) at that same z.

- kl_k1, kl_k5, kl_k10: the prior p(z|c_hat) with c_hat drawn uniformly among the K nearest
  codes of the set, never the image's own (section 3.3);
- kl_tour: along the greedy nearest-unvisited-neighbour tour, each image conditioned on its
  predecessor's code, the tour's first image under the unconditional p(z);
- kl_uncond: under the unconditional p(z) (the GMM fitted after training);
- ordered = kl_tour + recon (what compress --order tour --tour greedy approaches), unordered =
  kl_uncond + recon.

Beside them, acnzip's shorter path: kl_short, as kl_tour along tour.short_tour (greedy
matching, 2-opt, Or-opt), and short = kl_short + recon (what compress --order tour approaches).

Beside the paper's rows, the associative figures of acnzip's own protocol (protocol.py), each
the latent's net cost with an exact posterior over the base and the K = 16 held codes nearest z:
-log(w p(z) + (1 - w)/H sum_{j in K nearest held} p(z | c_j)) + log q(z | x), with the held
images those of the batches before (protocol.set_batches, B = 256), w = 1/16:
- kl_keep: the images in their given order (compress --order keep);
- kl_set: in a seeded random order, less the bits the multiset choices return, ln(N! / prod
  m!) / N for multiplicities m (compress --order set);
- keep = kl_keep + recon, set = kl_set + recon.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from codec.associative import nearest
from .codestore import CodeStore
from .data import load_dataset
from .gmm import DiagonalGMM
from .modelfile import check_fits, default_model_path, load_model
from .nn import ACN
from .nn.prior import mixture_log_prob, posterior_log_prob
from .protocol import BASE_WEIGHT, SET_BATCH, SET_NEIGHBOURS, set_batches
from .runtime import LN2, torch_session
from .tour import greedy_tour, short_tour

__all__ = ["table2", "evaluate_model", "coder_kls", "conditional_kl", "unconditional_kl",
           "tour_kl", "associative_kl", "log_multinomial", "TABLE2_ROWS", "pca_basis",
           "linear_probe", "probe"]

TABLE2_ROWS = ("kl_k1", "kl_k5", "kl_k10", "kl_tour", "kl_uncond", "recon", "ordered",
               "unordered", "kl_short", "short", "kl_keep", "kl_set", "keep", "set")


@torch.no_grad()
def conditional_kl(model: ACN, codes: torch.Tensor, cond: torch.Tensor, eps: torch.Tensor,
                   batch: int = 1024) -> np.ndarray:
    """KL estimate (N,) in nats of q(z|x_i) = N(codes_i, I) against p(z | cond_i)."""
    out = []
    for i in range(0, len(codes), batch):
        z = codes[i:i + batch] + eps[i:i + batch]
        log_p = mixture_log_prob(z, model.prior(cond[i:i + batch]))
        out.append(posterior_log_prob(eps[i:i + batch]) - log_p.double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def unconditional_kl(gmm: DiagonalGMM, codes: torch.Tensor, eps: torch.Tensor) -> np.ndarray:
    """KL estimate (N,) in nats of q(z|x_i) against the unconditional p(z)."""
    z = (codes.double() + eps.double()).numpy()
    return posterior_log_prob(eps) - gmm.log_prob(z)


def tour_kl(model: ACN, gmm: DiagonalGMM, codes: torch.Tensor, eps: torch.Tensor,
            tour: np.ndarray) -> np.ndarray:
    """KL estimate (N,) in nats along `tour` (image order): each image conditioned on the code
    of its predecessor on the tour, the first one on the unconditional p(z)."""
    kl = np.empty(len(codes))
    t = torch.from_numpy(np.asarray(tour, dtype=np.int64))
    first = t[:1]
    kl[tour[:1]] = unconditional_kl(gmm, codes[first], eps[first])
    kl[tour[1:]] = conditional_kl(model, codes[t[1:]], codes[t[:-1]], eps[t[1:]])
    return kl


@torch.no_grad()
def associative_kl(model: ACN, gmm: DiagonalGMM, codes: torch.Tensor, eps: torch.Tensor,
                   order: np.ndarray, batch: int = SET_BATCH, k: int = SET_NEIGHBOURS,
                   base_weight: float = BASE_WEIGHT) -> np.ndarray:
    """KL estimate (N,) in nats (image order) of each latent under the associative prior over
    the images of earlier batches when the images are decoded in `order` (module docstring);
    the first batch under the GMM alone."""
    z = codes + eps                                                     # (N, D)
    prior = model.prior(codes)
    log_q = posterior_log_prob(eps)
    log_base = gmm.log_prob(z.double().numpy())
    kl = np.empty(len(codes))
    start = 0
    for size in set_batches(len(codes), batch):
        rows, held = order[start:start + size], order[:start]
        if start == 0:
            kl[rows] = log_q[rows] - log_base[rows]
        else:
            cand = held[nearest(z[rows].double().numpy(), codes[held].double().numpy(), k)]
            kk = cand.shape[1]
            pick = lambda a: a[torch.from_numpy(cand.ravel())]
            params = type(prior)(pick(prior.logits), pick(prior.means), pick(prior.scales))
            zr = z[rows].repeat_interleave(kk, dim=0)
            log_p = mixture_log_prob(zr, params).double().numpy().reshape(size, kk)
            held_part = np.log((1 - base_weight) / start) + np.logaddexp.reduce(log_p, axis=1)
            mix = np.logaddexp(np.log(base_weight) + log_base[rows], held_part)
            kl[rows] = log_q[rows] - mix
        start += size
    return kl


def log_multinomial(pixels: np.ndarray) -> float:
    """ln(N! / prod m!) for the multiplicities m of equal images: what a set's order is worth."""
    _, counts = np.unique(pixels.reshape(len(pixels), -1), axis=0, return_counts=True)
    return math.lgamma(len(pixels) + 1) - sum(math.lgamma(m + 1) for m in counts)


@torch.no_grad()
def _codes_and_recon(model: ACN, pixels: np.ndarray, eps: torch.Tensor, batch: int,
                     quiet: bool) -> tuple[torch.Tensor, np.ndarray]:
    """Encoder means (N, D) and -log r(x|z) (N,) in nats at z = c + eps, one full pass each."""
    codes, recon = [], []
    for i in tqdm(range(0, len(pixels), batch), desc="eval", unit="batch", disable=quiet,
                  leave=False):
        x = torch.from_numpy(pixels[i:i + batch])
        c = model.encoder(x)
        codes.append(c)
        recon.append(model.decoder.nll(x, model.decoder(x, c + eps[i:i + batch])).double().numpy())
    return torch.cat(codes), np.concatenate(recon)


def _tour_and_set_kl(model: ACN, gmm: DiagonalGMM, codes: torch.Tensor, eps: torch.Tensor,
                     pixels: np.ndarray, seed: int) -> tuple[float, float]:
    """Table 2's kl_tour and kl_set (nats/image) at z = codes + eps, the set in the order
    `seed` draws, net of the bits that order returns."""
    order = np.random.default_rng(seed).permutation(len(codes))
    kl_tour = float(tour_kl(model, gmm, codes, eps, greedy_tour(codes.numpy())).mean())
    kl_set = float(associative_kl(model, gmm, codes, eps, order).mean()
                   - log_multinomial(pixels) / len(codes))
    return kl_tour, kl_set


@torch.no_grad()
def coder_kls(model: ACN, gmm: DiagonalGMM, pixels: np.ndarray, seed: int = 0) -> dict:
    """Table 2's kl_tour (along the greedy tour) and kl_set (the associative prior in a seeded
    order, net of the bits the order returns) for `pixels` (N, C, H, W), nats/image, equal to
    evaluate_model's for the same seed (z = c + eps, eps and order seeded as there), without
    the rest of the table. `model` on the CPU."""
    c = torch.from_numpy(model.codes(pixels))
    eps = torch.randn(c.shape, generator=torch.Generator().manual_seed(seed))
    kl_tour, kl_set = _tour_and_set_kl(model, gmm, c, eps, pixels, seed)
    return {"kl_tour": kl_tour, "kl_set": kl_set}


def evaluate_model(model: ACN, gmm: DiagonalGMM, pixels: np.ndarray, seed: int = 0,
                   batch: int = 256, quiet: bool = True) -> dict:
    """Table 2 for `pixels` (N, C, H, W) uint8 as the model sees them; nats per image."""
    n = len(pixels)
    if n < 2:
        raise ValueError("Table 2 needs at least 2 images (neighbours, a tour)")
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn((n, model.config.latent_dim), generator=gen)             # (N, D)
    codes, recon = _codes_and_recon(model, pixels, eps, batch, quiet)
    store, rng = CodeStore.from_codes(codes.numpy()), np.random.default_rng(seed)
    own = np.arange(n)
    out = {"n_images": n}
    for k in (1, 5, 10):
        c_hat = torch.from_numpy(store.sample_neighbours(codes.numpy(), own, k, rng))
        out[f"kl_k{k}"] = float(conditional_kl(model, codes, c_hat, eps).mean())
    kl_tour, kl_set = _tour_and_set_kl(model, gmm, codes, eps, pixels, seed)
    out["kl_tour"] = kl_tour
    out["kl_uncond"] = float(unconditional_kl(gmm, codes, eps).mean())
    out["recon"] = float(recon.mean())
    out["ordered"] = out["kl_tour"] + out["recon"]
    out["unordered"] = out["kl_uncond"] + out["recon"]
    out["kl_short"] = float(tour_kl(model, gmm, codes, eps, short_tour(codes.numpy())).mean())
    out["short"] = out["kl_short"] + out["recon"]
    out["kl_keep"] = float(associative_kl(model, gmm, codes, eps, own).mean())
    out["kl_set"] = kl_set
    out["keep"] = out["kl_keep"] + out["recon"]
    out["set"] = out["kl_set"] + out["recon"]
    dims = int(np.prod(pixels.shape[1:]))
    out["bits_per_dim_ordered"] = out["ordered"] / (LN2 * dims)
    out["bits_per_dim_unordered"] = out["unordered"] / (LN2 * dims)
    out["dims_per_image"], out["seed"] = dims, seed
    return out


def table2(data, model=None, threads: int | None = None, seed: int = 0,
           quiet: bool = True) -> dict:
    """Table 2 of DATA (a path or FILE.npz:KEY) under MODEL (default: the shipped one)."""
    torch_session(threads)
    ds = load_dataset(data)
    pixels = ds.model_pixels()
    path = model or default_model_path(pixels.shape[1:], ds.binary)
    mf = load_model(path)
    check_fits(mf, pixels.shape[1:], ds.binary, f"model {getattr(path, 'name', path)}")
    out = evaluate_model(mf.model, mf.gmm, pixels, seed=seed, quiet=quiet)
    out["model"] = str(path)
    return out


def format_table2(t: dict) -> str:
    """The rows of Table 2 as text: nats per image and bits per dimension."""
    dims = t["dims_per_image"]
    lines = [f"{'':10s} {'nats/image':>11s} {'bits/dim':>9s}   ({t['n_images']} images)"]
    for row in TABLE2_ROWS:
        lines.append(f"{row:10s} {t[row]:11.2f} {t[row] / (LN2 * dims):9.4f}")
    return "\n".join(lines)


# ----- Table 3: what a linear classifier reads from the codes -----

def pca_basis(x: np.ndarray, k: int):
    """Principal axes of rows x (N, F): (mean (F,), axes (k, F), explained variance ratio (k,)).

    Axes by decreasing variance, each signed so its largest-magnitude entry is positive.
    """
    x = torch.from_numpy(np.asarray(x, dtype=np.float64))
    mean = x.mean(dim=0)
    xc = x - mean
    cov = xc.T @ xc / max(len(x) - 1, 1)                                          # (F, F)
    var, vec = (t.numpy() for t in torch.linalg.eigh(cov))      # torch: numpy's is slow here
    order = np.argsort(-var, kind="stable")[:k]
    axes = vec[:, order].T                                                        # (k, F)
    sign = np.sign(axes[np.arange(len(axes)), np.argmax(np.abs(axes), axis=1)])
    axes = axes * np.where(sign == 0, 1.0, sign)[:, None]
    total = var.clip(min=0).sum()
    return mean.numpy(), axes, var[order].clip(min=0) / (total if total > 0 else 1.0)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, l2: float = 1e-4, max_iter: int = 200) -> float:
    """Test accuracy (fraction) of multinomial logistic regression fitted on (train_x, train_y).

    Features are standardised with the training mean and std; the loss is the mean
    cross-entropy (nats) + l2 * |W|^2, minimised by full-batch L-BFGS from zero weights in
    float64, so the result is deterministic.
    """
    mu, sd = train_x.mean(axis=0), train_x.std(axis=0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    classes, y = np.unique(train_y, return_inverse=True)
    xtr = torch.from_numpy((np.asarray(train_x, np.float64) - mu) / sd)            # (N, F)
    ytr = torch.from_numpy(y.astype(np.int64))
    w = torch.zeros(xtr.shape[1], len(classes), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, ytr) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        xte = torch.from_numpy((np.asarray(test_x, np.float64) - mu) / sd)
        pred = classes[(xte @ w + b).argmax(dim=1).numpy()]
    return float(np.mean(pred == test_y))


def probe(train_codes, train_pixels, train_y, test_codes, test_pixels, test_y,
          quiet: bool = True) -> dict:
    """Table 3: probe accuracy of codes, raw pixels and pixels' PCA-16 (fit on train)."""
    flat = lambda p: p.reshape(len(p), -1).astype(np.float64)  # noqa: E731
    ptr, pte = flat(train_pixels), flat(test_pixels)
    mean, axes, _ = pca_basis(ptr, 16)
    features = {"codes": (train_codes, test_codes), "pixels": (ptr, pte),
                "pca16": ((ptr - mean) @ axes.T, (pte - mean) @ axes.T)}
    out = {}
    for name, (a, b) in tqdm(features.items(), desc="linear probe", disable=quiet, leave=False):
        out[f"{name}_accuracy"] = linear_probe(np.asarray(a, np.float64), train_y,
                                               np.asarray(b, np.float64), test_y)
    counts = np.bincount(test_y)
    return {**out, "n_train": int(len(train_y)), "n_test": int(len(test_y)),
            "n_classes": int(len(np.unique(train_y))),
            "majority_accuracy": float(counts.max() / counts.sum())}
