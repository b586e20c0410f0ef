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

Exactness: both sides call `Coder.codes` / `prior_codec` / `pixel_codec` etc., i.e. the same
functions on the same batches, in float32 inside one `runtime.torch_session`; Alice's pixel
probabilities come from the same PixelStepper as Bob's, teacher-forced with the true pixels.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from codec import (AnsStack, Bernoulli, BitsBack, Categorical, Codec, DEFAULT_GRID, BinGrid,
                   DiscretisedDiagonalMixture, DiscretisedGaussian, DiscretisedMixture,
                   StackUnderflowError)
from codec import exactmath
from codec.associative import AssociativePrior, nearest
from codec.multiset import Multiset
from codec.portable import (BitsBackDiagonalMixture, PortableDiagonalMixture, PortableGaussian,
                            PortableMixture)
from codec.window import WindowedGaussian
from .nn.integer import IntegerACN, bernoulli_p, softmax_table
from .nn.integer_stepper import IntegerStepper
from .nn.stepper import PixelStepper

__all__ = ["chain_lengths", "default_chains", "seed_words", "fingerprint", "Coder", "Costs", "Layout",
           "encode_dataset", "decode_dataset", "PixelCodec", "set_batches", "SetTables",
           "associative_prior", "AssociativeDataset", "encode_from_initial_bits",
           "fingerprint_set", "SetCosts", "SET_BATCH", "SET_NEIGHBOURS", "BASE_WEIGHT"]


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


