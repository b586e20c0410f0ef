"""`acnzip train`: running Algorithm 1 (trainer.py) to a usable model file.

The run: epochs of steps, validation every few steps, checkpoints every few minutes, at each
epoch end, at a time budget and on Ctrl-C (so `resume` continues exactly), a progress bar;
then p(z) is fitted to the training codes (gmm.py), the model validated and its file written
(modelfile.py) with the command, the machine and the validation history as metadata.
Under torchrun the ranks train together (distributed.py); rank 0 validates, checkpoints and
writes the model file.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from . import __version__
from .config import ModelConfig, TrainConfig, model_config, train_config
from .data import Dataset
from .distributed import World, weights_digest
from .gmm import DiagonalGMM, select_gmm
from .modelfile import file_sha256, load_model, save_model
from .nn.grow import map_slots
from .runtime import machine
from .trainer import (TrainError, Trainer, final_validation, load_checkpoint, pick_device,
                      save_checkpoint)

__all__ = ["RunOptions", "TrainResult", "TrainingInterrupted", "train", "run", "finish",
           "fit_prior"]


class TrainingInterrupted(Exception):
    """Ctrl-C: the loop stopped after a whole step and wrote a checkpoint."""

    def __init__(self, checkpoint: Path | None, step: int):
        super().__init__(f"interrupted at step {step}")
        self.checkpoint, self.step = checkpoint, step


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

    REASONS = (None, "max-steps", "max-minutes", "interrupted")

    def stop_reason(self, sigint: dict) -> str | None:
        """Why to stop now (None: go on), agreed by all ranks: the strongest reason any has."""
        o, step = self.opts, self.tr.progress.step
        reason = None
        if sigint["hit"]:
            reason = "interrupted"
        elif o.max_steps is not None and step >= o.max_steps:
            reason = "max-steps"
        elif o.max_minutes is not None and time.monotonic() - self.start >= 60.0 * o.max_minutes:
            reason = "max-minutes"
        return self.REASONS[self.tr.world.agree_max(self.REASONS.index(reason))]


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

def fit_prior(tr: Trainer) -> tuple[DiagonalGMM, dict, np.ndarray]:
    """p(z) from the averaged encoder's codes; components chosen on validation codes (or on
    a seeded 10% of the training codes when there is no validation data) among the run's
    candidates and today's default ones (a run resumed from an older checkpoint, whose
    candidates stopped at 32, gets today's too: more candidates never make p(z) worse on the
    codes that choose it).

    Returns (gmm, {components: validation log p(z) nats}, training codes (N, D)).
    """
    train_codes = tr.polyak.model.codes(tr.x)
    if tr.valid_x is not None:
        fit, held = train_codes, tr.polyak.model.codes(tr.valid_x)
    else:
        order = np.random.default_rng(tr.tc.seed).permutation(len(train_codes))
        cut = max(1, len(order) // 10)
        fit, held = train_codes[order[cut:]], train_codes[order[:cut]]
    candidates = sorted(set(tr.tc.gmm_components) | set(TrainConfig.gmm_components))
    gmm, report = select_gmm(fit, held, candidates, seed=tr.tc.seed)
    return gmm, {str(k): v for k, v in report.items()}, train_codes


def finish(tr: Trainer, reason: str, command: str = "", extra: dict | None = None):
    """Fit p(z), validate on the whole validation set, gather metadata: (gmm, metadata)."""
    t0 = time.monotonic()
    gmm, report, train_codes = fit_prior(tr)
    final = None
    if tr.valid_x is not None:
        final = final_validation(tr.polyak.model, tr.valid_x, train_codes, tr.tc.knn_k, gmm,
                                 tr.device)
    p = tr.progress
    metadata = {
        "acnzip_version": __version__, "command": command, "seed": tr.tc.seed,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": p.elapsed_s + time.monotonic() - t0, "machine": machine(tr.device),
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
    metadata: dict              # {} on ranks other than 0 (which write nothing)
    main: bool = True           # rank 0 (or the only process)


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


def _init_weights(init: Path, mc: ModelConfig, blocks: int | None = None,
                  filters: int | None = None) -> tuple[ModelConfig, dict]:
    """The model file `init`'s config and averaged weights, checked against the data's shape.
    blocks, filters: grow the PixelCNN to this many blocks / feature maps per stack (see
    `Trainer.warm_start`); never fewer."""
    mf = load_model(init)
    got = mf.config
    if blocks is not None and blocks != got.pixelcnn_blocks:
        if blocks < got.pixelcnn_blocks:
            raise TrainError(f"--blocks {blocks}: {init} has {got.pixelcnn_blocks} PixelCNN "
                             f"blocks; --init can add blocks, not remove them")
        got = dataclasses.replace(got, pixelcnn_blocks=blocks)
    if filters is not None and filters != got.pixelcnn_filters:
        if filters < got.pixelcnn_filters:
            raise TrainError(f"--filters {filters}: {init} has {got.pixelcnn_filters} feature "
                             f"maps per stack; --init can add maps, not remove them")
        try:
            map_slots(got.pixelcnn_filters, filters, got.channels)
        except ValueError as e:
            raise TrainError(f"--filters {filters}: {e}") from None
        got = dataclasses.replace(got, pixelcnn_filters=filters)
    if (got.channels, got.height, got.width, got.binary) != (mc.channels, mc.height, mc.width,
                                                             mc.binary):
        raise TrainError(f"--init {init}: the model is for {got.channels}x{got.height}x"
                         f"{got.width} {'binary' if got.binary else '8-bit'} images, the data "
                         f"are {mc.channels}x{mc.height}x{mc.width} "
                         f"{'binary' if mc.binary else '8-bit'}")
    return got, mf.model.state_dict()


def _trainer(data, valid, config, overrides, resume, dev, opts, arch=None, init=None,
             world: World | None = None) -> Trainer:
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
            blocks = arch.pop("pixelcnn_blocks", None)
            filters = arch.pop("pixelcnn_filters", None)
            if arch:
                raise TrainError("--init takes the architecture from the model file; leave "
                                 "out --likelihood (--blocks and --filters may grow it)")
            mc, weights = _init_weights(init, mc, blocks, filters)
            if overrides.get("kl_warmup") is None:     # a trained model needs no KL warm-up
                overrides = {**overrides, "kl_warmup": 0}
        tr = Trainer(mc, train_config(config, **overrides), train_x, valid_x, dev, world)
        tr.info = {"config": config, "data": _data_info(data)}
        if weights is not None:
            tr.warm_start(weights)
            tr.info["init"] = {"file": Path(init).name, "sha256": file_sha256(init)}
            opts.log(f"starting from the weights of {init}")
        return tr
    if init is not None:
        raise TrainError("--init and --resume exclude each other (a checkpoint has weights)")
    ckpt = load_checkpoint(resume, dev)
    tr = Trainer.from_checkpoint(ckpt, train_x, valid_x, dev, overrides.get("epochs"), world)
    tr.info = ckpt.get("info", {})
    _check_resume_settings(tr, config, overrides)
    for key, value in arch.items():
        if value != getattr(tr.mc, key):
            raise TrainError(f"the checkpoint's model has {key} {getattr(tr.mc, key)}, not "
                             f"{value}; the architecture cannot change when resuming")
    opts.log(f"resuming {resume} at step {tr.progress.step} (epoch {tr.progress.epoch + 1})")
    return tr


def train(data: Dataset, out: Path, valid: Dataset | None = None, config: str | None = None,
          overrides: dict | None = None, resume: Path | None = None, device: str = "auto",
          opts: RunOptions | None = None, command: str = "", arch: dict | None = None,
          init: Path | None = None) -> TrainResult:
    """What `acnzip train` does: build (or resume) a Trainer, run it, fit p(z), write `out`.

    config: a named config ("cpu" when None). overrides: TrainConfig fields (None values are
    ignored); when resuming they must equal the checkpoint's, except "epochs". arch:
    ModelConfig fields over the config's (pixelcnn_blocks, pixelcnn_filters). init: a model
    file to start from (weights only: a new optimiser, code store re-encoded, no KL warm-up
    unless asked for). Under torchrun (WORLD_SIZE > 1) every rank calls this; rank 0 alone
    logs, validates, checkpoints and writes `out`.
    """
    opts, overrides = opts or RunOptions(), dict(overrides or {})
    dev = pick_device(device)
    world = World.from_env(dev.type)
    try:
        return _train(data, out, valid, config, overrides, resume, dev, opts, command, arch,
                      init, world)
    finally:
        world.close()


def _train(data, out, valid, config, overrides, resume, dev, opts, command, arch, init,
           world: World) -> TrainResult:
    if world.size > 1 and dev.type == "cuda":
        dev = torch.device("cuda", world.local_rank)
    if not world.main:                       # rank 0 speaks, validates and writes for all
        opts = dataclasses.replace(opts, checkpoint=None, progress=False, log=lambda msg: None)
        valid = None
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    tr = _trainer(data, valid, config, overrides, resume, dev, opts, arch, init, world)
    if opts.precision == "bf16":
        tr.autocast_dtype = torch.bfloat16
    elif opts.precision != "fp32":
        raise TrainError(f"precision must be fp32 or bf16, not {opts.precision!r}")
    opts.log(f"training config {tr.info.get('config')}: {len(data)} images {data.shape} "
             f"{'binary' if data.binary else '8-bit'}, {tr.tc.epochs} epochs of batch "
             f"{tr.tc.batch_size}, {tr.tc.optimizer} lr {tr.tc.lr:g}, device {dev}, "
             f"{opts.precision}, PixelCNN {tr.mc.pixelcnn_blocks} x {tr.mc.pixelcnn_filters}")
    if world.size > 1:
        opts.log(f"{world.size} processes (torch.distributed, {world.backend}), a global batch "
                 f"of {tr.tc.batch_size} split between them")
    start, first = time.monotonic(), tr.progress.step
    reason = run(tr, opts)
    secs, steps = max(time.monotonic() - start, 1e-9), tr.progress.step - first
    opts.log(f"trained {steps} steps in {secs:.0f} s: {steps * tr.tc.batch_size / secs:.1f} "
             f"images/s with {world.size} process(es) x {torch.get_num_threads()} thread(s)")
    if not world.check_same(weights_digest(tr.model) + weights_digest(tr.polyak.model)):
        raise TrainError("the training processes ended with different weights; the model "
                         "file was not written")
    if not world.main:
        return TrainResult(reason, tr.progress.step, None, {}, main=False)
    opts.log(f"stopped ({reason}) at step {tr.progress.step}; fitting p(z) and validating")
    gmm, meta = finish(tr, reason, command, extra=dict(tr.info, processes=world.size))
    save_model(out, tr.polyak.model, tr.tc, gmm, meta)
    return TrainResult(reason, tr.progress.step, opts.checkpoint, meta)
