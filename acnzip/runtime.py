"""Where and how acnzip computes: the torch session settings every command shares, and a
description of the machine for reports, model files and archive headers."""
from __future__ import annotations

import importlib.metadata
import os
import platform

import numpy as np
import torch

__all__ = ["torch_session", "machine", "LN2"]

LN2 = float(np.log(2))      # nats per bit


def torch_session(threads: int | None) -> None:
    """Pin what changes torch's float results between runs on one machine: the thread count
    (when given; faiss's too) and the convolution backend (oneDNN on; with it off, batches >= 16 go to
    NNPACK, whose results depend on inputs beyond the PixelCNN's mask). Archives record the
    thread count; Alice and Bob both call this before any network runs."""
    torch.backends.mkldnn.enabled = True
    if threads:
        torch.set_num_threads(threads)
        try:                          # faiss (tours, neighbour search) has its own OpenMP pool
            import faiss
            faiss.omp_set_num_threads(threads)
        except Exception:             # absent or broken (a GPU image): nothing to limit
            pass


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one: a container's
    or taskset's limit), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):          # macOS, Windows
        return max(1, os.cpu_count() or 1)


def machine(device: torch.device | str = "cpu") -> dict:
    """The machine and libraries: platform, processor, CPUs, Python, torch, numpy,
    constriction, the torch threads and the device (its GPU's name on CUDA)."""
    device = torch.device(device)
    try:
        constriction = importlib.metadata.version("constriction")
    except importlib.metadata.PackageNotFoundError:
        constriction = "absent"
    info = {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or "cpu", "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": str(torch.__version__),
            "numpy": np.__version__, "constriction": constriction,
            "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
