"""Tuning the conditional prior p(z|c_hat) to the neighbours the coders condition on
(`acnzip tune-prior`).

Algorithm 1 trains p(z|c_hat) with c_hat drawn among the K = 5 nearest codes of the whole
training store (50,000 codes for MNIST). The coders condition on other neighbours: `--order
tour` each image on its predecessor along a path through the set being coded, `--order set`
on the codes nearest z among the images decoded before it. In a set of N images those
neighbours are as far apart as the nearest codes among N, and for N below the training
set's size that is farther than the prior was trained for: a prior sharpened for the training
store's close neighbours pays for it on every long step. Measured on binarized MNIST's
validation set with leg 6 (the default before session 15), KL along the greedy tour in
nats/image: 10,000 images 5.01 -> 4.71 tuned, 2,500 images 7.27 -> 6.22; `--order set`'s KL
falls by 0.02-0.05; Table 2's kl_k1 and kl_k5 (c_hat among the set's nearest codes, which no
coder uses) rise by 0.1-0.4.

`tune_prior` keeps the encoder, the decoder and p(z) as they are, so every code and every
reconstruction cost stays bit for bit what it was, and trains only the prior's MLP on the
(predecessor, successor) pairs of greedy nearest-unvisited-neighbour tours (tour.greedy_tour)
through random disjoint subsets of the training codes, one pass of subsets for each size in
`set_sizes`: it minimises -log p(z | c_pred) at z = c_succ + eps with eps ~ N(0, I) drawn
afresh each step, which is the KL along such a tour up to a constant. Adam on the prior's
weights; the result is an exponential moving average of them. Everything is seeded: the same
model, codes and arguments give the same weights on the same machine.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from .errors import AcnzipError
from .gmm import DiagonalGMM
from .nn import ACN
from .nn.prior import mixture_log_prob
from .tour import tour_pairs
from .trainer import Polyak, data_identity, final_validation

__all__ = ["PriorTuning", "PriorTuningError", "tune_prior", "tune_prior_file"]


class PriorTuningError(AcnzipError):
    """A tuning that cannot be done as asked (too few images, the output is the input)."""


@dataclass(frozen=True)
class PriorTuning:
    """The settings of one tuning run (recorded in the model file's metadata)."""
    set_sizes: tuple[int, ...] = (2500, 5000, 10000, 25000)
    steps: int = 6000
    batch_size: int = 256
    lr: float = 3e-4
    ema_decay: float = 0.998
    seed: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["set_sizes"] = list(self.set_sizes)
        return d


def tune_prior(model: ACN, train_codes: np.ndarray, tuning: PriorTuning = PriorTuning(),
               progress: bool = False) -> list[float]:
    """Train model.prior in place on tour pairs of `train_codes` (N, D), the model's own codes
    of its training images; the prior ends with the moving average of its weights. Nothing
    else in `model` changes. Returns the mean training loss (nats/image) of each 100 steps."""
    if min(min(tuning.set_sizes), len(train_codes)) < 2:
        raise PriorTuningError(f"tuning the prior needs tours of at least 2 images, not "
                               f"{min(min(tuning.set_sizes), len(train_codes))}")
    rng = np.random.default_rng(tuning.seed)
    gen = torch.Generator().manual_seed(tuning.seed)
    pred, succ = map(torch.from_numpy, tour_pairs(train_codes, tuning.set_sizes, rng))
    codes = torch.from_numpy(np.ascontiguousarray(train_codes, dtype=np.float32))
    prior = model.prior
    average = Polyak(prior, tuning.ema_decay)
    average.settle()                      # the prior starts trained: no warm-up of the average
    opt = torch.optim.Adam(prior.parameters(), lr=tuning.lr)
    losses, acc = [], 0.0
    prior.train()
    for step in tqdm(range(1, tuning.steps + 1), desc="tuning the prior", unit="step",
                     disable=not progress, leave=False):
        pick = torch.from_numpy(rng.integers(0, len(pred), tuning.batch_size))
        c_pred, c_succ = codes[pred[pick]], codes[succ[pick]]
        z = c_succ + torch.randn(c_succ.shape, generator=gen)
        loss = -mixture_log_prob(z, prior(c_pred)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        average.update(prior)
        acc += float(loss.detach())
        if step % 100 == 0:
            losses.append(acc / 100)
            acc = 0.0
    prior.load_state_dict(average.model.state_dict())
    model.eval()
    return losses


def _validate(model: ACN, gmm: DiagonalGMM, vpix: np.ndarray, train_codes: np.ndarray,
              knn_k: int) -> dict:
    """The validation `acnzip train` records (trainer.final_validation: Algorithm 1's, c_hat
    among the knn_k nearest training codes, and the coders' KLs), keyed as tune-prior prints."""
    final = final_validation(model, torch.from_numpy(vpix), train_codes, knn_k, gmm)
    return {"tour": final["kl_tour"], "set": final["kl_set"], "ordered": final["ordered"],
            "final_valid": final}


def tune_prior_file(model_path, data, out, valid=None, tuning: PriorTuning = PriorTuning(),
                    command: str = "", progress: bool = False, log=print) -> dict:
    """What `acnzip tune-prior` does: load MODEL, tune its prior on the codes of `data` (a
    Dataset: the model's training images), write `out` atomically with the same encoder,
    decoder and p(z), and the metadata entry "prior_tuning" (returned). With `valid` (a
    Dataset): _validate before and after, and the file's final_valid is the tuned model's."""
    import datetime
    import json
    import time

    from .modelfile import check_fits, file_sha256, load_model, save_model

    t0 = time.monotonic()
    mf = load_model(model_path)
    pixels = data.model_pixels()
    check_fits(mf, pixels.shape[1:], data.binary, f"model {model_path}")
    model, metadata = mf.model, dict(mf.metadata)
    vpix = None
    if valid is not None:
        vpix = valid.model_pixels(like=data)
        if len(vpix) < 2:
            raise PriorTuningError("the validation data need at least 2 images")
    entry = {"tuning": tuning.to_dict(), "data": data_identity(pixels),
             "source_sha256": file_sha256(model_path),
             "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "command": command}
    train_codes = model.codes(pixels)

    def check(when: str) -> None:
        v = entry[f"valid_{when}"] = _validate(model, mf.gmm, vpix, train_codes,
                                               mf.train_config.knn_k)
        log(f"validation {when + ':':7s} ordered (greedy tour) {v['ordered']:.2f} = KL "
            f"{v['tour']:.3f} + recon {v['final_valid']['recon']:.2f}; --order set KL "
            f"{v['set']:.3f}; Algorithm 1's {v['final_valid']['total']:.2f} nats/image")

    if vpix is not None:
        check("before")
    entry["loss_per_100_steps"] = tune_prior(model, train_codes, tuning, progress)
    if vpix is not None:
        check("after")
        metadata["final_valid"] = entry["valid_after"]["final_valid"]
        metadata["final_valid_nats_per_image"] = metadata["final_valid"]["total"]
    entry["wall_time_s"] = time.monotonic() - t0
    metadata["prior_tuning"] = entry
    save_model(out, model, mf.train_config, mf.gmm, json.loads(json.dumps(metadata)))
    return entry
