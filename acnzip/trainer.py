"""Algorithm 1 of Graves et al. 2018: the state of an ACN's training and one step of it.

Per step: draw a batch of training indices (a seeded permutation per epoch), c = encoder(x),
c_hat = a code drawn uniformly from the K nearest stored codes of c excluding x's own entry,
store c, then minimise KL(q(z|x) || p(z|c_hat)) - log r(x|z), z = c + eps (nats per image).
The Polyak average of the weights is what validation and the model file use.

With several processes (distributed.py) each rank computes its slice of the batch; the codes
are all-gathered and the draws made for the whole batch on every rank, so the ranks hold the
same store, weights and RNG states after every step.

Tour neighbours (`neighbours="tour"`, `acnzip train --neighbours tour`): the coders do not
condition on a draw among the training store's K nearest codes but on neighbours within the set
being coded (`--order tour`: the predecessor on a path; `--order set`: the nearest codes
decoded before), which in a set of a few thousand images are farther apart. So every
`tour_every` steps the store's codes are shuffled and cut into disjoint subsets of each size in
`tour_sizes`, each subset is toured greedily (tour.greedy_tour, the coder's own exact tour),
and each image's predecessor on its tour is recorded, one table per size; a step's c_hat for
an image is then its predecessor's code in the store, in a table drawn uniformly per image (the
K-nearest draw where the image starts its tour, or where a size does not divide the store and
the image is left out of that size's subsets). greedy_tour is exact (its result depends on the
codes' values alone, not on threads or batch shapes), so every rank builds the same tables from
the same store and the same RNG. Measured with a script doing the same (session 15), 33
minutes from the shipped binarized model: every coder's KL fell (test, greedy-tour ordered
76.93 -> 76.83, --order set 75.00 -> 74.74 nats/image) while the recon rose 0.5; the rebuild
takes 11 s per 500 steps for 50,000 codes (one thread).

Shifted images (`shift` > 0, `acnzip train --shift N`): each step's images are translated by
offsets drawn uniformly in [-N, N] rows and columns (the loop's RNG, for the whole batch on
every rank), edges replicated (`shift_images`): more distinct training images for a decoder
that otherwise learns its training set better than held-out images.

A checkpoint holds everything the steps depend on (weights, optimiser, code store, RNGs,
where the epoch is), so a Trainer rebuilt from one continues bit for bit as if never stopped
(same device and thread count). Running the steps (epochs, time budget, Ctrl-C, when to
checkpoint) and writing the model file are train.py's.

Measured (whole steps as `acnzip train` logs them, batch 64, `cpu` config, 2-core CPU, torch
2.13, session 7): binarized 52-56 images/s with 1 process x 2 threads, 58 with 2 processes x 1
thread; 8-bit 47-49 and 54 (acnzip/models/README.md).
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write_bytes
from .codestore import CodeStore
from .config import ModelConfig, TrainConfig
from .distributed import World
from .errors import AcnzipError
from .nn import ACN
from .nn.grow import widened
from .nn.prior import posterior_log_prob
from .runtime import LN2

__all__ = ["Polyak", "Trainer", "Progress", "TrainError", "validation_loss", "save_checkpoint",
           "load_checkpoint", "pick_device", "make_optimizer", "data_identity"]

CKPT_FORMAT, CKPT_VERSION = "acnzip-checkpoint", 1


class TrainError(AcnzipError):
    """Training cannot start or continue; one-line message."""


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda asked for, but no CUDA device is available")
    return torch.device(name)


VALID_SEED = 0   # the periodic validation's subset, and the draws of it and of the final one


def have_faiss() -> bool:
    """Whether faiss imports here (the tours need it; a GPU image may lack it, or hold a wheel
    that cannot load)."""
    try:
        importlib.import_module("faiss")
    except Exception:
        return False
    return True


class Polyak:
    """Exponential moving average of the weights: avg <- d avg + (1 - d) w after every step.

    d = min(decay, (1 + t) / (10 + t)) at update t, so early averages are not dominated by the
    random initial weights (with decay 0.9999 and no warm-up a short CPU run would mostly
    average the initialisation).
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, w in zip(self.model.parameters(), model.parameters()):
            avg.lerp_(w, 1.0 - d)

    def settle(self) -> None:
        """Skip the warm-up: from the next update on, d = decay (for an average that starts
        at weights which are already an average, a trained model file's)."""
        self.updates = max(self.updates, math.ceil((10 * self.decay - 1) / (1 - self.decay)))

    def state_dict(self) -> dict:
        return {"weights": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, d: dict) -> None:
        self.model.load_state_dict(d["weights"])
        self.updates = int(d["updates"])


