"""compress / decompress / info: the Python API behind the CLI.

compress: load DATA -> codes (averaged encoder) -> greedy tour -> chains -> Alice pushes
everything onto one ANS stack -> archive (docs/format.md). decompress: check model hash and
fingerprint -> Bob pops everything -> write PNGs or the array file, atomically.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import importlib.metadata
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from codec import AnsStack, BinGrid, CodecError, StackUnderflowError
from . import __version__
from .archive import Archive, ArchiveError, read_archive, write_archive
from .atomic import atomic_directory, atomic_write_bytes, check_output
from .data import Dataset, load_dataset, png_name, safe_name
from .errors import AcnzipError
from .modelfile import ModelFile, load_model
from .order import PermutationCodec, pack_names, permutation_bits, unpack_names
from .protocol import (Coder, Layout, chain_lengths, default_chains, decode_dataset,
                       encode_dataset, fingerprint, seed_words)
from .evaluate import tour_kl
from .tour import greedy_tour

__all__ = ["CompressError", "compress", "decompress", "archive_info", "default_model_path"]

MODELS = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS / "binarized-mnist.pt"
LN2 = float(np.log(2))


class CompressError(AcnzipError):
    """A one-line reason why compress/decompress cannot proceed (nothing has been written)."""


def default_model_path(shape_chw: tuple, binary: bool) -> Path:
    """The shipped model if it fits the data, else a clear error."""
    if binary and tuple(shape_chw) == (1, 28, 28) and DEFAULT_MODEL.exists():
        return DEFAULT_MODEL
    kind = "binary" if binary else "8-bit"
    raise CompressError(f"no shipped model fits {kind} {shape_chw[1]}x{shape_chw[2]}x"
                        f"{shape_chw[0]} images: train one with `acnzip train DATA -o MODEL.pt` "
                        "and pass --model MODEL.pt")


def _coder(mf: ModelFile, grid: BinGrid, threads: int) -> Coder:
    torch.set_num_threads(threads)
    g = mf.gmm
    return Coder(mf.model, (g.weights, g.means, np.sqrt(g.variances)), grid, threads)


def _check_fits(mf: ModelFile, ds_shape_chw, binary: bool, what: str) -> None:
    cfg = mf.config
    if (cfg.channels, cfg.height, cfg.width) != tuple(ds_shape_chw) or cfg.binary != binary:
        raise CompressError(
            f"{what} is for {'binary' if cfg.binary else '8-bit'} {cfg.height}x{cfg.width}x"
            f"{cfg.channels} images, the data are {'binary' if binary else '8-bit'} "
            f"{ds_shape_chw[1]}x{ds_shape_chw[2]}x{ds_shape_chw[0]}")


@torch.no_grad()
def dataset_codes(coder: Coder, pixels: np.ndarray, batch: int = 256) -> np.ndarray:
    """Encoder means (N, D) float32, for the tour (any batching is fine: only order depends on
    them; the codes that condition priors are recomputed in the chains' batches)."""
    return np.concatenate([coder.codes(torch.from_numpy(pixels[i:i + batch])).numpy()
                           for i in range(0, len(pixels), batch)])


def grid_for(codes: np.ndarray, width: float = BinGrid.width, margin: float = 8.0) -> BinGrid:
    """The latent grid for a dataset: the default width over a range that holds every code
    plus `margin` standard deviations of q(z|x) = N(c, I). Trained ACN codes are not pulled
    towards N(0, I) and reach |c| ~ 16 on binarized MNIST; a posterior cut off by the grid
    edge loses ~7 bits per image of bits-back (measured), so the range follows the codes."""
    reach = float(np.max(np.abs(codes))) if codes.size else 0.0
    return BinGrid(width, max(BinGrid.range, float(np.ceil(reach + margin))))


@dataclass
class Report:
    """What compress measured; `as_dict` is the --report JSON (units in the key names)."""
    n_images: int
    dims_per_image: int
    archive_bytes: int
    header_bytes: int
    model_bytes: int
    payload_bytes: int
    kl_bits: float
    kl_start_bits: float
    recon_bits: float
    order_bits: float
    initial_bits: int
    kl_tour_nats: float
    encode_seconds: float
    chains: int

    def as_dict(self) -> dict:
        n = self.n_images
        bound_bits = self.kl_bits + self.recon_bits + self.order_bits
        coded_bits = 8 * (self.payload_bytes)
        return {
            "n_images": n, "chains": self.chains, "archive_bytes": self.archive_bytes,
            "header_bytes": self.header_bytes, "model_bytes": self.model_bytes,
            "payload_bytes": self.payload_bytes,
            "bits_per_image": 8 * self.archive_bytes / n,
            "nats_per_image": 8 * self.archive_bytes * LN2 / n,
            "bits_per_dim": 8 * self.archive_bytes / (n * self.dims_per_image),
            "payload_nats_per_image": coded_bits * LN2 / n,
            "bound_nats_per_image": bound_bits * LN2 / n,
            "kl_nats": self.kl_bits * LN2 / n,
            "kl_start_nats": self.kl_start_bits * LN2 / n,
            "kl_tour_nats": self.kl_tour_nats,
            "recon_nats": self.recon_bits * LN2 / n,
            "order_bits": self.order_bits,
            "initial_bits": self.initial_bits,
            "overhead_pct": 100.0 * (8 * self.archive_bytes - bound_bits) / bound_bits,
            "payload_overhead_pct": 100.0 * (coded_bits - bound_bits) / bound_bits,
            "encode_seconds": self.encode_seconds,
        }


def _progress(total: int, desc: str, quiet: bool):
    bar = tqdm(total=total, desc=desc, unit="img", disable=quiet, leave=False)
    return bar, bar.update


def compress(data: str | Path, out: str | Path, model: str | Path | None = None,
             order: str = "keep", embed_model: bool = False, force: bool = False,
             chains: int | None = None, threads: int = 1, quiet: bool = False) -> dict:
    """Compress DATA into the archive `out`; returns the report dict."""
    t0 = time.perf_counter()
    out = Path(out)
    check_output(out, force)
    if not out.parent.is_dir():
        raise CompressError(f"{out.parent}: no such folder for the archive")
    if order not in ("keep", "set"):
        raise CompressError(f"--order must be keep or set, not {order!r}")
    ds = load_dataset(data)
    pixels = ds.model_pixels()                                           # (N, C, H, W)
    shape = pixels.shape[1:]
    model_path = Path(model) if model else default_model_path(shape, ds.binary)
    model_blob = model_path.read_bytes()
    mf = load_model(model_blob)
    _check_fits(mf, shape, ds.binary, f"model {model_path.name}")
    coder = _coder(mf, BinGrid(), threads)
    codes = dataset_codes(coder, pixels)
    grid = grid_for(codes)
    coder = _coder(mf, grid, threads)
    tour = greedy_tour(codes)
    n = len(pixels)
    layout = Layout(chain_lengths(n, min(chains or default_chains(n), n)))
    words = seed_words(int(layout.active(layout.steps - 1).sum()), mf.config.latent_dim)
    bar, tick = _progress(n, "compress", quiet)
    while True:
        stack = AnsStack.with_initial_bits(words, seed=0)
        if order == "keep":
            PermutationCodec(n).push(stack, tour)
        try:
            costs = encode_dataset(coder, pixels, tour, layout, stack, tick)
            break
        except StackUnderflowError:          # rare: too few initial bits; more, and again
            words *= 2
            bar.reset()
    bar.close()

    header = {
        "acnzip_version": __version__, "n_images": n, "shape_chw": list(shape),
        "binary": ds.binary, "binary_value": ds.binary_value, "mode": ds.mode,
        "source": _source_info(ds, data), "order": order,
        "chain_lengths": layout.lengths.tolist(), "seed_words": words, "seed": 0,
        "grid": {"width": grid.width, "range": grid.range}, "threads": threads,
        "model_sha256": hashlib.sha256(model_blob).hexdigest(),
        "fingerprint": fingerprint(coder, layout.lengths.size),
        "versions": _versions(),
    }
    names = pack_names(ds.names) if order == "keep" and ds.mode != "array" else b""
    archive = Archive(header, stack.to_bytes(), names, model_blob if embed_model else b"",
                      order_kept=order == "keep")
    size = write_archive(out, archive)
    kl_tour = _tour_kl_nats(mf, codes, tour)
    report = Report(n, int(np.prod(shape)), size, size - len(archive.payload) - len(archive.model),
                    len(archive.model), len(archive.payload), costs.kl_bits, costs.kl_start_bits,
                    costs.recon_bits, permutation_bits(n) if order == "keep" else 0.0,
                    stack.initial_bits, kl_tour, time.perf_counter() - t0, layout.lengths.size)
    return report.as_dict()


def _source_info(ds: Dataset, data) -> dict:
    if ds.mode != "array":
        return {"kind": "folder"}
    spec = str(data)
    path, key = (spec.rsplit(":", 1) if not Path(spec).exists() and ":" in spec else (spec, None))
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path) as z:
            key = key or ("x" if "x" in z.files else z.files[0])
    kind = path.suffix.lower().lstrip(".")
    if kind == "npz":
        with np.load(path) as z:
            ndim = z[key].ndim
    else:
        ndim = np.load(path, mmap_mode="r").ndim
    return {"kind": kind, "file": path.name, "key": key, "ndim": int(ndim)}


