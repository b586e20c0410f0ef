"""Alice and Bob: tour-ordered bits-back coding of a dataset with an ACN — the one place where
networks meet codecs.

Layout. The tour (greedy nearest-unvisited-neighbour order of the codes) is cut into B
contiguous chains coded in lock-step: at step t every chain still running sends its t-th
image, and every network call is one batch of B rows (rows of finished chains are padding,
identical on both sides). Chain lengths fall off by powers of two at the end (`chain_lengths`)
so that Alice's first bits-back pop needs only a few initial bits.

Bob, at step t = 0, 1, ...  (rows = chains still running at t):
    pop z_t   under p(z | c_{t-1})  (t = 0: the unconditional GMM p(z))
    pop x_t   sub-pixel by sub-pixel under the PixelCNN r(x | z_t)   (PixelStepper)
    c_t = encoder(x_t);  push z_t under q(z | x_t) = N(c_t, I)     (bits back)
Alice runs the exact inverse for t = T-1, ..., 0 on one ANS stack. With `--order keep` the
permutation is pushed first (it sits under the images and doubles as initial bits) and Bob
pops it last; finally Bob checks that what is left is exactly the seeded initial bits.

Exactness: both sides call `Coder.step_networks` / `pixel_codec` etc., i.e. the same functions
on the same batches, in float32 with a fixed torch thread count; Alice's pixel probabilities
come from the same PixelStepper as Bob's, teacher-forced with the true pixels.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from codec import (AnsStack, Bernoulli, Categorical, DEFAULT_GRID, BinGrid,
                   DiscretisedDiagonalMixture, DiscretisedGaussian, DiscretisedMixture)
from .nn.stepper import PixelStepper

__all__ = ["chain_lengths", "default_chains", "seed_words", "fingerprint", "Coder", "Costs", "Layout",
           "encode_dataset", "decode_dataset"]


def default_chains(n: int) -> int:
    """B ~ sqrt(N), at most 256: few chain starts, batches large enough to be efficient."""
    return max(1, min(256, n, round(math.sqrt(n))))


def chain_lengths(n: int, b: int) -> np.ndarray:
    """Lengths of B contiguous chains covering N images, non-increasing; chain b is shorter
    than chain 0 by ceil(log2(b + 1)) (give or take one), so 1, 2, 4, ... chains run in the
    last steps."""
    if n < 1 or not 1 <= b <= n:
        raise ValueError(f"need 1 <= chains <= images, got {b} chains for {n} images")
    drop = np.ceil(np.log2(np.arange(b) + 1)).astype(np.int64)
    t = (n + drop.sum()) // b
    lengths = t - drop
    while lengths.min() < 1:          # too few images for the ramp: flatten it
        drop = np.maximum(drop - 1, 0)
        t = (n + drop.sum()) // b
        lengths = t - drop
    lengths[: n - lengths.sum()] += 1
    assert lengths.sum() == n and np.all(np.diff(lengths) <= 0)
    return lengths


MIN_WEIGHT = 1e-6   # mixture components below this weight are left out of the prior's table


def _significant(weights: np.ndarray, means: np.ndarray, scales: np.ndarray):
    """Keep only the k components per row that any row needs (weight >= MIN_WEIGHT; the others
    get weight 0). Trained priors are nearly one-hot (at most 2 of 8 components reach 1e-6 on
    binarized MNIST), and the table costs time linear in the components: this makes it ~4x
    cheaper while changing the coded distribution by < 8e-6 in mass. Deterministic, so Alice
    and Bob build identical tables."""
    k = max(1, int((weights >= MIN_WEIGHT).sum(-1).max()))
    order = np.argsort(-weights, axis=-1, kind="stable")[..., :k]          # (B, D, k)
    pick = lambda a: np.take_along_axis(a, order, axis=-1)
    w = pick(weights)
    return np.where(w >= MIN_WEIGHT, w, 0.0), pick(means), pick(scales)


@dataclass
class StepBatch:
    """Network outputs for one lock-step batch (B rows; only `active` rows are coded)."""
    active: np.ndarray        # (B,) bool
    codes: torch.Tensor       # (B, D) encoder means c_t, float32


class Coder:
    """The computations Alice and Bob share: one object per (model, grid, threads)."""

    def __init__(self, model, gmm, grid: BinGrid = DEFAULT_GRID, threads: int = 1):
        self.model, self.gmm, self.grid, self.threads = model, gmm, grid, threads
        # Pin the convolution backend: with mkldnn off, batches >= 16 go to NNPACK, whose
        # results change with inputs beyond the mask. Alice and Bob both run with it on.
        torch.backends.mkldnn.enabled = True
        torch.set_num_threads(threads)
        cfg = model.config
        self.shape = (cfg.channels, cfg.height, cfg.width)
        self.binary = cfg.binary

    # -- networks (float32, fixed batch composition) ------------------------------------------
    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder means c (B, D) of raw pixels x (B, C, H, W)."""
        return self.model.encoder(x)

    def prior_codec(self, prev_codes: torch.Tensor | None, active: np.ndarray):
        """p(z | c_prev) for the active rows, or the unconditional GMM when prev is None."""
        n = int(active.sum())
        if prev_codes is None:
            w, mu, sc = self.gmm
            return DiscretisedDiagonalMixture(w, mu, sc, n, self.grid)
        with torch.no_grad():
            p = self.model.prior(prev_codes)                   # (B, D, M) each
        rows = torch.from_numpy(active)
        weights = torch.softmax(p.logits.double(), dim=-1)[rows].numpy()
        return DiscretisedMixture(*_significant(weights, p.means[rows].double().numpy(),
                                                p.scales[rows].double().numpy()), self.grid)

    def posterior_codec(self, codes: torch.Tensor, active: np.ndarray):
        """q(z | x) = N(c, I) on the grid for the active rows."""
        return DiscretisedGaussian(codes[torch.from_numpy(active)].double().numpy(), 1.0,
                                   self.grid)

    def z_tensor(self, z_bins: np.ndarray, active: np.ndarray) -> torch.Tensor:
        """Latent bin indices of the active rows -> z values (B, D) float32, zeros elsewhere."""
        z = np.zeros((active.size, z_bins.shape[1]))
        z[active] = self.grid.value(z_bins)
        return torch.from_numpy(z).float()

    def pixel_codec(self, logits: torch.Tensor, active: np.ndarray):
        """The entropy model of one sub-pixel for the active rows, from its logits."""
        lg = logits[torch.from_numpy(active)].double().numpy()
        if self.binary:
            return Bernoulli(1.0 / (1.0 + np.exp(-lg)))
        lg = lg - lg.max(axis=1, keepdims=True)
        return Categorical(np.exp(lg))

    def stepper(self, z: torch.Tensor) -> PixelStepper:
        return PixelStepper(self.model.decoder, z, self.shape[1], self.shape[2])