def make_optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    if tc.optimizer == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=tc.lr, momentum=tc.momentum)
    return torch.optim.Adam(model.parameters(), lr=tc.lr)


def data_identity(x: np.ndarray) -> dict:
    """Identifies the training data, so a checkpoint is never resumed on other data."""
    return {"n": int(len(x)), "shape": list(x.shape[1:]),
            "sha256": hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()}


@torch.no_grad()
def validation_loss(model: ACN, x: torch.Tensor, store: CodeStore, k: int, seed: int = 0,
             gmm=None, batch: int = 256) -> dict:
    """Mean nats/image of images x (N, C, H, W) not in the store; c_hat drawn from the store.

    Returns {"kl", "recon", "total"} (and "kl_gmm", "total_gmm": the KL against the
    unconditional p(z) instead, when `gmm` is given), all from one seeded draw of c_hat and z.
    """
    model.eval()
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    sums: dict[str, float] = {}
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        c = model.encoder(xb)                                           # (B, D)
        c_hat = store.sample_neighbours(c.cpu().numpy(), None, k, rng)
        eps = torch.randn(c.shape, generator=gen).to(c.device)
        t = model.loss(xb, torch.from_numpy(c_hat).to(c.device), code=c, eps=eps)
        parts = {"kl": t.kl, "recon": t.recon}
        if gmm is not None:
            z = (c + eps).double().cpu().numpy()
            log_q = posterior_log_prob(eps)
            parts["kl_gmm"] = torch.from_numpy(log_q - gmm.log_prob(z))
        for name, v in parts.items():
            sums[name] = sums.get(name, 0.0) + float(v.double().sum())
    out = {name: s / len(x) for name, s in sums.items()}
    out["total"] = out["kl"] + out["recon"]
    if gmm is not None:
        out["total_gmm"] = out["kl_gmm"] + out["recon"]
    return out


def final_validation(model: ACN, x: torch.Tensor, train_codes: np.ndarray, k: int, gmm,
                     device: str | torch.device = "cpu") -> dict:
    """The validation a model file records (final_valid): validation_loss of images x against
    a store of the model's own training codes, seed VALID_SEED (Algorithm 1's: c_hat among the
    k nearest), with bits_per_dim added; and what the coders pay on x, nats/image: Table 2's
    kl_tour (along the greedy tour) and kl_set (`--order set`) from evaluate.coder_kls, seed
    VALID_SEED, and with the recon above ordered = kl_tour + recon and set = kl_set + recon.
    The coders' figures need faiss (the greedy tour), absent from a GPU image: there they are
    left out."""
    final = validation_loss(model, x, CodeStore.from_codes(train_codes, device), k,
                            seed=VALID_SEED, gmm=gmm)
    final["bits_per_dim"] = final["total"] / (LN2 * int(np.prod(x.shape[1:])))
    if len(x) >= 2 and have_faiss():
        from .evaluate import coder_kls
        on_cpu = copy.deepcopy(model).cpu() if x.device.type != "cpu" else model
        kls = coder_kls(on_cpu.eval(), gmm, x.cpu().numpy(), seed=VALID_SEED)
        final.update(kls, ordered=kls["kl_tour"] + final["recon"],
                     set=kls["kl_set"] + final["recon"])
    return final


def shift_images(x: torch.Tensor, offsets: np.ndarray) -> torch.Tensor:
    """x (B, C, H, W) translated by offsets (B, 2) of (rows, columns), each in [-s, s]: image b
    moves down offsets[b, 0] rows and right offsets[b, 1] columns; what enters at an edge
    repeats that edge's row or column. Same dtype and shape as x."""
    s = int(np.abs(offsets).max(initial=0))
    if s == 0:
        return x
    H, W = x.shape[2:]
    padded = torch.nn.functional.pad(x.float(), (s, s, s, s), mode="replicate").to(x.dtype)
    return torch.stack([padded[b, :, s - dy:s - dy + H, s - dx:s - dx + W]
                        for b, (dy, dx) in enumerate(offsets.tolist())])