def _versions() -> dict:
    return {"torch": torch.__version__, "numpy": np.__version__,
            "constriction": importlib.metadata.version("constriction"),
            "python": platform.python_version(), "machine": platform.machine()}


def _tour_kl_nats(mf: ModelFile, codes: np.ndarray, tour: np.ndarray) -> float:
    """The paper's single-tour KL in nats per image (evaluate.tour_kl, one seeded z per image)."""
    eps = torch.randn(codes.shape, generator=torch.Generator().manual_seed(0))
    return float(tour_kl(mf.model, mf.gmm, torch.from_numpy(codes), eps, tour).mean())


def _load_for_archive(archive: Archive, model: str | Path | None) -> tuple[ModelFile, str]:
    """The model that made the archive: --model, else the embedded one, else the shipped one."""
    h = archive.header
    if model is not None:
        blob, what = Path(model).read_bytes(), f"model {Path(model).name}"
    elif archive.model:
        blob, what = archive.model, "the embedded model"
    else:
        blob, what = default_model_path(tuple(h["shape_chw"]), h["binary"]).read_bytes(), \
            "the shipped model"
    if hashlib.sha256(blob).hexdigest() != h["model_sha256"]:
        raise CompressError(f"wrong model: the archive was made with model sha256 "
                            f"{h['model_sha256'][:16]}..., {what} is "
                            f"{hashlib.sha256(blob).hexdigest()[:16]}... (pass --model)")
    return load_model(blob), what