class Coder:
    """The computations Alice and Bob share: one object per (model, grid), used inside a
    `runtime.torch_session` (threads and backend pinned).

    `integer`: the model's integer-exact evaluation (nn/integer.py) for portable archives:
    the networks, and every table built from their outputs (codec/portable.py), are then the
    same on every machine. Without it the float32 networks and leaves.py tables are used,
    exact only where the computation is repeated identically (the fingerprint checks that).

    `window`: q(z|x) is coded on the bins within `window` of its mean (codec.window; format
    version 6); None: on the whole grid, as archives before version 6 were.

    `base_bits_back` (portable coders; format version 9): the GMM p(z) codes its component
    with bits back (codec.portable.BitsBackDiagonalMixture: the same code length, ~10x less
    work per latent) instead of the dimensions in turn, as archives before version 9 did."""

    def __init__(self, model, gmm, grid: BinGrid = DEFAULT_GRID,
                 integer: IntegerACN | None = None, window: float | None = None,
                 base_bits_back: bool = False):
        self.model, self.gmm, self.grid = model, gmm, grid
        self.integer, self.window = integer, window
        if base_bits_back and integer is None:
            raise ValueError("the GMM's component is coded with bits back only by portable "
                             "coders")
        self.base_bits_back = base_bits_back
        self._base = None            # the GMM's tables, built on first use
        cfg = model.config
        self.shape = (cfg.channels, cfg.height, cfg.width)
        self.binary = cfg.binary

    @property
    def portable(self) -> bool:
        return self.integer is not None

    def with_grid(self, grid: BinGrid) -> "Coder":
        """The same coder on another latent grid."""
        return Coder(self.model, self.gmm, grid, self.integer, self.window,
                     self.base_bits_back)

    def base(self, n: int):
        """The unconditional GMM p(z) for n latent rows (its tables computed once)."""
        if self._base is None:
            w, mu, sc = self.gmm
            leaf = (BitsBackDiagonalMixture if self.base_bits_back else
                    PortableDiagonalMixture if self.portable else DiscretisedDiagonalMixture)
            self._base = leaf(w, mu, sc, 1, self.grid)
        return self._base.for_rows(n)

    def posterior(self, codes: np.ndarray):
        """q(z | x) = N(c, I) on the grid for codes (R, D) float64 (on each row's window when
        the coder has one)."""
        if self.window is not None:
            return WindowedGaussian(codes, 1.0, self.grid, self.window, self.portable)
        leaf = PortableGaussian if self.portable else DiscretisedGaussian
        return leaf(codes, 1.0, self.grid)

    def mixture(self, weights, means, scales):
        """Per-dimension Gaussian mixtures (R, D, M) on the grid (significant components)."""
        leaf = PortableMixture if self.portable else DiscretisedMixture
        return leaf(*_significant(weights, means, scales), self.grid)

    # -- networks (float32, fixed batch composition) ------------------------------------------
    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder means c (B, D) of raw pixels x (B, C, H, W)."""
        return self.model.encoder(x)

    def prior_codec(self, prev_codes: torch.Tensor | None, active: np.ndarray):
        """p(z | c_prev) for the active rows, or the unconditional GMM when prev is None."""
        n = int(active.sum())
        if prev_codes is None:
            return self.base(n)
        with torch.no_grad():
            p = self.model.prior(prev_codes)                   # (B, D, M) each
        rows = torch.from_numpy(active)
        weights = torch.softmax(p.logits.double(), dim=-1)[rows].numpy()
        return DiscretisedMixture(*_significant(weights, p.means[rows].double().numpy(),
                                                p.scales[rows].double().numpy()), self.grid)

    def posterior_codec(self, codes: torch.Tensor, active: np.ndarray):
        """q(z | x) = N(c, I) on the grid (or its window) for the active rows."""
        return self.posterior(codes[torch.from_numpy(active)].double().numpy())

    def z_tensor(self, z_bins: np.ndarray, active: np.ndarray) -> torch.Tensor:
        """Latent bin indices of the active rows -> z values (B, D) float32, zeros elsewhere."""
        z = np.zeros((active.size, z_bins.shape[1]))
        z[active] = self.grid.value(z_bins)
        return torch.from_numpy(z).float()

    def pixel_codec(self, logits: torch.Tensor, active: np.ndarray):
        """The entropy model of one sub-pixel for the active rows, from its logits."""
        if self.portable:
            lg = logits if active.all() else logits[torch.from_numpy(active)]
            return Bernoulli(bernoulli_p(lg)) if self.binary \
                else Categorical.from_table(softmax_table(lg))
        lg = logits[torch.from_numpy(active)].double().numpy()
        if self.binary:
            return Bernoulli(1.0 / (1.0 + np.exp(-lg)))
        lg = lg - lg.max(axis=1, keepdims=True)
        return Categorical(np.exp(lg))

    @staticmethod
    def padded_bins(z_bins: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Latent bins (R, D) of the active rows placed in a (B, D) array, zeros elsewhere."""
        z = np.zeros((active.size, z_bins.shape[1]), dtype=np.int64)
        z[active] = z_bins
        return z

    def stepper(self, z_bins: np.ndarray, active: np.ndarray):
        """The cached PixelCNN for latent bins (R, D) of the active rows (zeros elsewhere)."""
        if self.portable:
            return IntegerStepper(self.integer, self.padded_bins(z_bins, active), self.shape[1],
                                  self.shape[2])
        return PixelStepper(self.model.decoder, self.z_tensor(z_bins, active), self.shape[1],
                            self.shape[2])


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


FULL_PASS_CHUNK = 8     # images per teacher-forced full pass (cache-sized; not in the format)


def push_pixels(coder: Coder, x: torch.Tensor, z_bins: np.ndarray, active: np.ndarray,
                stack: AnsStack) -> float:
    """Push the pixels of the active rows of x (B, C, H, W) given their latents (the stepper,
    teacher-forced with x, in lock-step); returns their ideal cost in bits. Inverse: pop_pixels."""
    coded = []                      # (logits, true values) per sub-pixel, raster order
    rows = torch.from_numpy(active)
    if coder.portable:
        # Alice knows every pixel: a teacher-forced full pass gives the logits Bob's stepper
        # computes, bit for bit (integer-exact layers, any batching; tested), in chunks of
        # FULL_PASS_CHUNK images (measured, 1 thread: 11.4-11.8 ms/image against the
        # stepper's 14.1 binary and 17.0 8-bit at B = 256)
        z = coder.padded_bins(z_bins, active)
        full = torch.cat([coder.integer.logits(x[i:i + FULL_PASS_CHUNK], z[i:i + FULL_PASS_CHUNK])
                          for i in range(0, len(x), FULL_PASS_CHUNK)])
        _, C, H, W = x.shape
        coded = [(full[:, g, r, c], x[rows, g, r, c].numpy())
                 for r in range(H) for c in range(W) for g in range(C)]
    else:
        def teacher(r, c, g, logits):   # keep float32 logits; tables are built at push time
            coded.append((logits, x[rows, g, r, c].numpy()))
            return x[:, g, r, c]

        coder.stepper(z_bins, active).run(teacher)
    bits = 0.0
    for logits, values in reversed(coded):    # Bob pops them in raster order
        codec = coder.pixel_codec(logits, active)
        codec.push(stack, values.astype(np.int64))
        bits += float(codec.info_bits(values).sum())
    return bits


