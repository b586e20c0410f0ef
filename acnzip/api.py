"""compress / decompress / info: the Python API behind the CLI.

compress: load DATA -> per-image codes and priors -> the grid -> Alice's one push of the
dataset codec (protocol.AssociativeDataset for --order set and keep; the chains along a
tour through the codes for --order tour) onto one ANS stack -> archive (docs/format.md). decompress:
check the header, model hash and fingerprint -> Bob's one pop -> write PNGs or the array file,
atomically.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm import tqdm

from codec import AnsStack, BinGrid, CodecError
from codec.window import DEFAULT_WINDOW
from . import __version__
from .archive import (MAGIC, Archive, ArchiveError, associative, check_header,
                      check_header_size, check_paths, fixed_bytes, pack_files, pack_names,
                      read_archive, section_sizes, unpack_files, unpack_names, write_archive)
from .atomic import check_folder_output, check_output, write_folder
from .data import image_names, load_dataset, png_name, restore_writers
from .errors import AcnzipError
from .inputs import open_regular
from .modelfile import (ModelFile, check_fits, default_model_path, is_shipped, load_model,
                        model_file_name, read_model_bytes, shipped_model_for)
from .nn.integer import (PRECISION_8BIT, IntegerACN, Precision, calibrate, calibration_rows,
                         scale_names)
from .order import PermutationCodec
from .runtime import LN2, machine, torch_session, usable_cpus
from .protocol import (BASE_WEIGHT, SET_BATCH, SET_NEIGHBOURS, AssociativeDataset, Coder, Layout,
                       SetCosts, SetTables, chain_lengths, decode_dataset, default_chains,
                       encode_dataset, encode_from_initial_bits, fingerprint, fingerprint_set,
                       seed_words, set_batches)
from .evaluate import tour_kl
from .tour import greedy_tour, short_tour

__all__ = ["CompressError", "compress", "decompress", "archive_info", "default_model_path"]

ORDERS = ("keep", "set", "tour")
TOURS = {"short": short_tour, "greedy": greedy_tour}    # --order tour's path through the codes
POSTERIOR_WINDOW = DEFAULT_WINDOW   # q(z|x) on the bins within 8 of its mean (codec.window;
                                    # None writes the archives of format versions 4 and 5)
BASE_BITS_BACK = True               # portable archives code the GMM p(z)'s component with bits
                                    # back (format version 9); False writes versions 6 to 8


class CompressError(AcnzipError):
    """A one-line reason why compress/decompress cannot proceed (nothing has been written)."""


def _coder(mf: ModelFile, grid: BinGrid, threads: int, scales: dict | None = None,
           precision: Precision = Precision(), window: float | None = None,
           base_bits_back: bool = False) -> Coder:
    """The shared computations; with `scales` the integer-exact (portable) ones at
    `precision`; q(z|x) on `window` of its mean (None: the whole grid); the GMM's component
    coded with bits back (portable only, format version 9)."""
    torch_session(threads)
    g = mf.gmm
    integer = (IntegerACN(mf.model, scales, grid.width, precision)
               if scales is not None else None)
    return Coder(mf.model, (g.weights, g.means, np.sqrt(g.variances)), grid, integer, window,
                 base_bits_back)


def grid_for(codes: np.ndarray, width: float = BinGrid.width, margin: float = 8.0) -> BinGrid:
    """The latent grid for a dataset: the default width over a range that holds every code
    plus `margin` standard deviations of q(z|x) = N(c, I). Trained ACN codes are not pulled
    towards N(0, I) and reach |c| ~ 16 on binarized MNIST; a posterior cut off by the grid
    edge loses ~7 bits per image of bits-back (measured), so the range follows the codes."""
    reach = float(np.max(np.abs(codes))) if codes.size else 0.0
    return BinGrid(width, max(BinGrid.range, float(np.ceil(reach + margin))))


@dataclass
class Report:
    """What compress measured; `as_dict` is the --report JSON. Keys say their unit and whether
    they are per image or a total; the *_bytes of the sections add up to archive_bytes, with
    the same names as `acnzip info` uses."""
    n_images: int
    dims_per_image: int
    input_bytes: int
    n_other_files: int
    sections: dict              # archive.section_sizes
    kl_bits: float
    kl_start_bits: float
    recon_bits: float
    initial_bits: int
    kl_tour_nats: float         # per image
    encode_seconds: float
    chains: int
    model: dict                 # name, sha256, where ("shipped", "embedded" or "file")
    images_renamed: int         # images restored under another suffix (.jpg -> .png)
    j_bits: float = 0.0         # --order set: which held image's prior, log2 |held| each
    j_back_bits: float = 0.0    # --order set: returned by q(j | z)
    choice_back_bits: float = 0.0   # --order set: returned by the multiset choices
    portable: bool = False      # integer-exact networks and tables (decodes on any machine)
    empty_folders: int = 0      # folders with no file beneath them, created again by decompress

    def as_dict(self) -> dict:
        n, sec = self.n_images, self.sections
        latent_bits = self.kl_bits + self.j_bits - self.j_back_bits - self.choice_back_bits
        bound_bits = latent_bits + self.recon_bits
        archive_bits = 8 * sec["archive_bytes"]
        per_image_nats = LN2 / n
        return {
            "n_images": n, "n_other_files": self.n_other_files,
            "n_empty_folders": self.empty_folders, "input_bytes": self.input_bytes, **sec,
            "fixed_cost_bytes": sec["frame_bytes"] + sec["header_bytes"] + sec["names_bytes"],
            "compression_ratio": self.input_bytes / sec["archive_bytes"],
            "bits_per_image": archive_bits / n,
            "nats_per_image": archive_bits * per_image_nats,
            "bits_per_dim": archive_bits / (n * self.dims_per_image),
            "payload_nats_per_image": 8 * sec["payload_bytes"] * per_image_nats,
            "bound_nats_per_image": bound_bits * per_image_nats,
            "kl_nats_per_image": self.kl_bits * per_image_nats,
            "kl_start_nats_per_image": self.kl_start_bits * per_image_nats,
            "recon_nats_per_image": self.recon_bits * per_image_nats,
            "latent_nats_per_image": latent_bits * per_image_nats,
            "kl_tour_nats_per_image": self.kl_tour_nats,
            "j_nats_per_image": self.j_bits * per_image_nats,
            "j_back_nats_per_image": self.j_back_bits * per_image_nats,
            "choice_back_nats_per_image": self.choice_back_bits * per_image_nats,
            "bound_bits_total": bound_bits,
            "initial_bits_total": self.initial_bits,
            "payload_over_bound_pct": 100.0 * (8 * sec["payload_bytes"] - bound_bits) / bound_bits,
            "chains": self.chains, "encode_seconds": self.encode_seconds,
            "model_name": self.model["name"], "model_sha256": self.model["sha256"],
            "model_from": self.model["from"], "images_renamed": self.images_renamed,
            "portable": self.portable,
        }


def _progress(total: int, desc: str, quiet: bool):
    bar = tqdm(total=total, desc=desc, unit="img", disable=quiet, leave=False)
    return bar, bar.update


def compress(data: str | Path, out: str | Path, model: str | Path | None = None,
             order: str = "keep", embed_model: bool = False, force: bool = False,
             chains: int | None = None, threads: int = 1, quiet: bool = False,
             portable: bool = True, tour: str = "short") -> dict:
    """Compress DATA into the archive `out`; returns the report dict (Report.as_dict).

    `portable` (--order keep and set): integer-exact networks and tables, so the archive
    decodes on any machine; otherwise float32, decodable only where the computation is
    repeated bit for bit (checked with a fingerprint). --order tour is always float; `tour`
    picks its path: "short" (tour.short_tour) or "greedy" (the ACN paper's, tour.greedy_tour).
    Images are coded; every other file of a folder (and every other array of a .npz) is kept
    byte for byte. The archive is validated with the reader's own header checks before it
    is written, and written atomically.
    """
    t0 = time.perf_counter()
    out = Path(out)
    check_output(out, force)
    refuse_replacing_input(out, data, "the archive")
    if order not in ORDERS:
        raise CompressError(f"--order must be one of {', '.join(ORDERS)}, not {order!r}")
    if tour not in TOURS:
        raise CompressError(f"--tour must be one of {', '.join(TOURS)}, not {tour!r}")
    ds = load_dataset(data, exclude=out)
    _check_restorable(ds, order)
    pixels = ds.model_pixels()                                           # (N, C, H, W)
    shape = pixels.shape[1:]
    model_path = Path(model) if model else default_model_path(shape, ds.binary)
    try:
        model_blob = read_model_bytes(model_path)
    except OSError as exc:
        raise CompressError(f"cannot read the model {model_path}: {exc.strerror or exc}") from None
    mf = load_model(model_blob, name=model_file_name(model_path))
    check_fits(mf, shape, ds.binary, f"model {model_file_name(model_path)}")
    torch_session(threads)
    n = len(pixels)
    if order == "tour":
        codes = mf.model.codes(pixels)        # batched: only the tour's order depends on them
        coder = _coder(mf, grid_for(codes), threads, window=POSTERIOR_WINDOW)
        path = TOURS[tour](codes)
        layout = Layout(chain_lengths(n, min(chains or default_chains(n), n)))
        stack, words, costs = _encode_chains(coder, pixels, path, layout, quiet)
        layout_info = {"chain_lengths": layout.lengths.tolist()}
        probe = fingerprint(coder, layout.lengths.size)
        kl_tour = _tour_kl_nats(mf, codes, path)
    else:
        if n >= 1 << 24:
            raise CompressError(f"--order {order} codes at most {(1 << 24) - 1:,} images at once")
        scales = None
        precision = Precision() if mf.config.binary else PRECISION_8BIT
        if portable:
            rows = calibration_rows(n)
            scales = calibrate(mf.model, torch.from_numpy(pixels[rows]), BinGrid.width,
                               precision)
        coder = _coder(mf, BinGrid(), threads, scales, precision, POSTERIOR_WINDOW,
                       base_bits_back=portable and BASE_BITS_BACK)
        tables = SetTables(coder, mf.config.latent_dim, mf.config.prior_components, n)
        bar, tick = _progress(2 * n, "compress", quiet)
        with bar:
            for i in range(0, n, 256):       # float: one image at a time (see SetTables)
                tick(len(tables.add(torch.from_numpy(pixels[i:i + 256]))))
            coder = tables.coder = coder.with_grid(grid_for(tables.codes))
            w = BASE_WEIGHT
            codec = AssociativeDataset(coder, n, order == "set", SET_BATCH, SET_NEIGHBOURS, w,
                                       tick)
            stack, words = encode_from_initial_bits(
                lambda stack: codec.push(stack, pixels, tables),
                seed_words(1, mf.config.latent_dim),
                lambda: (bar.reset(), tick(n), setattr(codec, "costs", SetCosts())))
        costs = codec.costs
        layout_info = {"batch": SET_BATCH, "neighbours": SET_NEIGHBOURS, "base_weight": w}
        if portable:                 # the model hash and the scales decide every table
            layout_info["portable"] = {"scales": scales, **precision.header_entries()}
            probe = None
        else:
            probe = fingerprint_set(coder, max(set_batches(n, SET_BATCH)), SET_NEIGHBOURS, w)
        kl_tour = None

    model_sha = hashlib.sha256(model_blob).hexdigest()
    header = {
        "acnzip_version": __version__, "n_images": n, "shape_chw": list(shape),
        "binary": ds.binary, "binary_value": ds.binary_value, "mode": ds.mode,
        "source": dict(ds.origin),
        "order": order, **layout_info, "seed_words": words,
        **({"posterior_window": coder.window} if coder.window else {}),
        **({"base_coding": "bits-back"} if coder.base_bits_back else {}),
        "seed": 0, "grid": {"width": coder.grid.width, "range": coder.grid.range},
        "threads": threads,
        "model_sha256": model_sha, "model_name": model_file_name(model_path),
        **({"fingerprint": probe} if probe else {}), "versions": _versions(),
        "other_files": {"count": len(ds.other_files),
                        "bytes": sum(len(c) for _, c in ds.other_files)},
    }
    if header["source"]["kind"] == "npy":
        header["source"]["key"] = None
    names = pack_names(ds.names) if order == "keep" and ds.mode != "array" else b""
    archive = Archive(header, stack.to_bytes(), names, pack_files(ds.other_files),
                      model_blob if embed_model else b"", order_kept=order == "keep")
    try:
        check_header_size(header)
        check_header(header, archive)            # Bob's checks, before anything is written
    except ArchiveError as exc:
        raise CompressError(f"cannot store this data: {exc}") from None
    write_archive(out, archive)
    where = "embedded" if embed_model else ("shipped" if is_shipped(model_path) else "file")
    renamed = sum(png_name(x) != x for x in ds.names) if ds.mode != "array" else 0
    report = Report(n, int(np.prod(shape)), ds.input_bytes, len(ds.other_files),
                    section_sizes(archive), costs.kl_bits, costs.kl_start_bits,
                    costs.recon_bits,
                    stack.initial_bits, kl_tour, time.perf_counter() - t0,
                    len(layout_info.get("chain_lengths", [])),
                    {"name": model_file_name(model_path), "sha256": model_sha, "from": where}, renamed,
                    getattr(costs, "j_bits", 0.0), getattr(costs, "j_back_bits", 0.0),
                    getattr(costs, "choice_back_bits", 0.0), coder.portable,
                    len(ds.origin.get("folders", [])))
    return report.as_dict()


def refuse_replacing_input(path: Path, data, what: str) -> None:
    """Refuse an output that would replace one of the inputs (with -f): the DATA file itself
    or a file inside the DATA folder -- except, for the archive, an earlier acnzip archive
    there, which is left out of the inputs (data.load_folder's `exclude`)."""
    path, src = Path(path), Path(data)
    if not src.exists() and ":" in str(data):
        src = Path(str(data).rsplit(":", 1)[0])
    if not os.path.lexists(path) or not src.exists():
        return
    target, src = path.resolve(), src.resolve()
    inside = src.is_dir() and target.is_relative_to(src)
    if target == src or (inside and not (what == "the archive" and _is_archive(target))):
        raise CompressError(f"{path} is one of the files being compressed: refusing to "
                            f"replace it with {what}")


def _is_archive(path: Path) -> bool:
    try:
        with open_regular(path) as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


HEADER_RESERVE_BYTES = 1 << 16     # the header's other fields (activation scales, ...) at most


def _check_restorable(ds, order: str) -> None:
    """Refuse (before any coding) a folder decompress could not restore: the paths it will
    write -- the images under their .png names (--order keep) or as 0.png, 1.png, ... (set,
    tour), and every kept file -- must be distinct and none a folder of another, the check
    decompress makes (_output_paths)."""
    if ds.origin["kind"] != "folder":
        return
    header = {"n_images": len(ds), "source": ds.origin}
    try:
        check_header_size(header, HEADER_RESERVE_BYTES)     # before the coding, not after
        _output_paths(header, ds.names if order == "keep" else None, ds.other_files,
                      "the restored folder")
    except ArchiveError as exc:
        why = str(exc)
        first = ", ".join(itertools.islice(image_names(header, None), 2))
        hint = "" if order == "keep" else (
            f" (--order {order} restores the images as {first}, ...; try --order keep)")
        raise CompressError(f"cannot store this folder: {why}{hint}") from None


def _encode_chains(coder: Coder, pixels, tour, layout: Layout, quiet: bool):
    """--order tour: the chains along `tour`. Returns (stack, initial words, costs)."""
    words = seed_words(int(layout.active(layout.steps - 1).sum()), coder.model.config.latent_dim)
    bar, tick = _progress(len(pixels), "compress", quiet)
    result = {}

    def push(stack):
        result["costs"] = encode_dataset(coder, pixels, tour, layout, stack, tick)

    with bar:
        stack, words = encode_from_initial_bits(push, words, bar.reset)
    return stack, words, result["costs"]


def _versions() -> dict:
    m = machine()
    return {k: m[k] for k in ("torch", "numpy", "constriction", "python", "machine")}


def _tour_kl_nats(mf: ModelFile, codes: np.ndarray, tour: np.ndarray) -> float:
    """KL along the whole tour in nats per image (evaluate.tour_kl, one seeded z per image;
    the chains' starts are coded under p(z) instead)."""
    eps = torch.randn(codes.shape, generator=torch.Generator().manual_seed(0))
    return float(tour_kl(mf.model, mf.gmm, torch.from_numpy(codes), eps, tour).mean())


def _load_for_archive(archive: Archive, model: str | Path | None) -> tuple[ModelFile, str]:
    """The model that made the archive: --model, else the embedded one, else the file shipped
    with acnzip (a default or a retired default) whose hash the archive names; otherwise an
    error naming the file the archive needs."""
    h = archive.header
    needed = h.get("model_name", "the model file it was made with")
    need = f"{needed} (sha256 {h['model_sha256'][:16]}...)"
    if model is not None:
        try:
            blob, what = read_model_bytes(Path(model)), f"model {model_file_name(model)}"
        except OSError as exc:
            raise CompressError(f"cannot read the model {model}: {exc.strerror or exc}") from None
    elif archive.model:
        blob, what = archive.model, "the embedded model"
    else:
        shipped = shipped_model_for(h["model_sha256"])
        if shipped is None:
            raise CompressError(f"this archive needs the model file {need}, which is not "
                                "shipped with this acnzip: pass it with --model")
        return load_model(shipped.data), shipped.label          # its hash is the archive's
    sha256 = hashlib.sha256(blob).hexdigest()
    if sha256 != h["model_sha256"]:
        raise CompressError(f"wrong model: the archive needs {need}; {what} has sha256 "
                            f"{sha256[:16]}...")
    return load_model(blob, name=what), what


def decompress(archive_path: str | Path, outdir: str | Path, model: str | Path | None = None,
               force: bool = False, threads: int | None = None, quiet: bool = False) -> dict:
    """Restore an archive into the folder `outdir`: the images (PNG files, or the array file)
    and every file kept byte for byte. `outdir` may exist only if empty, or with `force`;
    then only files of the same paths are replaced (atomic.write_folder). Nothing is written
    unless everything decoded and checked."""
    t0 = time.perf_counter()
    outdir = Path(outdir)
    check_folder_output(outdir, force)
    archive = read_archive(archive_path)                   # container + header schema checked
    h = archive.header
    mf, what = _load_for_archive(archive, model)
    check_fits(mf, tuple(h["shape_chw"]), h["binary"], what)   # first: it bounds n_images
    names, others = _sections(archive)
    outputs = list(_output_paths(h, names, others))          # n is bounded by now
    folders = _empty_folders(h)
    _refuse_overwriting_the_archive(Path(archive_path), outdir, outputs)
    check_folder_output(outdir, force, outputs, folders)
    grid = BinGrid(h["grid"]["width"], h["grid"]["range"])
    portable = h.get("portable", {})          # absent: a float archive
    scales, precision = portable.get("scales"), Precision.from_header(portable)
    if scales is not None:
        if set(scales) != scale_names(mf.config):
            raise ArchiveError(f"the archive's activation scales do not fit {what}: it is "
                               "damaged or was made with another model")
        scales = {k: float(v) for k, v in scales.items()}       # JSON may give integers
    if not threads:                 # a portable archive decodes the same at any thread count:
        threads = h["threads"] if scales is None else min(h["threads"], usable_cpus())
    coder = _coder(mf, grid, threads, scales, precision,
                   h.get("posterior_window"), h.get("base_coding") == "bits-back")
    n = h["n_images"]
    batched = associative(h["order"], archive.version)   # else along the tour (v1 set, v2 keep)
    if scales is not None:
        w = h["base_weight"]                           # portable: nothing machine-dependent
        probe = None
    elif batched:
        w = h.get("base_weight", 0.0)                  # v2 "set": no base
        probe = fingerprint_set(coder, max(set_batches(n, h["batch"])), h["neighbours"], w)
    else:
        layout = Layout(np.asarray(h["chain_lengths"], dtype=np.int64))
        probe = fingerprint(coder, layout.lengths.size)
    if probe != h.get("fingerprint"):
        raise CompressError(
            f"this machine computes {what} differently from the one that wrote the archive "
            f"(fingerprint mismatch; written with {h['threads']} thread(s), torch "
            f"{h['versions']['torch']}): refusing to decode rather than produce wrong pixels")
    stack = AnsStack.from_bytes(archive.payload, never_empty=True)
    bar, tick = _progress(n, "decompress", quiet)
    try:
        if batched:                              # decoding order (set) or the order (keep)
            pixels = AssociativeDataset(coder, n, h["order"] == "set", h["batch"],
                                        h["neighbours"], w, tick).pop(stack)
            tour = None
        else:
            pixels = decode_dataset(coder, layout, stack, tick)          # tour order
            tour = PermutationCodec(n).pop(stack) if h["order"] == "keep" else None
    except CodecError as exc:
        raise ArchiveError(f"the archive's payload does not decode ({exc}): it is damaged "
                           "or was made by a different computation") from None
    finally:
        bar.close()
    if tour is not None:
        restored = np.empty_like(pixels)
        restored[tour] = pixels
    else:
        restored = pixels
    if not np.array_equal(stack.words(), AnsStack.with_initial_bits(h["seed_words"], h["seed"]).words()):
        raise CompressError("archive decoded inconsistently (the initial bits did not come "
                            "back): it is damaged or was made by a different computation")
    written = write_folder(outdir, restore_writers(restored, names, others, h), force, folders)
    return {"n_images": n, "n_other_files": len(others) if h["source"]["kind"] == "folder" else 0,
            "files_written": len(written), "n_empty_folders": len(folders),
            "decode_seconds": time.perf_counter() - t0,
            "outdir": str(outdir),
            "restored_bytes": sum((outdir / r).stat().st_size for r in written)}


def _output_paths(h: dict, names: list[str] | None, others: list,
                  what: str = "archive") -> Iterable[str]:
    """Every file decompress will write, relative to the output folder (checked, with the
    empty folders it creates: safe, distinct, no file where another needs a folder, no kept
    .npz member where the array goes; ArchiveError naming `what` otherwise). Generated image
    names (0.png, 1.png, ...) are distinct by construction: only the kept files and the
    folders are compared with them, so a header claiming many images costs no memory here."""
    src = h["source"]
    files = [p for p, _ in others]
    folders = _empty_folders(h)
    kept = files + folders                      # compared with the generated image names
    if src["kind"] != "folder":
        if src["kind"] == "npz" and f"{src['key']}.npy" in files:
            raise ArchiveError(f"{what} keeps a member {src['key']}.npy where the array goes")
        return [src["file"]]
    if names is not None:
        paths = [*image_names(h, names), *files]
        check_paths(paths + folders, what)
        return paths
    check_paths(kept, what)
    n = h["n_images"]
    width = len(str(n - 1))
    for p in kept:
        head = p.split("/", 1)[0]
        stem = head[:-4]
        if head.endswith(".png") and len(stem) == width and stem.isascii() and \
                stem.isdigit() and int(stem) < n:
            raise ArchiveError(f"{what}: {head!r} is both a restored image and a kept "
                               f"{'file' if head == p and p not in folders else 'folder'}")
    return itertools.chain(image_names(h, None), files)


def _empty_folders(h: dict) -> list[str]:
    """The empty folders a folder archive restores (format version 7); none for arrays."""
    return h["source"].get("folders", []) if h["source"]["kind"] == "folder" else []


def _refuse_overwriting_the_archive(archive_path: Path, outdir: Path, outputs: list[str]):
    """An archive inside OUTDIR at one of the paths it restores would be replaced (with -f)."""
    try:
        rel = archive_path.resolve().relative_to(outdir.resolve()).as_posix()
    except ValueError:
        return
    if rel in set(outputs):
        raise CompressError(f"{archive_path} is one of the files it restores into {outdir}: "
                            "move it out of the folder first")


def _sections(archive: Archive) -> tuple[list[str] | None, list]:
    """The stored image names (None: not stored) and the files kept byte for byte, inflated
    within their limits and checked."""
    h = archive.header
    names = unpack_names(archive.names, h["n_images"]) if archive.names else None
    others = unpack_files(archive.files, h["other_files"]["count"], h["other_files"]["bytes"]) \
        if "other_files" in h else []
    return names, others


def archive_info(archive_path: str | Path) -> dict:
    """An archive's header and the bytes of each section, which add up to archive_bytes (the
    same key names as compress's report). Everything decompress checks without the model and
    the payload is checked here too: the sections, the paths it would write, the embedded
    model's hash; ArchiveError otherwise."""
    a = read_archive(archive_path)
    names, others = _sections(a)
    _output_paths(a.header, names, others)             # checks at once; nothing listed
    if a.model:
        if hashlib.sha256(a.model).hexdigest() != a.header["model_sha256"]:
            raise ArchiveError("the embedded model is not the one the header names (damaged)")
        load_model(a.model, name="the embedded model")    # every field, as decompress does
    sizes = {"frame_bytes": fixed_bytes(a.version), "header_bytes": None,
             "names_bytes": len(a.names), "other_files_bytes": len(a.files),
             "model_bytes": len(a.model), "payload_bytes": len(a.payload)}
    total = Path(archive_path).stat().st_size
    sizes["header_bytes"] = total - sum(v for v in sizes.values() if v is not None)
    return {**a.header, "format_version": a.version, **sizes, "archive_bytes": total}
