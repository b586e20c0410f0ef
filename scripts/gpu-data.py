"""Prepare DATADIR for scripts/train-gpu.sh from ../shared/datasets (run here, before a GPU call).

    python scripts/gpu-data.py [DATADIR] [--shared PATH]

Writes, each as NAME.npy.xz (an .npy of uint8 N x 28 x 28, xz-compressed: 9.5 MB in all
against 12.4 MB as .npz, room in the 64 MiB a device call may send; train-gpu.sh unpacks them):
    bin_train bin_valid              binarized MNIST train (50,000) / valid (10,000), {0, 1}
    mnist_train55k mnist_valid5k     8-bit MNIST x_train[:55000] / x_train[55000:]
DATADIR defaults to .gpu/data (keep it out of git: `echo /.gpu/ >> .git/info/exclude`), and
travels to the GPU machine when a device call names it in `carry`. The test images are never
copied: models are chosen on validation, and archives are made and measured here, on the CPU.
"""
from __future__ import annotations

import argparse
import io
import lzma
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPLIT_8BIT = 55_000   # x_train[:55000] trains, x_train[55000:] validates (as the shipped mnist.pt)


def _save(path: Path, x: np.ndarray) -> None:
    """Write path (NAME.npy.xz) atomically (a temporary file beside it, then a rename)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(x, dtype=np.uint8))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    os.replace(tmp, path)
    print(f"{path}: {x.shape[0]} images, values {int(x.min())}..{int(x.max())}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datadir", nargs="?", default=str(ROOT / ".gpu" / "data"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "datasets"),
                    help="the datasets folder (default: ../shared/datasets beside the project)")
    a = ap.parse_args(argv)
    src, out = Path(a.shared), Path(a.datadir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for split, name in (("train", "bin_train"), ("valid", "bin_valid")):
            with np.load(src / "binarized_mnist" / f"{split}.npz") as z:
                _save(out / f"{name}.npy.xz", z["x"])
        with np.load(src / "mnist" / "mnist.npz") as z:
            x = z["x_train"]
        _save(out / "mnist_train55k.npy.xz", x[:SPLIT_8BIT])
        _save(out / "mnist_valid5k.npy.xz", x[SPLIT_8BIT:])
    except (OSError, KeyError, ValueError, lzma.LZMAError) as e:
        print(f"gpu-data: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