def pop_pixels(coder: Coder, z_bins: np.ndarray, active: np.ndarray,
               stack: AnsStack) -> torch.Tensor:
    """Bob: the pixels (B, C, H, W) uint8 of the active rows (zeros elsewhere), in raster
    order, given their latents."""
    every = bool(active.all())

    def decode(r, c, g, logits):
        popped = torch.from_numpy(coder.pixel_codec(logits, active).pop(stack).astype(np.uint8))
        if every:
            return popped
        values = torch.zeros(active.size, dtype=torch.uint8)
        values[torch.from_numpy(active)] = popped
        return values

    return coder.stepper(z_bins, active).run(decode).to(torch.uint8)


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
        costs.recon_bits += push_pixels(coder, x, z_bins, active, stack)
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
        x = pop_pixels(coder, z_bins, active, stack)
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
    h.update(np.ascontiguousarray(coder.prior_codec(None, active).mass))    # no copy
    z = coder.grid.index(codes.double().numpy())
    probe = AnsStack.with_initial_bits(1, seed=0)              # constriction's own arithmetic
    coder.posterior_codec(codes, active).push(probe, z)
    h.update(probe.to_bytes())

    def teacher(r, c, g, logits):
        h.update(logits.numpy().tobytes())
        return x[:, g, r, c]

    coder.stepper(z, active).run(teacher)
    return h.hexdigest()[:32]


# ----- --order set and keep: one bits-back step per batch, an associative prior over the images
# Bob already holds -----------------------------------------------------------------------------
#
# Bob decodes the dataset in batches whose sizes are `set_batches(N, B)` (1, 1, 2, 4, ... up to
# B, then B, ..., then down to 1 so that Alice's first pops need few initial bits). Before each
# batch he holds the images decoded so far (H of them); one batch is one BitsBack step:
#     pop z      under the associative prior: w p(z) + (1 - w)/H sum_j p(z | c_j), bits back over
#                the choice with q on the base and the K held codes nearest z (codec/associative.py;
#                the first batch, H = 0: the unconditional GMM p(z) alone)
#     pop x      sub-pixel by sub-pixel under r(x | z)          (PixelCodec, lock-step batch)
#     c = encoder(x) one image at a time; push z under q(z | x) = N(c, I)
# --order set: the images' order is free. Bob's held images are a multiset and, after each
#     batch, he pushes which element of it each new image was (codec/multiset.py); Alice pops
#     those choices to pick each batch's images, so the order returns log2 N! bits.
# --order keep: the images come in their given order; no choice is coded.
# Alice's whole run is `AssociativeDataset.push`, Bob's `pop`: the same step codecs, reversed.
# Codes and prior parameters are computed one image at a time, so they do not depend on which
# images share a batch; the candidate search and q are float64 numpy arithmetic on identically
# ordered arrays.

SET_BATCH = 256        # largest lock-step batch
SET_NEIGHBOURS = 16    # K: candidates for j per latent
BASE_WEIGHT = 1 / 16  # w: the GMM p(z)'s share of the prior (measured: docs/format.md)


