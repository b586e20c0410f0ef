"""acnzip against its bound and against classical lossless codecs, on the same images.

    python -m benchmarks.run --dataset binarized_mnist --split test [--quick] [--n N]
                             [--model M] [--threads 1] [--out benchmarks/results]

In one process: acnzip compress + decompress with --order set, keep and tour (portable, the
default, for set and keep) and set --float (each decoded in a new process and compared: keep
position by position, the others as a multiset of images); Table 2 of the set
(acnzip.evaluate.table2); one batched full forward pass of the networks over the same images
(the yardstick for decode speed); every peer of benchmarks.peers. Writes <name>.json/.md/.png
(benchmarks.report), name = <dataset>-<split>[-quick|-nN].

Datasets (../shared/datasets): binarized_mnist ({split}.npz, key x, {0,1}); mnist (8-bit,
mnist.npz x_train/x_test); cifar10 (cifar10_partial.npz x_train/x_test, RGB; a smoke run of
the colour path, not a rate claim). 8-bit data need --model (a model trained on such data).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from acnzip.runtime import machine as runtime_machine, torch_session

from .peers import run_peers
from .report import SCHEMA, rates, write_report

RESULTS = Path(__file__).resolve().parent / "results"
DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets"
QUICK_IMAGES = 500
DATASETS = {   # name -> (file under the data root, key of a split, binary)
    "binarized_mnist": (lambda s: f"binarized_mnist/{s}.npz", lambda s: "x", True),
    "mnist": (lambda s: "mnist/mnist.npz", lambda s: f"x_{s}", False),
    "cifar10": (lambda s: "cifar10_partial/cifar10_partial.npz", lambda s: f"x_{s}", False),
}
NOTES = {
    "cifar10": "CIFAR-10 here is a partial copy (first 846 test / 932 train images) and the "
               "model is small: this run proves acnzip's colour path end to end (R->G->B, "
               "256-way sub-pixels, lossless) and is not a claim about its rate on CIFAR-10.",
}


# acnzip modes, each measured: the orders (set and keep portable, the default) and set with
# --float (the float32 networks: what portability costs)
ORDERS = ("set", "keep", "tour", "set-float")

def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_images(dataset: str, split: str, n: int | None, root: Path = DATA_ROOT) -> np.ndarray:
    """The first n images of a split, uint8 (N, H, W) or (N, H, W, C), values as stored."""
    if dataset not in DATASETS:
        raise SystemExit(f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")
    file, key, _ = DATASETS[dataset]
    path = Path(root) / file(split)
    if not path.exists():
        raise SystemExit(f"{path}: not found (the datasets live in ../shared/datasets)")
    with np.load(path) as z:
        if key(split) not in z.files:
            raise SystemExit(f"{path} has no split {split!r} (arrays: {', '.join(z.files)})")
        x = z[key(split)]
    return np.ascontiguousarray(x[:n] if n else x).astype(np.uint8)


def same_set(a: np.ndarray, b: np.ndarray) -> bool:
    """True if b holds exactly the images of a, in any order (a multiset comparison)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    key = lambda x: x[np.lexsort(x.reshape(len(x), -1).T[::-1])]             # noqa: E731
    return bool(np.array_equal(key(a), key(b)))


# ----- acnzip -----

def resolve_model(model: str | None, images: np.ndarray, binary: bool) -> tuple[Path | None, str]:
    """(model path, "") or (None, why acnzip is skipped)."""
    if model:
        return (Path(model), "") if Path(model).exists() else (None, f"{model}: no such file")
    from acnzip.errors import AcnzipError
    from acnzip.modelfile import default_model_path
    shape_chw = (images.shape[3] if images.ndim == 4 else 1,) + images.shape[1:3]
    try:
        return default_model_path(shape_chw, binary), ""
    except AcnzipError as exc:
        return None, f"no --model given and {exc}"


