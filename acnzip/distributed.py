"""Training in several processes: `torchrun --nproc_per_node=N -m acnzip train ...`.

torch DistributedDataParallel on gloo (CPU) or nccl (CUDA). Every rank runs Algorithm 1 on the
same global batch of B images, each on its own slice of it, so N processes do the same
algorithm as one process with batch B:
  - every rank draws the same permutation and the same noise (same seeds, same draws: the
    draws are made for the whole batch on every rank, each keeps its slice);
  - the batch's codes are all-gathered, so every rank's code store holds the same codes and
    the c_hat draws (made for the whole batch) are the same on every rank;
  - DDP averages the gradients; each rank's loss is scaled so that the average is the
    gradient of the global batch mean; Adam and the Polyak average then run identically.
Rank 0 alone validates, logs, checkpoints and writes the model file; stop decisions (time
budget, Ctrl-C) are agreed by all ranks after every step. At the end the ranks compare a hash
of their weights: a difference is an error, never a silently wrong model; then the others
wait for rank 0 to finish writing, and all leave together.
"""
from __future__ import annotations

import gc
import hashlib
import os
import warnings
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["World", "weights_digest"]

_CLOSING = "acnzip/closing"         # rank 0 sets it when it is done with the model file
_CLOSE_WAIT = timedelta(days=7)     # longer than any finish; torchrun ends failed runs


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (size 1: no distribution)."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return dist.get_backend() if self.size > 1 else "none"

    @classmethod
    def from_env(cls, device_type: str) -> "World":
        """The world torchrun describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK),
        with its process group started (gloo on CPU, nccl on CUDA); size 1 without torchrun."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return cls()
        # DDP's note that some masked convolutions' gradients have another memory layout
        # than its buckets: a copy per step, not an error
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))

    def slice(self, n: int) -> slice:
        """This rank's part of a batch of n (contiguous, sizes differing by at most one)."""
        bounds = np.linspace(0, n, self.size + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    def gather_rows(self, part: torch.Tensor, n: int) -> torch.Tensor:
        """The (n, ...) tensor whose `slice(n)` rows each rank holds in `part`, on every rank."""
        if self.size == 1:
            return part
        sizes = [self._slice_of(r, n) for r in range(self.size)]
        pad = max(sizes)
        buf = torch.zeros((pad,) + tuple(part.shape[1:]), dtype=part.dtype, device=part.device)
        buf[:len(part)] = part
        parts = [torch.empty_like(buf) for _ in range(self.size)]
        dist.all_gather(parts, buf)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    def _slice_of(self, rank: int, n: int) -> int:
        s = World(rank, self.size).slice(n)
        return s.stop - s.start

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over ranks (on the values' device: the CPU for gloo, CUDA for nccl)."""
        if self.size == 1:
            return values
        out = values.clone()
        dist.all_reduce(out)
        return out

    def agree_max(self, value: int) -> int:
        """The largest of the ranks' values (stop decisions)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def check_same(self, digest: str) -> bool:
        """True when every rank passes the same digest."""
        if self.size == 1:
            return True
        out: list = [None] * self.size
        dist.all_gather_object(out, digest)
        return len(set(out)) == 1

    def close(self) -> None:
        """Leave together. Rank 0 validates and writes the model file minutes after the others
        end training; they wait here until it arrives (on the rendezvous store, not a
        collective: no timeout but torchrun's, which ends every rank when one fails), so that
        no rank tears down its process group while another still runs. The training's
        objects (DDP's reducer holds the group) are collected first, while the interpreter is
        whole: CI once saw rank 1 abort ("terminate called without an active exception") in a
        teardown that began while rank 0 was still fitting p(z)."""
        if self.size > 1 and dist.is_initialized():
            store = dist.distributed_c10d._get_default_store()
            if self.main:
                store.set(_CLOSING, "1")
            else:
                store.wait([_CLOSING], _CLOSE_WAIT)
            gc.collect()
            dist.destroy_process_group()


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's parameters and buffers, in state_dict order."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
