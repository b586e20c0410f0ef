"""Training an ACN (Algorithm 1 of Graves et al. 2018), checkpoints, and the final model file.

Per step: draw a batch of training indices (a seeded permutation per epoch), c = encoder(x),
c_hat = a code drawn uniformly from the K nearest stored codes of c excluding x's own entry,
store c, then minimise KL(q(z|x) || p(z|c_hat)) - log r(x|z), z = c + eps (nats per image).
The Polyak average of the weights is what validation and the model file use.

Checkpoints (every few minutes, at each epoch end, at a time budget, on Ctrl-C) hold everything
the loop depends on, so `resume` continues bit for bit as if never stopped (same device and
thread count). After the last epoch the unconditional p(z) is fitted (gmm.py) and the model
file written (modelfile.py).

Measured (fwd + bwd + Adam, batch 64, 28x28 binary, 2-core CPU, torch 2.13): `cpu` 77 images/s
on 1 thread, 125 on 2 (an epoch of 50,000 in ~7 min); `paper` 11 and 21 images/s.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import io
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from . import __version__
from .atomic import atomic_write_bytes
from .codestore import CodeStore
from .config import ModelConfig, TrainConfig, model_config, train_config
from .data import Dataset
from .errors import AcnzipError
from .gmm import DiagonalGMM, select_gmm
from .modelfile import save_model
from .nn import ACN

__all__ = ["Polyak", "Trainer", "RunOptions", "TrainResult", "TrainError", "TrainingInterrupted",
           "train", "run", "finish", "fit_prior", "evaluate", "encode_all", "save_checkpoint",
           "load_checkpoint", "pick_device"]

CKPT_FORMAT, CKPT_VERSION = "acnzip-checkpoint", 1


class TrainError(AcnzipError):
    """Training cannot start or continue; one-line message."""


class TrainingInterrupted(Exception):
    """Ctrl-C: the loop stopped after a whole step and wrote a checkpoint."""

    def __init__(self, checkpoint: Path | None, step: int):
        super().__init__(f"interrupted at step {step}")
        self.checkpoint, self.step = checkpoint, step


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda asked for, but no CUDA device is available")
    return torch.device(name)


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

    def state_dict(self) -> dict:
        return {"weights": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, d: dict) -> None:
        self.model.load_state_dict(d["weights"])
        self.updates = int(d["updates"])


def make_optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    if tc.optimizer == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=tc.lr, momentum=tc.momentum)
    return torch.optim.Adam(model.parameters(), lr=tc.lr)


def fingerprint(x: np.ndarray) -> dict:
    """Identifies the training data, so a checkpoint is never resumed on other data."""
    return {"n": int(len(x)), "shape": list(x.shape[1:]),
            "sha256": hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()}


@torch.no_grad()
def encode_all(model: ACN, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Codes c (N, D) float32 of images x (N, C, H, W) uint8 (already on the model's device)."""
    model.eval()
    return np.concatenate([model.encoder(x[i:i + batch]).float().cpu().numpy()
                           for i in range(0, len(x), batch)]) if len(x) else np.zeros((0, 0))