def decompress(archive_path: str | Path, outdir: str | Path, model: str | Path | None = None,
               force: bool = False, threads: int | None = None, quiet: bool = False) -> dict:
    """Restore the images of an archive into `outdir` (PNG files or the array file)."""
    t0 = time.perf_counter()
    outdir = Path(outdir)
    check_output(outdir, force)
    archive = read_archive(archive_path)
    h = archive.header
    check_header(h, archive)
    mf, what = _load_for_archive(archive, model)
    grid = BinGrid(h["grid"]["width"], h["grid"]["range"])
    coder = _coder(mf, grid, threads or h["threads"])
    layout = Layout(np.asarray(h["chain_lengths"], dtype=np.int64))
    if fingerprint(coder, layout.lengths.size) != h["fingerprint"]:
        raise CompressError(
            f"this machine computes {what} differently from the one that wrote the archive "
            f"(fingerprint mismatch; written with {h['threads']} thread(s), torch "
            f"{h['versions']['torch']}): refusing to decode rather than produce wrong pixels")
    stack = AnsStack.from_bytes(archive.payload, never_empty=True)
    n = h["n_images"]
    bar, tick = _progress(n, "decompress", quiet)
    try:
        pixels = decode_dataset(coder, layout, stack, tick)              # tour order
        tour = PermutationCodec(n).pop(stack) if h["order"] == "keep" else None
    except CodecError as exc:
        raise ArchiveError(f"the archive's payload does not decode ({exc}): it is damaged "
                           "or was made by a different computation") from None
    finally:
        bar.close()
    if tour is not None:
        restored = np.empty_like(pixels)
        restored[tour] = pixels
        names = _archive_names(archive, n)
    else:
        restored, names = pixels, [f"{i:0{len(str(n - 1))}d}" for i in range(n)]
    if not np.array_equal(stack.words(), AnsStack.with_initial_bits(h["seed_words"], h["seed"]).words()):
        raise CompressError("archive decoded inconsistently (the initial bits did not come "
                            "back): it is damaged or was made by a different computation")
    _write_images(outdir, restored, names, h, force)
    return {"n_images": n, "decode_seconds": time.perf_counter() - t0, "outdir": str(outdir)}