def set_batches(n: int, b: int = SET_BATCH) -> list[int]:
    """Bob's batch sizes, summing to n: a tent that rises 1, 1, 2, 4, ... from Bob's start (few
    images coded with the unconditional prior or few held images) and 1, 2, 3, 4, 6, 9, ...
    from Bob's end (Alice's first batches pop from the initial bits), capped at b; the
    smaller next size is taken from either side until n is reached."""
    if n < 1 or b < 1:
        raise ValueError("need n >= 1 images and batch b >= 1")

    def ramp(first, grow):
        v = first[:]
        while True:
            yield from (min(x, b) for x in v)
            v = [grow(v[-1])]

    left, right = ramp([1, 1], lambda v: 2 * v), ramp([1], lambda v: max(v + 1, v * 3 // 2))
    sizes_l, sizes_r, total = [], [], 0
    nl, nr = next(left), next(right)
    while total < n:
        if nl <= nr:
            v, nl = min(nl, n - total), next(left)
            sizes_l.append(v)
        else:
            v, nr = min(nr, n - total), next(right)
            sizes_r.append(v)
        total += v
    return sizes_l + sizes_r[::-1]


def image_key(image: np.ndarray) -> bytes:
    """The canonical key of an image: sha256 of its pixel bytes (equal images, equal keys)."""
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest()


class PixelCodec(Codec):
    """The pixels (B, C, H, W) uint8 of a lock-step batch given their latent bins (B, D): push
    runs the cached stepper teacher-forced with the true pixels, pop runs it on the decoded
    ones; both build every sub-pixel's table from the same float32 logits. Only `active` rows
    are coded (the others are zeros). After a push, `bits` is its ideal cost."""

    def __init__(self, coder: Coder, z_bins: np.ndarray, active: np.ndarray | None = None):
        self.coder, self.z_bins = coder, z_bins
        self.active = np.ones(len(z_bins), dtype=bool) if active is None else active
        self.bits = 0.0

    def push(self, stack: AnsStack, x) -> None:
        self.bits = push_pixels(self.coder, torch.as_tensor(x), self.z_bins, self.active, stack)

    def pop(self, stack: AnsStack) -> torch.Tensor:
        return pop_pixels(self.coder, self.z_bins, self.active, stack)


def _arithmetic(portable: bool):
    """(log, exp, sum over the last axis): codec.exactmath's for a portable coder (the same
    bits on every machine), numpy's otherwise (float archives, checked by a fingerprint)."""
    if portable:
        return exactmath.log, exactmath.exp, exactmath.sum_last
    return np.log, np.exp, lambda a: a.sum(axis=-1)


class SetTables:
    """Per-image network outputs: codes (N, D) float32 and prior mixtures (N, D, M) float64,
    each independent of which images share a batch: the float networks run one image at a
    time; the integer networks of a portable coder are exact for any batch, so they run
    batched."""

    def __init__(self, coder: "Coder", d: int, m: int, capacity: int):
        self.coder = coder
        self.codes = np.zeros((capacity, d), np.float32)
        self.w = np.zeros((capacity, d, m))
        self.mu = np.zeros((capacity, d, m))
        self.sc = np.ones((capacity, d, m))
        self.size = 0

    @torch.no_grad()
    def add(self, x: torch.Tensor) -> np.ndarray:
        """Append the images x (B, C, H, W) uint8; returns their rows."""
        rows = np.arange(self.size, self.size + len(x))
        net = self.coder.integer
        if net is not None:
            bins = net.code_bins(x)
            self.codes[rows] = bins * net.code_width
            self.w[rows], self.mu[rows], self.sc[rows] = net.prior_params(bins)
        for r, img in zip(rows, x if net is None else ()):
            c = self.coder.model.encoder(img[None].contiguous())       # (1, D)
            p = self.coder.model.prior(c)
            self.codes[r] = c[0].numpy()
            self.w[r] = torch.softmax(p.logits[0].double(), dim=-1).numpy()
            self.mu[r], self.sc[r] = p.means[0].double().numpy(), p.scales[0].double().numpy()
        self.size += len(x)
        return rows

    def mixture(self, rows: np.ndarray):
        """p(z | c_row) for each row, as the coder tabulates it (significant components)."""
        return self.coder.mixture(self.w[rows], self.mu[rows], self.sc[rows])

    def score(self, z_bins: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """log p(z | c_row) + D/2 log(2 pi), (B, K), float64: the mixture density at the bin
        centres, elementwise in a fixed order (with codec.exactmath for a portable coder)."""
        z = self.coder.grid.value(z_bins)[:, None, :, None]               # (B, 1, D, 1)
        sc = self.sc[rows]
        u = (z - self.mu[rows]) / sc
        log, exp, total = _arithmetic(self.coder.portable)
        a = log(np.maximum(self.w[rows], 1e-300)) - log(sc) - 0.5 * u * u
        top = a.max(axis=-1, keepdims=True)
        lse = top[..., 0] + log(total(exp(a - top)))                       # (B, K, D)
        return exactmath.sum_last(lse)

    def base_score(self, z_bins: np.ndarray) -> np.ndarray:
        """log p(z) + D/2 log(2 pi) under the unconditional GMM, (B,), on the scale of `score`."""
        w, mu, sc = self.coder.gmm
        z = self.coder.grid.value(z_bins)[:, None, :]                     # (B, 1, D)
        u = (z - mu) / sc
        log, exp, total = _arithmetic(self.coder.portable)
        per_dim = -log(sc) - 0.5 * u * u                                  # (B, K, D)
        a = log(np.maximum(w, 1e-300)) + np.zeros(per_dim.shape[:2])
        for d in range(per_dim.shape[2]):
            a += per_dim[:, :, d]
        top = a.max(axis=1)
        return top + log(total(exp(a - top[:, None])))


def associative_prior(tables: SetTables, held: np.ndarray, n: int, k: int,
                      base_weight: float) -> AssociativePrior:
    """The latent prior of a batch of n images given the held rows (H,): the base GMM p(z)
    with weight w and the uniform mixture over the held images' p(z | c_j) (the GMM alone when
    nothing is held)."""
    coder = tables.coder
    return AssociativePrior(
        tables.codes[held], lambda j: tables.mixture(held[j]),
        lambda z, cand: tables.score(z, held[cand]), k, n, to_point=coder.grid.value,
        base=coder.base, base_score=tables.base_score, base_weight=base_weight,
        exact=coder.portable)


@dataclass
class SetCosts(Costs):
    """Ideal code lengths (bits) of a dataset coded with the associative prior. kl_bits: the
    latents under their chosen component (or the base) minus q(z | x)."""
    j_bits: float = 0.0           # which component: log2 H per held choice, and the base flag
    j_back_bits: float = 0.0      # returned by popping the choice under q(c | z)
    choice_back_bits: float = 0.0  # returned by the multiset choices (the order not paid for)


class AssociativeDataset(Codec):
    """N images (N, C, H, W) uint8, --order set (`multiset`: pop returns them in decoding
    order, the multiset is what is kept) or --order keep (pop returns them in their order).

    Guarantees: pop(push(images)) restores the images (as a multiset for set) and the stack
    exactly; every table Bob builds equals Alice's bit for bit. After a push, `costs` holds the
    ideal code lengths."""

    def __init__(self, coder: Coder, n: int, multiset: bool, batch: int = SET_BATCH,
                 k: int = SET_NEIGHBOURS, base_weight: float = 0.0, progress=None):
        self.coder, self.n, self.multiset = coder, n, multiset
        self.batch, self.k, self.base_weight = batch, k, base_weight
        self.sizes = set_batches(n, batch)
        self.progress = progress or (lambda count: None)
        self.costs = SetCosts()

    def tables(self) -> SetTables:
        cfg = self.coder.model.config
        return SetTables(self.coder, cfg.latent_dim, cfg.prior_components, self.n)

    def step(self, tables: SetTables, held: np.ndarray, size: int,
             rows: np.ndarray | None = None) -> BitsBack:
        """One batch: BitsBack(associative prior, pixels | z, q(z | x)). `rows`: the batch's
        table rows when they are known (Alice); otherwise the decoded images are added."""
        def posterior(x):
            r = rows if rows is not None else tables.add(x)
            return self.coder.posterior(tables.codes[r].astype(np.float64))

        return BitsBack(associative_prior(tables, held, size, self.k, self.base_weight),
                        lambda z: PixelCodec(self.coder, z), posterior)

    def push(self, stack: AnsStack, images: np.ndarray, tables: SetTables | None = None) -> None:
        """Alice. `tables`: the images' SetTables, if already computed (row i = image i)."""
        if tables is None:
            tables = self.tables()
            tables.add(torch.from_numpy(images))
        keys = [image_key(img) for img in images] if self.multiset else None
        first = {}
        for i, key in enumerate(keys or ()):
            first.setdefault(key, i)
        remaining = Multiset(keys) if self.multiset else None
        end = self.n
        for size in reversed(self.sizes):
            if self.multiset:
                rows = np.array([first[self._pop_choice(remaining, stack)]
                                 for _ in range(size)])
                held = np.array([first[key] for key in remaining.keys], dtype=np.int64)
            else:
                rows, held = np.arange(end - size, end), np.arange(end - size)
                end -= size
            step = self.step(tables, held, size, rows)
            step.push(stack, torch.from_numpy(images[rows]))
            self._count(step)
            self.progress(size)

    def _pop_choice(self, remaining: Multiset, stack: AnsStack) -> bytes:
        key = remaining.pop_element(stack)
        lo, hi = remaining.span(key)                     # the multiset now lacks one copy
        self.costs.choice_back_bits += math.log2(len(remaining) + 1) - math.log2(hi - lo + 1)
        return key

    def _count(self, step: BitsBack) -> None:
        z, pixels, posterior = step.last
        c, costs = step.prior.last, self.costs
        kl = c.z_bits - posterior.info_bits(z).sum(axis=-1)
        costs.kl_bits += float(kl.sum())
        costs.kl_start_bits += float(kl[c.on_base].sum())
        costs.recon_bits += pixels.bits
        costs.j_bits += float(c.choice_bits.sum())
        costs.j_back_bits += float(c.back_bits.sum())

    def pop(self, stack: AnsStack) -> np.ndarray:
        """Bob: the images, in decoding order (set) or their order (keep)."""
        tables = self.tables()
        held = Multiset() if self.multiset else None
        row_of: dict[bytes, int] = {}
        out = []
        for size in self.sizes:
            held_rows = np.array([row_of[key] for key in held.keys], dtype=np.int64) \
                if self.multiset else np.arange(tables.size)
            x = self.step(tables, held_rows, size).pop(stack).numpy()
            if self.multiset:
                keys = [image_key(img) for img in x]
                for key, row in zip(keys, range(tables.size - size, tables.size)):
                    row_of.setdefault(key, row)
                for key in reversed(keys):
                    held.push_element(stack, key)
            out.append(x)
            self.progress(size)
        return np.concatenate(out)


def encode_from_initial_bits(push, words: int, on_retry=None) -> tuple[AnsStack, int]:
    """Alice's run `push(stack)` on a stack seeded with `words` initial 32-bit words (seed 0);
    on the rare underflow (a first pop needing more bits than seeded) the words are doubled
    and the run repeated. Returns the stack and the words used (the header records them)."""
    while True:
        stack = AnsStack.with_initial_bits(words, seed=0)
        try:
            push(stack)
            return stack, words
        except StackUnderflowError:
            words *= 2
            if on_retry:
                on_retry()


def fingerprint_set(coder: "Coder", rows: int, k: int = SET_NEIGHBOURS,
                    base_weight: float = 0.0) -> str:
    """Like `fingerprint`, for --order set and keep: the per-image codes and priors, the
    associative arithmetic (candidates, q's scores, mixture tables) and the stepper's logits
    on a probe."""
    rng = np.random.default_rng(12345)
    hi = 2 if coder.binary else 256
    x = torch.from_numpy(rng.integers(0, hi, (rows,) + coder.shape).astype(np.uint8))
    cfg = coder.model.config
    tables = SetTables(coder, cfg.latent_dim, cfg.prior_components, rows)
    tables.add(x)
    h = hashlib.sha256()
    for a in (tables.codes, tables.w, tables.mu, tables.sc):
        h.update(np.ascontiguousarray(a).tobytes())
    z = coder.grid.index(tables.codes.astype(np.float64))
    held = np.arange(rows)
    cand = nearest(coder.grid.value(z), tables.codes[held], k)
    h.update(cand.tobytes())
    h.update(tables.score(z, cand).tobytes())
    if base_weight > 0:
        h.update(tables.base_score(z).tobytes())
    h.update(tables.mixture(held).probs.tobytes())
    h.update(np.ascontiguousarray(coder.prior_codec(None, np.ones(rows, bool)).mass))
    active = np.ones(rows, dtype=bool)

    def teacher(r, c, g, logits):
        h.update(logits.numpy().tobytes())
        return x[:, g, r, c]

    coder.stepper(z, active).run(teacher)
    return h.hexdigest()[:32]