@torch.no_grad()
def evaluate(model: ACN, x: torch.Tensor, store: CodeStore, k: int, seed: int = 0,
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
            log_q = -0.5 * (eps.double().cpu().numpy() ** 2 + math.log(2 * math.pi)).sum(1)
            parts["kl_gmm"] = torch.from_numpy(log_q - gmm.log_prob(z))
        for name, v in parts.items():
            sums[name] = sums.get(name, 0.0) + float(v.double().sum())
    out = {name: s / len(x) for name, s in sums.items()}
    out["total"] = out["kl"] + out["recon"]
    if gmm is not None:
        out["total_gmm"] = out["kl_gmm"] + out["recon"]
    return out


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
    """

    def __init__(self, mc: ModelConfig, tc: TrainConfig, train_x: np.ndarray,
                 valid_x: np.ndarray | None = None, device: str | torch.device = "cpu"):
        if len(train_x) < 2:
            raise TrainError("need at least 2 training images (each code is conditioned on "
                             "a neighbour's)")
        self.mc, self.tc, self.device = mc, tc, torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tc.seed)
            self.model = ACN(mc).to(self.device)
        self.polyak = Polyak(self.model, tc.polyak_decay)
        self.opt = make_optimizer(self.model, tc)
        store_seed, loop_seed, valid_seed = np.random.SeedSequence(tc.seed).spawn(3)
        self.store = CodeStore(len(train_x), mc.latent_dim, seed=store_seed,
                               search_device=self.device)
        self.rng = np.random.default_rng(loop_seed)                   # batches, neighbours
        self.gen = torch.Generator().manual_seed(tc.seed)             # posterior noise eps
        self.x = torch.from_numpy(np.ascontiguousarray(train_x)).to(self.device)
        self.data_id = fingerprint(train_x)
        self.valid_x, self.valid_subset = None, None
        if valid_x is not None and len(valid_x):
            self.valid_x = torch.from_numpy(np.ascontiguousarray(valid_x)).to(self.device)
            pick = np.random.default_rng(valid_seed).permutation(len(valid_x))
            self.valid_subset = torch.from_numpy(np.sort(pick[:tc.valid_images])).to(self.device)
        self.progress = Progress()
        self.info: dict = {}                      # config name, data description (metadata)
        self.autocast_dtype: torch.dtype | None = None    # bf16: encoder/decoder layers only

    def warm_start(self, weights: dict) -> None:
        """Start from trained weights (`acnzip train --init`): model and Polyak average take
        them, and the code store holds their codes of the training images (not noise)."""
        self.model.load_state_dict(weights)
        self.polyak.model.load_state_dict(weights)
        self.store.set_codes(encode_all(self.model, self.x))

    def train_step(self, idx: np.ndarray) -> tuple[float, float, float]:
        """One step of Algorithm 1 on training indices idx (B,): (loss, kl, recon) nats/image."""
        self.model.train()
        x = self.x[torch.from_numpy(idx).to(self.device)]                # (B, C, H, W)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None):
            c = self.model.encoder(x).float()                            # (B, D)
            c_np = c.detach().cpu().numpy()
            c_hat = self.store.sample_neighbours(c_np, idx, self.tc.knn_k, self.rng)
            self.store.update(idx, c_np)
            eps = torch.randn(c.shape, generator=self.gen).to(self.device)
            t = self.model.loss(x, torch.from_numpy(c_hat).to(self.device), code=c, eps=eps)
        loss = t.total.mean()
        if not torch.isfinite(loss):
            raise TrainError(f"the loss became {loss.item()} at step {self.progress.step + 1}; "
                             "try a smaller --lr or resume from an earlier checkpoint")
        self.opt.zero_grad(set_to_none=True)
        (self.kl_weight() * t.kl.mean() + t.recon.mean()).backward()
        self.opt.step()
        self.polyak.update(self.model)
        self.progress.step += 1
        return loss.item(), t.kl.mean().item(), t.recon.mean().item()

    def kl_weight(self) -> float:
        """beta of the KL term for the coming step: rises linearly from 0 to 1 over the first
        `kl_warmup` steps (keeps the PixelCNN from learning to ignore z early), then 1."""
        w = self.tc.kl_warmup
        return 1.0 if w <= 0 else min(1.0, (self.progress.step + 1) / w)

    def validate(self) -> dict | None:
        """Polyak-averaged model on the validation subset, c_hat from the training store."""
        if self.valid_x is None:
            return None
        res = evaluate(self.polyak.model, self.valid_x[self.valid_subset], self.store,
                       self.tc.knn_k, seed=self.tc.seed)
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
                "progress": self.progress.to_dict(), "info": self.info}

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

    @classmethod
    def from_checkpoint(cls, ckpt: dict, train_x, valid_x=None, device="cpu",
                        epochs: int | None = None) -> "Trainer":
        """A Trainer continuing `ckpt` (its configs; `epochs` may extend the run)."""
        tc = TrainConfig.from_dict(ckpt["train_config"])
        if epochs is not None:
            tc = TrainConfig.from_dict({**tc.to_dict(), "epochs": epochs})
        tr = cls(ModelConfig.from_dict(ckpt["model_config"]), tc, train_x, valid_x, device)
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


# ----- the loop -----

def _stderr(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


@dataclass
class RunOptions:
    """How a run is carried out: none of it changes the algorithm (device and precision
    change only the float rounding)."""
    checkpoint: Path | None = None        # where checkpoints are written (None: nowhere)
    checkpoint_minutes: float = 10.0      # wall time between periodic checkpoints
    max_minutes: float | None = None      # stop cleanly (with a checkpoint) after this long
    max_steps: int | None = None          # stop after this many steps in all (tests, smoke runs)
    precision: str = "fp32"               # "bf16": autocast the encoder/decoder layers
    progress: bool = True                 # tqdm bar with the loss in nats/image
    log: Callable[[str], None] = _stderr


@contextlib.contextmanager
def _sigint_flag():
    """First Ctrl-C sets flag["hit"] (the loop stops after the current step); a second one
    interrupts at once. Only in the main thread; elsewhere the flag is never set."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["hit"]:
            raise KeyboardInterrupt
        flag["hit"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class _Clock:
    """Wall time of this session: periodic checkpoints, the time budget, elapsed_s."""

    def __init__(self, tr: Trainer, opts: RunOptions):
        self.tr, self.opts = tr, opts
        self.start = self.last = time.monotonic()
        self.base = tr.progress.elapsed_s

    def checkpoint(self) -> None:
        self.tr.progress.elapsed_s = self.base + time.monotonic() - self.start
        if self.opts.checkpoint is not None:
            save_checkpoint(self.opts.checkpoint, self.tr)
        self.last = time.monotonic()

    def maybe_checkpoint(self) -> None:
        if time.monotonic() - self.last >= 60.0 * self.opts.checkpoint_minutes:
            self.checkpoint()

    def stop_reason(self, sigint: dict) -> str | None:
        o, step = self.opts, self.tr.progress.step
        if sigint["hit"]:
            return "interrupted"
        if o.max_steps is not None and step >= o.max_steps:
            return "max-steps"
        if o.max_minutes is not None and time.monotonic() - self.start >= 60.0 * o.max_minutes:
            return "max-minutes"
        return None


def _log_validation(tr: Trainer, opts: RunOptions) -> None:
    res = tr.validate()
    if res is not None:
        opts.log(f"step {res['step']}: validation {res['total']:.2f} nats/image "
                 f"(KL {res['kl']:.2f} + recon {res['recon']:.2f}), averaged weights")


def _run_epoch(tr: Trainer, opts: RunOptions, clock: _Clock, sigint: dict) -> str | None:
    """Steps until the epoch's permutation is used up or a stop condition (returned)."""
    p, B = tr.progress, tr.tc.batch_size
    if p.perm is None:
        p.perm, p.pos = tr.rng.permutation(len(tr.x)), 0
    smooth = None
    with tqdm(total=-(-len(p.perm) // B), initial=-(-p.pos // B), unit="batch",
              desc=f"epoch {p.epoch + 1}/{tr.tc.epochs}", disable=not opts.progress,
              dynamic_ncols=True, leave=False) as bar:
        while p.pos < len(p.perm):
            idx = p.perm[p.pos:p.pos + B]
            now = np.array(tr.train_step(idx))                        # loss, kl, recon
            p.pos += len(idx)
            smooth = now if smooth is None else 0.98 * smooth + 0.02 * now    # still adds up
            bar.update(1)
            bar.set_postfix_str(f"loss {smooth[0]:.2f} = KL {smooth[1]:.2f} + recon "
                                f"{smooth[2]:.2f} nats/image", refresh=False)
            if tr.tc.valid_every and p.step % tr.tc.valid_every == 0:
                _log_validation(tr, opts)
            reason = clock.stop_reason(sigint)
            if reason:
                return reason
            clock.maybe_checkpoint()
    return None


def run(tr: Trainer, opts: RunOptions) -> str:
    """Train until tr.tc.epochs are done or a stop condition; checkpoint; say why it stopped.

    Returns "complete", "max-minutes" or "max-steps"; raises TrainingInterrupted on Ctrl-C
    (after checkpointing the last whole step). Checkpoints at every epoch end and every stop.
    """
    clock, reason = _Clock(tr, opts), None
    with _sigint_flag() as sigint:
        while reason is None and tr.progress.epoch < tr.tc.epochs:
            reason = _run_epoch(tr, opts, clock, sigint)
            if reason is None:                                   # the epoch is complete
                p = tr.progress
                p.epoch, p.perm, p.pos = p.epoch + 1, None, 0
                if not p.history or p.history[-1]["step"] != p.step:
                    _log_validation(tr, opts)
                reason = clock.stop_reason(sigint)
            clock.checkpoint()
    if reason == "interrupted":
        raise TrainingInterrupted(opts.checkpoint, tr.progress.step)
    return reason or "complete"


# ----- after training: p(z), final validation, the model file -----

def _machine(device: torch.device) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": str(torch.__version__), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def fit_prior(tr: Trainer) -> tuple[DiagonalGMM, dict, np.ndarray]:
    """p(z) from the averaged encoder's codes; components chosen on validation codes (or on
    a seeded 10% of the training codes when there is no validation data).

    Returns (gmm, {components: validation log p(z) nats}, training codes (N, D)).
    """
    train_codes = encode_all(tr.polyak.model, tr.x)
    if tr.valid_x is not None:
        fit, held = train_codes, encode_all(tr.polyak.model, tr.valid_x)
    else:
        order = np.random.default_rng(tr.tc.seed).permutation(len(train_codes))
        cut = max(1, len(order) // 10)
        fit, held = train_codes[order[cut:]], train_codes[order[:cut]]
    gmm, report = select_gmm(fit, held, tr.tc.gmm_components, seed=tr.tc.seed)
    return gmm, {str(k): v for k, v in report.items()}, train_codes


def finish(tr: Trainer, reason: str, command: str = "", extra: dict | None = None):
    """Fit p(z), validate on the whole validation set, gather metadata: (gmm, metadata)."""
    t0 = time.monotonic()
    gmm, report, train_codes = fit_prior(tr)
    final = None
    if tr.valid_x is not None:
        final = evaluate(tr.polyak.model, tr.valid_x, CodeStore.from_codes(train_codes, tr.device),
                         tr.tc.knn_k, seed=tr.tc.seed, gmm=gmm)
        final["bits_per_dim"] = final["total"] / (math.log(2) * int(np.prod(tr.x.shape[1:])))
    p = tr.progress
    metadata = {
        "acnzip_version": __version__, "command": command, "seed": tr.tc.seed,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": p.elapsed_s + time.monotonic() - t0, "machine": _machine(tr.device),
        "steps": p.step, "epochs_completed": p.epoch, "stop_reason": reason,
        "complete": reason == "complete", "train_data": tr.data_id,
        "final_valid_nats_per_image": None if final is None else final["total"],
        "final_valid": final, "valid_history": p.history,
        "gmm_components": int(len(gmm.weights)), "gmm_selection_nats": report,
    }
    metadata.update(extra or {})
    return gmm, json.loads(json.dumps(metadata))     # plain JSON types only (weights_only)


@dataclass
class TrainResult:
    reason: str                 # "complete", "max-minutes" or "max-steps"
    steps: int
    checkpoint: Path | None
    metadata: dict


def _data_info(data: Dataset) -> dict:
    return {"source": data.source, "n": len(data), "shape_hwc": list(data.shape),
            "binary": data.binary, "binary_value": data.binary_value, "mode": data.mode}


def _check_resume_settings(tr: Trainer, config: str | None, overrides: dict) -> None:
    """Settings given again when resuming must equal the checkpoint's (epochs may change)."""
    if config is not None and config != tr.info.get("config", config):
        raise TrainError(f"--config {config} differs from the checkpoint's "
                         f"{tr.info['config']}; settings cannot change when resuming")
    for key, value in overrides.items():
        if key != "epochs" and value is not None and value != getattr(tr.tc, key):
            raise TrainError(f"--{key.replace('_', '-')} {value} differs from the checkpoint's "
                             f"{getattr(tr.tc, key)}; settings cannot change when resuming")


def _init_weights(init: Path, mc: ModelConfig) -> tuple[ModelConfig, dict]:
    """The model file `init`'s config and averaged weights, checked against the data's shape."""
    from .modelfile import load_model
    mf = load_model(init)
    got = mf.config
    if (got.channels, got.height, got.width, got.binary) != (mc.channels, mc.height, mc.width,
                                                             mc.binary):
        raise TrainError(f"--init {init}: the model is for {got.channels}x{got.height}x"
                         f"{got.width} {'binary' if got.binary else '8-bit'} images, the data "
                         f"are {mc.channels}x{mc.height}x{mc.width} "
                         f"{'binary' if mc.binary else '8-bit'}")
    return got, mf.model.state_dict()


def _trainer(data, valid, config, overrides, resume, dev, opts, arch=None, init=None) -> Trainer:
    """A new Trainer (from `init`'s weights, if given), or one continuing the checkpoint
    `resume`. arch: ModelConfig fields overriding the named config's (None values ignored)."""
    train_x = data.model_pixels()
    valid_x = valid.model_pixels(like=data) if valid is not None else None
    arch = {k: v for k, v in (arch or {}).items() if v is not None}
    if resume is None:
        config = config or "cpu"
        H, W, C = data.shape
        mc = model_config(config, C, H, W, data.binary, **arch)
        weights = None
        if init is not None:
            if arch:
                raise TrainError("--init takes the architecture from the model file; leave "
                                 "out --blocks/--filters")
            mc, weights = _init_weights(init, mc)
            if overrides.get("kl_warmup") is None:     # a trained model needs no KL warm-up
                overrides = {**overrides, "kl_warmup": 0}
        tr = Trainer(mc, train_config(config, **overrides), train_x, valid_x, dev)
        tr.info = {"config": config, "data": _data_info(data)}
        if weights is not None:
            tr.warm_start(weights)
            tr.info["init"] = {"file": Path(init).name, "sha256": _sha256(Path(init))}
            opts.log(f"starting from the weights of {init}")
        return tr
    if init is not None:
        raise TrainError("--init and --resume exclude each other (a checkpoint has weights)")
    ckpt = load_checkpoint(resume, dev)
    tr = Trainer.from_checkpoint(ckpt, train_x, valid_x, dev, overrides.get("epochs"))
    tr.info = ckpt.get("info", {})
    _check_resume_settings(tr, config, overrides)
    for key, value in arch.items():
        if value != getattr(tr.mc, key):
            raise TrainError(f"the checkpoint's model has {key} {getattr(tr.mc, key)}, not "
                             f"{value}; the architecture cannot change when resuming")
    opts.log(f"resuming {resume} at step {tr.progress.step} (epoch {tr.progress.epoch + 1})")
    return tr


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def train(data: Dataset, out: Path, valid: Dataset | None = None, config: str | None = None,
          overrides: dict | None = None, resume: Path | None = None, device: str = "auto",
          opts: RunOptions | None = None, command: str = "", arch: dict | None = None,
          init: Path | None = None) -> TrainResult:
    """What `acnzip train` does: build (or resume) a Trainer, run it, fit p(z), write `out`.

    config: a named config ("cpu" when None). overrides: TrainConfig fields (None values are
    ignored); when resuming they must equal the checkpoint's, except "epochs". arch:
    ModelConfig fields over the config's (pixelcnn_blocks, pixelcnn_filters). init: a model
    file to start from (weights only: a new optimiser, code store re-encoded, no KL warm-up
    unless asked for).
    """
    opts, overrides = opts or RunOptions(), dict(overrides or {})
    dev = pick_device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    tr = _trainer(data, valid, config, overrides, resume, dev, opts, arch, init)
    if opts.precision == "bf16":
        tr.autocast_dtype = torch.bfloat16
    elif opts.precision != "fp32":
        raise TrainError(f"precision must be fp32 or bf16, not {opts.precision!r}")
    opts.log(f"training config {tr.info.get('config')}: {len(data)} images {data.shape} "
             f"{'binary' if data.binary else '8-bit'}, {tr.tc.epochs} epochs of batch "
             f"{tr.tc.batch_size}, {tr.tc.optimizer} lr {tr.tc.lr:g}, device {dev}, "
             f"{opts.precision}, PixelCNN {tr.mc.pixelcnn_blocks} x {tr.mc.pixelcnn_filters}")
    reason = run(tr, opts)
    opts.log(f"stopped ({reason}) at step {tr.progress.step}; fitting p(z) and validating")
    gmm, meta = finish(tr, reason, command, extra=dict(tr.info))
    save_model(out, tr.polyak.model, tr.tc, gmm, meta)
    return TrainResult(reason, tr.progress.step, opts.checkpoint, meta)