@dataclass
class Layout:
    """Where each tour position sits: chain b holds tour[starts[b] : starts[b] + lengths[b]]."""
    lengths: np.ndarray

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]])

    @property
    def steps(self) -> int:
        return int(self.lengths[0])

    def active(self, t: int) -> np.ndarray:
        return self.lengths > t

    def positions(self, t: int) -> np.ndarray:
        """Tour positions coded at step t (active rows only, in chain order)."""
        return (self.starts + t)[self.active(t)]


def seed_words(n_first: int, latent_dim: int) -> int:
    """Initial 32-bit words for Alice's first posterior pop (about 12 bits per latent dim)."""
    return math.ceil(n_first * latent_dim * 12 / 32) + 2


@dataclass
class Costs:
    """Ideal code lengths (bits) of what Alice coded, summed over images."""
    kl_bits: float = 0.0
    kl_start_bits: float = 0.0   # the part of kl_bits coded under the unconditional prior
    recon_bits: float = 0.0


def _batch(images: np.ndarray, tour: np.ndarray, layout: Layout, t: int) -> torch.Tensor:
    """Raw pixels of step t as a (B, C, H, W) uint8 batch, zeros in finished chains' rows."""
    b = layout.lengths.size
    x = np.zeros((b,) + images.shape[1:], dtype=np.uint8)
    x[layout.active(t)] = images[tour[layout.positions(t)]]
    return torch.from_numpy(x)