def run_acnzip_order(npy: Path, images: np.ndarray, model: Path, order: str, threads: int,
                     tmp: Path) -> dict:
    """Compress one order mode, then decompress in a new process (nothing shared with the
    compressor but the archive and the model file); the compress report plus the decode time,
    verified pixel for pixel."""
    from acnzip.api import compress
    archive = tmp / f"set-{order}.acn"
    rep = compress(npy, archive, model=model, order=order.split("-")[0], force=True,
                   threads=threads, quiet=True, portable=not order.endswith("-float"))
    code = ("import json, sys; from acnzip.api import decompress; "
            "print(json.dumps(decompress(sys.argv[1], sys.argv[2], model=sys.argv[3], "
            "force=True, quiet=True)))")
    run = subprocess.run([sys.executable, "-c", code, str(archive), str(tmp / f"out-{order}"),
                          str(model)], capture_output=True, text=True)
    if run.returncode:
        raise AssertionError(f"acnzip --order {order}: decompress failed: {run.stderr[-2000:]}")
    back = json.loads(run.stdout.strip().splitlines()[-1])
    restored = np.load(Path(back["outdir"]) / npy.name)
    ok = np.array_equal(restored, images) if order == "keep" else same_set(images, restored)
    if not ok:
        raise AssertionError(f"acnzip --order {order}: decoded images differ from the originals")
    return {**rep, "decode_seconds": back["decode_seconds"], "lossless": True}


@torch.no_grad()
def forward_pass_seconds(model: Path, npy: Path, batch: int, threads: int) -> dict:
    """Wall time of one batched full forward pass (encoder, prior on the codes, PixelCNN
    logits at z = c + noise) over all images, after one untimed warm-up batch."""
    from acnzip.data import load_dataset
    from acnzip.modelfile import load_model
    torch_session(threads)
    acn = load_model(model).model
    pixels = torch.from_numpy(load_dataset(npy).model_pixels())          # (N, C, H, W) uint8
    gen = torch.Generator().manual_seed(0)

    def one(x):
        c = acn.encoder(x)                                               # (B, D)
        acn.prior(c)
        acn.decoder(x, c + torch.randn(c.shape, generator=gen))          # logits

    one(pixels[:batch])
    t0 = time.perf_counter()
    for i in range(0, len(pixels), batch):
        one(pixels[i:i + batch])
    return {"seconds": time.perf_counter() - t0, "batch": batch, "threads": threads}