_HEADER_KEYS = {"acnzip_version": str, "n_images": int, "shape_chw": list, "binary": bool,
                "binary_value": int, "mode": str, "source": dict, "order": str,
                "chain_lengths": list, "seed_words": int, "seed": int, "grid": dict,
                "threads": int, "model_sha256": str, "fingerprint": str, "versions": dict}


def check_header(h: dict, archive: Archive) -> None:
    """The JSON header has every key with its type and consistent counts (ArchiveError)."""
    for key, kind in _HEADER_KEYS.items():
        if not isinstance(h.get(key), kind):
            raise ArchiveError(f"archive header: {key!r} is missing or not a {kind.__name__}")
    if h["order"] not in ("keep", "set") or (h["order"] == "keep") != archive.order_kept:
        raise ArchiveError("archive header: order and flags disagree")
    lengths = h["chain_lengths"]
    if not all(isinstance(v, int) and v >= 1 for v in lengths) or sum(lengths) != h["n_images"] \
            or sorted(lengths, reverse=True) != lengths or h["n_images"] < 1:
        raise ArchiveError("archive header: chain lengths do not add up to the images")
    src = h["source"]
    if src.get("kind") not in ("folder", "npy", "npz") or (
            src["kind"] != "folder" and not _bare_file_name(src.get("file"))):
        raise ArchiveError("archive header: bad source description")


def _bare_file_name(name) -> bool:
    return isinstance(name, str) and safe_name(name) and "/" not in name


def _archive_names(archive: Archive, n: int) -> list[str]:
    """The stored names (folder input, --order keep): n safe relative paths, else an error."""
    if archive.header["source"]["kind"] != "folder":
        return [str(i) for i in range(n)]
    names = unpack_names(archive.names)
    if len(names) != n or not all(safe_name(x) for x in names) or \
            len({png_name(x) for x in names}) != n:
        raise ArchiveError("archive names section is damaged (wrong count or unsafe names)")
    return names


def _write_images(outdir: Path, pixels: np.ndarray, names: list[str], h: dict, force: bool):
    """pixels (N, C, H, W) as the model saw them -> the original values, files, atomically."""
    images = pixels.transpose(0, 2, 3, 1)
    if h["binary"]:
        images = images * np.uint8(h["binary_value"])
    src = h["source"]
    with atomic_directory(outdir, force) as tmp:
        if src["kind"] == "folder":
            for name, img in zip(names, images):
                path = tmp / png_name(name)
                if tmp.resolve() not in path.resolve().parents:     # never outside OUTDIR
                    raise ArchiveError(f"archive names an unsafe path {name!r}")
                path.parent.mkdir(parents=True, exist_ok=True)
                _save_png(path, img, h["mode"])
        else:
            arr = images[..., 0] if src["ndim"] == 3 else images
            with open(tmp / src["file"], "wb") as f:    # the exact name (np.save adds suffixes)
                if src["kind"] == "npz":
                    np.savez_compressed(f, **{src["key"]: arr})
                else:
                    np.save(f, arr)


def _save_png(path: Path, img: np.ndarray, mode: str) -> None:
    """img (H, W, C) uint8 -> a PNG in the original Pillow mode."""
    if mode == "1":
        Image.fromarray(img[..., 0] > 0).save(path)
    elif img.shape[2] == 1:
        Image.fromarray(img[..., 0], mode="L").save(path)
    else:
        Image.fromarray(img, mode=mode).save(path)


def archive_info(archive_path: str | Path) -> dict:
    """The header of an archive plus its section sizes (for `acnzip info`)."""
    a = read_archive(archive_path)
    return {**a.header, "payload_bytes": len(a.payload), "names_bytes": len(a.names),
            "model_embedded_bytes": len(a.model), "archive_bytes": Path(archive_path).stat().st_size}