class _StepLoss(torch.nn.Module):
    """One step's loss terms as a module, so that DistributedDataParallel can wrap it:
    forward(x, neighbours) encodes x, asks `neighbours(c)` for (c_hat, eps) and returns the
    per-image KL and reconstruction (nats)."""

    def __init__(self, acn: ACN):
        super().__init__()
        self.acn = acn

    def forward(self, x: torch.Tensor, neighbours):
        c = self.acn.encoder(x).float()                                  # (b, D)
        c_hat, eps = neighbours(c)
        t = self.acn.loss(x, c_hat, code=c, eps=eps)
        return t.kl, t.recon


@dataclass
class Progress:
    """Where the loop is: everything besides weights, optimiser, store and RNGs."""
    step: int = 0
    epoch: int = 0                        # completed epochs
    pos: int = 0                          # images of the current epoch already used
    perm: np.ndarray | None = None        # the current epoch's order, None between epochs
    elapsed_s: float = 0.0                # training wall time over all sessions
    history: list = field(default_factory=list)   # validation results

    def to_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "pos": self.pos,
                "perm": None if self.perm is None else torch.from_numpy(self.perm),
                "elapsed_s": self.elapsed_s, "history": self.history}

    @classmethod
    def from_dict(cls, d: dict) -> "Progress":
        perm = None if d["perm"] is None else d["perm"].numpy()
        return cls(d["step"], d["epoch"], d["pos"], perm, d["elapsed_s"], list(d["history"]))