def run_acnzip(npy: Path, images: np.ndarray, model: Path | None, reason: str, threads: int,
               forward_batch: int, tmp: Path) -> dict:
    """Every order mode and the forward-pass yardstick, or {available: False, reason}."""
    if model is None:
        _log(f"acnzip: skipped ({reason})")
        return {"available": False, "reason": reason}
    out = {"available": True, "model": str(model), "threads": threads,
           "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    for order in ORDERS:
        out[order] = run_acnzip_order(npy, images, model, order, threads, tmp)
        r = out[order]
        _log(f"acnzip --order {order}: {r['archive_bytes']} bytes, {r['nats_per_image']:.2f} "
             f"nats/image (bound {r['bound_nats_per_image']:.2f}), encode "
             f"{r['encode_seconds']:.1f} s, decode {r['decode_seconds']:.1f} s")
    fwd = forward_pass_seconds(model, npy, forward_batch, threads)
    for order in ORDERS:
        fwd[f"decode_over_forward_{order}"] = out[order]["decode_seconds"] / fwd["seconds"]
    out["forward_pass"] = fwd
    _log(f"forward pass: {fwd['seconds']:.2f} s; decode / forward = "
         f"{fwd['decode_over_forward_set']:.2f} (set)")
    return out


def run_table2(npy: Path, model: Path | None, threads: int) -> dict:
    """Table 2 in nats per image, or {available: False, reason}."""
    if model is None:
        return {"available": False, "reason": "no model (see acnzip)"}
    try:
        from acnzip.evaluate import table2
    except ImportError as exc:
        return {"available": False, "reason": f"acnzip.evaluate.table2 not importable: {exc}"}
    t = table2(str(npy), model=model, threads=threads, quiet=True)
    _log(f"Table 2: ordered {t['ordered']:.2f}, unordered {t['unordered']:.2f} nats/image")
    return {"available": True, **{k: v for k, v in t.items() if k != "model"}}


# ----- the whole run -----

def machine() -> dict:
    """Where the timings were taken (load average included: other jobs slow everything)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    cpus = os.cpu_count()
    return {**runtime_machine(), "load_average_1min_at_start": load[0] if load else None,
            "summary": f"{platform.machine()}, {cpus} CPUs, Python "
                       f"{platform.python_version()}, torch {torch.__version__}"
                       + (f", load average {load[0]:.1f} at start" if load else "")}


def peer_rows(images: np.ndarray, binary: bool, dims: int) -> list[dict]:
    """Every peer in both forms, as report rows (rates added for the available ones)."""
    rows = []
    for r in run_peers(images, binary, log=_log):
        row = r.as_dict()
        row.update(rates(r.total_bytes, len(images), dims) if r.available else
                   {"bits_per_image": None, "nats_per_image": None, "bits_per_dim": None})
        rows.append(row)
    return rows


def acnzip_rows(acn: dict, dims: int) -> list[dict]:
    """acnzip's two order modes as report rows."""
    if not acn.get("available"):
        return []
    return [{"method": "acnzip", "form": f"order={o}", "available": True, "reason": "",
             "total_bytes": acn[o]["archive_bytes"],
             **rates(acn[o]["archive_bytes"], acn[o]["n_images"], dims),
             "encode_seconds": acn[o]["encode_seconds"],
             "decode_seconds": acn[o]["decode_seconds"], "lossless": acn[o]["lossless"],
             "details": {"chains": acn[o]["chains"], "header_bytes": acn[o]["header_bytes"]}}
            for o in ORDERS]


def benchmark(images: np.ndarray, name: str, dataset: str, split: str, model: str | None = None,
              threads: int = 1, forward_batch: int = 256, quick: bool = False) -> dict:
    """Run everything on `images` (values as stored) and return the result dict."""
    t0 = time.perf_counter()
    binary = DATASETS[dataset][2] if dataset in DATASETS else bool(images.max() <= 1)
    dims = int(np.prod(images.shape[1:]))
    model_path, reason = resolve_model(model, images, binary)
    with tempfile.TemporaryDirectory(prefix="acnzip-bench-") as tmp:
        npy = Path(tmp) / f"{name}.npy"
        np.save(npy, images)
        acn = run_acnzip(npy, images, model_path, reason, threads, forward_batch, Path(tmp))
        bound = run_table2(npy, model_path, threads)
    rows = acnzip_rows(acn, dims) + peer_rows(images, binary, dims)
    notes = [NOTES[dataset]] if dataset in NOTES else []
    notes += [f"Not run: {m}: {why}" for m, why in
              dict.fromkeys((r["method"], r["reason"]) for r in rows if not r["available"])]
    return {"schema": SCHEMA, "name": name, "dataset": dataset, "split": split,
            "n_images": len(images), "image_shape": list(images.shape[1:]) +
            ([1] if images.ndim == 3 else []), "binary": binary, "dims_per_image": dims,
            "quick": quick, "machine": machine(), "wall_seconds": time.perf_counter() - t0,
            "acnzip": acn, "bound": bound, "methods": rows, "notes": notes}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="binarized_mnist", choices=sorted(DATASETS))
    p.add_argument("--split", default="test")
    p.add_argument("--quick", action="store_true", help=f"the first {QUICK_IMAGES} images")
    p.add_argument("--n", type=int, default=None, help="the first N images (overrides --quick)")
    p.add_argument("--model", default=None, help="acnzip model file (default: the shipped one)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the coder")
    p.add_argument("--forward-batch", type=int, default=256)
    p.add_argument("--data-root", type=Path, default=DATA_ROOT)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default=None, help="file stem (default <dataset>-<split>[-quick])")
    return p.parse_args(argv)


def main(argv=None) -> None:
    a = parse_args(argv)
    n = a.n or (QUICK_IMAGES if a.quick else None)
    name = a.name or f"{a.dataset}-{a.split}" + (f"-n{a.n}" if a.n else "-quick" if a.quick else "")
    images = load_images(a.dataset, a.split, n, a.data_root)
    _log(f"{name}: {len(images)} images {images.shape[1:]}")
    res = benchmark(images, name, a.dataset, a.split, a.model, a.threads, a.forward_batch,
                    quick=a.quick)
    paths = write_report(res, a.out, name)
    print(paths["md"].read_text())
    _log(f"wrote {', '.join(str(p) for p in paths.values())} ({res['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