def encode_dataset(coder: Coder, images: np.ndarray, tour: np.ndarray, layout: Layout,
                   stack: AnsStack, progress=None) -> Costs:
    """Alice: push every image (N, C, H, W) uint8, in tour order along the chains, onto stack."""
    steps = range(layout.steps)
    codes = [coder.codes(_batch(images, tour, layout, t)) for t in steps]
    costs = Costs()
    for t in reversed(steps):
        active = layout.active(t)
        x = _batch(images, tour, layout, t)
        posterior = coder.posterior_codec(codes[t], active)
        z_bins = posterior.pop(stack)
        coded = []                      # (logits, true values) per sub-pixel, raster order
        rows = torch.from_numpy(active)

        def teacher(r, c, g, logits):   # keep float32 logits; tables are built at push time
            coded.append((logits, x[rows, g, r, c].numpy()))
            return x[:, g, r, c]

        coder.stepper(coder.z_tensor(z_bins, active)).run(teacher)
        for logits, values in reversed(coded):    # Bob pops them in raster order
            codec = coder.pixel_codec(logits, active)
            codec.push(stack, values.astype(np.int64))
            costs.recon_bits += float(codec.info_bits(values).sum())
        prior = coder.prior_codec(codes[t - 1] if t else None, active)
        prior.push(stack, z_bins)
        kl = float(prior.info_bits(z_bins).sum() - posterior.info_bits(z_bins).sum())
        costs.kl_bits += kl
        costs.kl_start_bits += kl if t == 0 else 0.0
        if progress:
            progress(int(active.sum()))
    return costs


def decode_dataset(coder: Coder, layout: Layout, stack: AnsStack, progress=None) -> np.ndarray:
    """Bob: pop the images back, in tour order; returns (N, C, H, W) uint8."""
    n = int(layout.lengths.sum())
    out = np.zeros((n,) + coder.shape, dtype=np.uint8)
    prev = None
    for t in range(layout.steps):
        active = layout.active(t)
        z_bins = coder.prior_codec(prev, active).pop(stack)

        def decode(r, c, g, logits):
            values = torch.zeros(active.size, dtype=torch.uint8)
            values[torch.from_numpy(active)] = torch.from_numpy(
                coder.pixel_codec(logits, active).pop(stack).astype(np.uint8))
            return values

        x = coder.stepper(coder.z_tensor(z_bins, active)).run(decode).to(torch.uint8)
        prev = coder.codes(x)
        coder.posterior_codec(prev, active).push(stack, z_bins)
        out[layout.positions(t)] = x[torch.from_numpy(active)].numpy()
        if progress:
            progress(int(active.sum()))
    return out


def fingerprint(coder: Coder, rows: int) -> str:
    """Hash of what this machine computes on a fixed probe: codes, prior tables and stepper
    logits for `rows` seeded images (the archive's batch size). Decompression refuses an
    archive whose fingerprint differs, instead of decoding garbage."""
    rng = np.random.default_rng(12345)
    hi = 2 if coder.binary else 256
    x = torch.from_numpy(rng.integers(0, hi, (rows,) + coder.shape).astype(np.uint8))
    active = np.ones(rows, dtype=bool)
    h = hashlib.sha256()
    codes = coder.codes(x)
    h.update(codes.numpy().tobytes())
    h.update(coder.prior_codec(codes, active).probs.tobytes())
    h.update(coder.prior_codec(None, active).mass.tobytes())
    z = coder.grid.index(codes.double().numpy())
    probe = AnsStack.with_initial_bits(1, seed=0)              # constriction's own arithmetic
    coder.posterior_codec(codes, active).push(probe, z)
    h.update(probe.to_bytes())

    def teacher(r, c, g, logits):
        h.update(logits.numpy().tobytes())
        return x[:, g, r, c]

    coder.stepper(coder.z_tensor(z, active)).run(teacher)
    return h.hexdigest()[:32]