class Trainer:
    """One training run's state: model, Polyak average, optimiser, code store, RNGs, progress.

    train_x, valid_x: (N, C, H, W) uint8 as the model sees them (Dataset.model_pixels()).
    world: the training processes (distributed.World; one process when None).
    """

    def __init__(self, mc: ModelConfig, tc: TrainConfig, train_x: np.ndarray,
                 valid_x: np.ndarray | None = None, device: str | torch.device = "cpu",
                 world: World | None = None):
        if len(train_x) < 2:
            raise TrainError("need at least 2 training images (each code is conditioned on "
                             "a neighbour's)")
        self.mc, self.tc, self.device = mc, tc, torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tc.seed)
            self.model = ACN(mc).to(self.device)
        self.polyak = Polyak(self.model, tc.polyak_decay)
        self.opt = make_optimizer(self.model, tc)
        self.world = world or World()
        self.step_loss: torch.nn.Module = _StepLoss(self.model)
        if self.world.size > 1:
            from torch.nn.parallel import DistributedDataParallel
            self.step_loss = DistributedDataParallel(
                self.step_loss, device_ids=[self.device] if self.device.type == "cuda" else None)
        # the third stream was validation's (now VALID_SEED); spawning it keeps the others
        store_seed, loop_seed, _ = np.random.SeedSequence(tc.seed).spawn(3)
        self.store = CodeStore(len(train_x), mc.latent_dim, seed=store_seed,
                               search_device=self.device)
        self.rng = np.random.default_rng(loop_seed)                   # batches, neighbours
        self.gen = torch.Generator().manual_seed(tc.seed)             # posterior noise eps
        self.x = torch.from_numpy(np.ascontiguousarray(train_x)).to(self.device)
        self.data_id = data_identity(train_x)
        self.tours: np.ndarray | None = None     # (len(tour_sizes), N) predecessors, -1: start
        if tc.neighbours == "tour" and not have_faiss():
            raise TrainError("--neighbours tour needs faiss (pip install faiss-cpu) for its "
                             "tours, which this Python lacks or cannot import")
        self.valid_x, self.valid_subset = None, None
        if valid_x is not None and len(valid_x):
            self.valid_x = torch.from_numpy(np.ascontiguousarray(valid_x)).to(self.device)
            pick = np.random.default_rng(VALID_SEED).permutation(len(valid_x))
            self.valid_subset = torch.from_numpy(np.sort(pick[:tc.valid_images])).to(self.device)
        self.progress = Progress()
        self.info: dict = {}                      # config name, data description (metadata)
        self.autocast_dtype: torch.dtype | None = None    # bf16: encoder/decoder layers only

    def warm_start(self, weights: dict) -> None:
        """Start from trained weights (`acnzip train --init`): model and Polyak average take
        them, and the code store holds their codes of the training images (not noise).

        `weights` may lack the last PixelCNN blocks of this model (a model grown with more
        blocks): those keep their fresh initialisation except the residual output `h_res`,
        set to zero, so each adds exactly nothing to the horizontal stack and the grown
        model computes bit for bit what the file's model did (its head reads the same h).
        They may have fewer feature maps per stack (a model grown wider): see
        `nn.grow.widened`; the wider model computes what the file's did up to rounding.

        The Polyak average continues from the file's weights, which are an average already,
        with the full decay (no warm-up), as a resumed run's would; a grown model's average
        starts afresh with the warm-up, since its new blocks or maps have yet to learn."""
        def block(key: str) -> int:          # the PixelCNN block a weight is in, else -1
            return int(key.split(".")[2]) if key.startswith("decoder.blocks.") else -1

        wider = weights["decoder.out1.weight"].shape[0] != self.mc.pixelcnn_filters
        if wider:
            weights = widened(weights, self.model.state_dict(), self.mc.channels)
        n_file = 1 + max(map(block, weights), default=-1)
        blocks = self.model.decoder.blocks
        own = {k for k in self.model.state_dict() if block(k) < n_file}
        if n_file > len(blocks) or own != set(weights):
            raise ValueError(f"the weights do not fit this model (their PixelCNN has {n_file} "
                             f"blocks, this one {len(blocks)})")
        with torch.no_grad():
            for block in list(blocks)[n_file:]:
                block.h_res.weight.zero_()
                block.h_res.bias.zero_()
        grown = {k: v for k, v in self.model.state_dict().items() if k not in weights}
        for model in (self.model, self.polyak.model):
            model.load_state_dict({**weights, **grown})
        if not grown and not wider:
            self.polyak.settle()
        self.store.set_codes(self.model.eval().codes(self.x))

    def train_step(self, idx: np.ndarray) -> tuple[float, float, float]:
        """One step of Algorithm 1 on training indices idx (B,): (loss, kl, recon) nats/image,
        means over the whole batch (all ranks)."""
        self.model.train()
        world, n = self.world, len(idx)
        mine = world.slice(n)                                 # this rank's rows of the batch
        x = self.x[torch.from_numpy(idx[mine]).to(self.device)]          # (b, C, H, W)
        if self.tc.shift:                  # drawn for the whole batch: ranks stay in step
            s = self.tc.shift
            x = shift_images(x, self.rng.integers(-s, s + 1, size=(n, 2))[mine])

        if self.tc.neighbours == "tour" and (self.tours is None
                                             or self.progress.step % self.tc.tour_every == 0):
            self.build_tours()

        def neighbours(c: torch.Tensor):
            """c_hat and eps for this rank's codes c (b, D); every rank draws for the whole
            batch and stores the whole batch's codes, so all ranks stay identical."""
            c_all = world.gather_rows(c.detach(), n).cpu().numpy()          # (B, D)
            c_hat = self.draw_neighbours(c_all, idx)
            self.store.update(idx, c_all)
            eps = torch.randn(c_all.shape, generator=self.gen)
            return (torch.from_numpy(c_hat[mine]).to(self.device), eps[mine].to(self.device))

        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None):
            kl, recon = self.step_loss(x, neighbours)
        sums = world.sum(torch.stack([kl.detach().double().sum(), recon.detach().double().sum()]))
        mean_kl, mean_recon = (sums / n).tolist()
        if not np.isfinite(mean_kl + mean_recon):
            raise TrainError(f"the loss became {mean_kl + mean_recon} at step "
                             f"{self.progress.step + 1}; try a smaller --lr or resume from an "
                             "earlier checkpoint")
        self.opt.zero_grad(set_to_none=True)
        # DDP averages the ranks' gradients: scaled so that the average is the gradient of the
        # whole batch's mean (the scale is exactly 1 in one process)
        scale = (mine.stop - mine.start) * world.size / n
        ((self.kl_weight() * kl.mean() + recon.mean()) * scale).backward()
        self.opt.step()
        self.polyak.update(self.model)
        self.progress.step += 1
        return mean_kl + mean_recon, mean_kl, mean_recon

    def build_tours(self) -> None:
        """Rebuild `self.tours` from the store's codes as they are now (see the module doc)."""
        from .tour import tour_pairs
        n = len(self.store)
        tours = np.full((len(self.tc.tour_sizes), n), -1, dtype=np.int64)
        for row, size in zip(tours, self.tc.tour_sizes):
            pred, succ = tour_pairs(self.store.codes, (size,), self.rng)
            row[succ] = pred
        self.tours = tours

    def draw_neighbours(self, codes: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """c_hat (B, D) for the codes (B, D) of training images idx (B,), from the store as it
        is before this step's codes are stored."""
        c_hat = self.store.sample_neighbours(codes, idx, self.tc.knn_k, self.rng)
        if self.tc.neighbours == "tour":
            pred = self.tours[self.rng.integers(0, len(self.tours), len(idx)), idx]
            has = pred >= 0
            c_hat[has] = self.store.codes[pred[has]]
        return c_hat

    def kl_weight(self) -> float:
        """beta of the KL term for the coming step: rises linearly from 0 to 1 over the first
        `kl_warmup` steps (keeps the PixelCNN from learning to ignore z early), then 1."""
        w = self.tc.kl_warmup
        return 1.0 if w <= 0 else min(1.0, (self.progress.step + 1) / w)

    def validate(self) -> dict | None:
        """Polyak-averaged model on the validation subset, c_hat from the training store.
        The subset and the draws are the same whatever the training seed (VALID_SEED), so
        runs with different seeds report comparable numbers."""
        if self.valid_x is None:
            return None
        res = validation_loss(self.polyak.model, self.valid_x[self.valid_subset], self.store,
                              self.tc.knn_k, seed=VALID_SEED)
        res.update(step=self.progress.step, epoch=self.progress.epoch)
        self.progress.history.append(res)
        return res

    # ----- checkpoints -----

    def state_dict(self) -> dict:
        """Everything needed to continue exactly; tensors and plain values only."""
        return {"format": CKPT_FORMAT, "version": CKPT_VERSION,
                "model_config": self.mc.to_dict(), "train_config": self.tc.to_dict(),
                "data": self.data_id, "model": self.model.state_dict(),
                "polyak": self.polyak.state_dict(), "optimizer": self.opt.state_dict(),
                "codes": torch.from_numpy(self.store.codes.copy()),
                "rng": {"numpy": self.rng.bit_generator.state, "torch": self.gen.get_state()},
                "progress": self.progress.to_dict(), "info": self.info,
                **({"tours": torch.from_numpy(self.tours)} if self.tours is not None else {})}

    def load_state_dict(self, ckpt: dict) -> None:
        """Restore a checkpoint taken from a Trainer with the same configs and data."""
        if ckpt["data"] != self.data_id:
            raise TrainError("the checkpoint was trained on different data "
                             f"({ckpt['data']['n']} images of shape {ckpt['data']['shape']})")
        self.model.load_state_dict(ckpt["model"])
        self.polyak.load_state_dict(ckpt["polyak"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.store.set_codes(ckpt["codes"].numpy())
        self.rng.bit_generator.state = ckpt["rng"]["numpy"]
        self.gen.set_state(ckpt["rng"]["torch"])
        self.progress = Progress.from_dict(ckpt["progress"])
        self.tours = ckpt["tours"].numpy().copy() if "tours" in ckpt else None

    @classmethod
    def from_checkpoint(cls, ckpt: dict, train_x, valid_x=None, device="cpu",
                        epochs: int | None = None, world: World | None = None) -> "Trainer":
        """A Trainer continuing `ckpt` (its configs; `epochs` may extend the run)."""
        tc = TrainConfig.from_dict(ckpt["train_config"])
        if epochs is not None:
            tc = TrainConfig.from_dict({**tc.to_dict(), "epochs": epochs})
        tr = cls(ModelConfig.from_dict(ckpt["model_config"]), tc, train_x, valid_x, device,
                 world)
        tr.load_state_dict(ckpt)
        return tr


def save_checkpoint(path: Path, tr: Trainer) -> None:
    """Write the checkpoint atomically (temporary file + os.replace)."""
    buf = io.BytesIO()
    torch.save(tr.state_dict(), buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path, device="cpu") -> dict:
    """Read a checkpoint written by save_checkpoint; TrainError if it is not one."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)   # the Trainer moves it
    except FileNotFoundError:
        raise TrainError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # damaged or foreign files raise many types
        raise TrainError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise TrainError(f"{path}: not an acnzip training checkpoint")
    if ckpt.get("version") != CKPT_VERSION:
        raise TrainError(f"{path}: checkpoint version {ckpt.get('version')} is not supported")
    return ckpt
