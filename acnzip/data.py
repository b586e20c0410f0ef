"""Datasets in and out: loading DATA (a folder of images or a .npy/.npz array, as uint8
(N, H, W, C) plus names) and writing a decoded one back as the files it came from.

Accepted:
* a folder, searched recursively. Files with an image extension (IMAGE_EXTENSIONS) that Pillow
  reads as one frame in mode 1, L, LA, RGB or RGBA, with pixels that hold all the file's
  samples do (_pixels_exact: at most 8 bits per sample, no transparency key), are the images,
  all of one size and mode; names are the relative paths, sorted. Every other regular file
  (README, labels, hidden files, multi-frame TIFFs, palette or 16-bit images, unreadable
  ones, PNGs that are not whole: png.py) is kept byte for byte (`other_files`). What could
  not be given back -- a FIFO, socket or device, a symlink to a folder or to nothing, an
  unreadable folder -- is refused;
* a .npy file, or a .npz file with key `x` or a single array (`FILE.npz:KEY` picks another),
  of dtype uint8 (or bool) and shape (N, H, W) or (N, H, W, C), C <= 4; names are indices.
  The other members of a .npz (labels, say) are kept byte for byte; the array is written
  back with its dtype and memory order.
Headers are checked against the file's size before anything is loaded (a crafted .npy cannot
ask for terabytes); the pixels (LIMITS.max_pixel_bytes) and the files kept byte for byte
(LIMITS.max_other_bytes) are bounded.

A dataset whose values all lie in {0, 1} or in {0, 255} is binary: the model sees 0/1 pixels
(`model_pixels`), `binary_value` says which value "on" had, and `images` keep the originals.
Every problem raises DataError (a ValueError) with a one-line message.
"""
from __future__ import annotations

import io
import os
import stat
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

import numpy as np
from PIL import Image

from .archive import LIMITS, safe_name
from .errors import AcnzipError
from .inputs import kind_of, open_regular
from .png import png_is_whole

__all__ = ["DataError", "Dataset", "load_dataset", "load_array", "load_folder", "png_name",
           "safe_name", "check_names", "IMAGE_EXTENSIONS", "detect_binary", "image_names",
           "restore_writers"]

IMAGE_EXTENSIONS = (".png", ".bmp", ".gif", ".tif", ".tiff", ".pbm", ".pgm", ".ppm", ".pnm",
                    ".webp", ".jpg", ".jpeg")
_MODES = {"1": 1, "L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
MAX_CHANNELS = 4


class DataError(AcnzipError):
    """DATA cannot be used; the message says why in one line."""


@dataclass
class Dataset:
    images: np.ndarray      # (N, H, W, C) uint8, values exactly as read
    names: list[str]        # one per image: relative path (folders) or index (arrays)
    binary: bool            # all values in {0, binary_value}
    binary_value: int       # 1 or 255 (1 also for non-binary data, unused there)
    source: str             # what was loaded, for messages and metadata
    mode: str               # Pillow mode of the files, or "array"
    other_files: list = field(default_factory=list)   # [(relative path, bytes)] kept as they are
    input_bytes: int = 0    # size of everything read, as files on disk
    origin: dict = field(default_factory=lambda: {"kind": "folder"})   # how to write it back:
    #   {"kind": "folder"} (and "folders": the empty sub-folders, data.empty_folders) or
    #   {"kind": "npy"|"npz", "file": name, "key": npz key, "ndim": 3|4,
    #   and "dtype": "bool" / "fortran_order": true where the array was so}

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices, what: str) -> "Dataset":
        """The images at `indices` (same binary reading as this dataset); `what` names the
        part in messages ("validation part")."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(self.images[idx], [self.names[i] for i in idx], self.binary,
                       self.binary_value, f"{self.source} ({what})", self.mode)

    def split(self, valid_fraction: float, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """(training part, validation part): a seeded random `valid_fraction` of the images
        (at least 1) held out; each part keeps the original order."""
        n = len(self)
        k = max(1, int(round(valid_fraction * n)))
        if not 0 < valid_fraction < 1 or k >= n:
            raise DataError(f"cannot hold out {valid_fraction:g} of {n} images for validation")
        held = np.sort(np.random.default_rng(seed).permutation(n)[:k])
        keep = np.setdiff1d(np.arange(n), held)
        return self.take(keep, "training part"), self.take(held, "validation part")

    def model_pixels(self, like: "Dataset | None" = None) -> np.ndarray:
        """(N, C, H, W) uint8 as the model sees them: {0, 1} if binary, else 0..255.

        like: read these images the way another dataset is read (validation data as the
        training data): same shape, and binary exactly when that one is.
        """
        ref = self if like is None else like
        if self.shape != ref.shape:
            raise DataError(f"{self.source} has images of shape {self.shape} (H, W, C) but "
                            f"{ref.source} has {ref.shape}")
        x = self.images
        if ref.binary:
            if not _values(x) <= {0, ref.binary_value}:
                raise DataError(f"{self.source} is not binary with values {{0, "
                                f"{ref.binary_value}}} like {ref.source}")
            x = x // ref.binary_value
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _values(images: np.ndarray) -> set[int]:
    """The set of values present in a uint8 array (a histogram, no sort, no copy)."""
    flat, counts = images.reshape(-1), np.zeros(256, np.int64)
    for i in range(0, flat.size, 1 << 22):        # bincount widens to int64: in slices
        counts += np.bincount(flat[i:i + (1 << 22)], minlength=256)
    return set(np.flatnonzero(counts).tolist())


def detect_binary(images: np.ndarray) -> tuple[bool, int]:
    """(binary, binary_value): values within {0, 1} -> (True, 1), within {0, 255} -> (True, 255)."""
    present = _values(images)
    if present <= {0, 1}:
        return True, 1
    if present <= {0, 255}:
        return True, 255
    return False, 1


def _dataset(images: np.ndarray, names: list[str], source: str, mode: str,
             other_files: list | None = None, input_bytes: int = 0) -> Dataset:
    binary, value = detect_binary(images)
    return Dataset(images, names, binary, value, source, mode, other_files or [], input_bytes)


def load_dataset(spec: str | Path, exclude: Path | None = None) -> Dataset:
    """DATA -> Dataset: a folder, FILE.npy, FILE.npz or FILE.npz:KEY. `exclude`: a file not to
    read from a folder (the archive being written into it)."""
    path, key = Path(spec), None
    if not path.exists() and ":" in str(spec):
        head, key = str(spec).rsplit(":", 1)
        path = Path(head)
    if not path.exists():
        raise DataError(f"{spec}: no such file or folder")
    if path.is_dir():
        if key is not None:
            raise DataError(f"{spec}: ':KEY' applies only to .npz files")
        return load_folder(path, exclude)
    return load_array(path, key)


def _pick_key(path: Path, keys: list[str], key: str | None) -> str:
    """The .npz member to load: `key`, else 'x', else the only one."""
    if key is not None:
        if key not in keys:
            raise DataError(f"{path} has no array {key!r} (it holds {', '.join(keys) or 'none'})")
        return key
    if "x" in keys:
        return "x"
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise DataError(f"{path} holds no arrays")
    raise DataError(f"{path} holds {', '.join(keys)} and no 'x'; pick one as {path}:KEY")


def _check_npy_header(fp, size: int, what: str) -> None:
    """The .npy header at fp declares an array of exactly the bytes that follow it (`size` in
    all) and within the memory budget; DataError otherwise. Leaves fp anywhere."""
    fmt = np.lib.format
    version = fmt.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(fp)
    else:
        shape, _, dtype = fmt.read_array_header_2_0(fp)
    count = 1
    for v in shape:
        count *= int(v)
    nbytes = count * dtype.itemsize
    if nbytes > LIMITS.max_pixel_bytes:
        raise DataError(f"{what}: the array is {nbytes:,} bytes, over the memory budget of "
                        f"{LIMITS.max_pixel_bytes >> 30} GiB")
    if nbytes != size - fp.tell():
        raise DataError(f"{what}: the header declares {nbytes:,} bytes of data but "
                        f"{size - fp.tell():,} follow (truncated or damaged)")


def _read_array(path: Path, key: str | None) -> tuple[np.ndarray, str | None, list, int]:
    """The array stored in a .npy/.npz file (pickles refused), its .npz key, the other members
    of a .npz [(member name, bytes)], and the file's size."""
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise DataError(f"{path}: not a folder, .npy or .npz file")
    if key is not None and suffix != ".npz":
        raise DataError(f"{path}: ':KEY' applies only to .npz files")
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            if suffix == ".npy":
                _check_npy_header(fh, size, str(path))
                fh.seek(0)
                return np.load(fh, allow_pickle=False), None, [], size
            if not zipfile.is_zipfile(fh):
                raise DataError(f"{path}: not a valid .npz file (not a zip archive)")
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                infos = zf.infolist()
                folder = next((i.filename for i in infos if i.is_dir()), None)
                if folder is not None:
                    raise DataError(f"{path}: the member {folder!r} is a folder entry, which "
                                    "could not be given back (arrays and files only)")
                members = {i.filename: i for i in infos}
                if len(members) != len(infos):
                    raise DataError(f"{path}: two members of the same name; only one "
                                    "could be given back")
                arrays = [m[:-4] for m in members if m.endswith(".npy")]
                chosen = _pick_key(path, arrays, key)
                info = members[chosen + ".npy"]
                with zf.open(info) as f:
                    _check_npy_header(f, info.file_size, f"{path}:{chosen}")
                others = [m for m in members if m != chosen + ".npy"]
                try:                        # the rules the archive's files section is read by
                    check_names([], others)
                except DataError as exc:
                    raise DataError(f"{path}: {exc} (a member's name)") from None
                if sum(members[m].file_size for m in others) > LIMITS.max_other_bytes:
                    raise DataError(f"{path}: the other arrays hold more than "
                                    f"{LIMITS.max_other_bytes >> 20} MiB")
                kept = [(m, zf.read(members[m])) for m in others]
                with zf.open(info) as f:      # this member, not np.load's choice by key
                    return np.lib.format.read_array(f, allow_pickle=False), chosen, kept, size
    except DataError:
        raise
    except MemoryError:
        raise
    except Exception as exc:    # OSError, zip and zlib errors, encrypted or unknown members...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read {path}: {reason}") from None


def load_array(path: Path, key: str | None = None) -> Dataset:
    """A .npy/.npz array (N, H, W) or (N, H, W, C) of uint8 (or bool) -> Dataset."""
    path = Path(path)
    x, key, others, size = _read_array(path, key)
    ndim, dtype = x.ndim, x.dtype
    fortran = x.ndim > 1 and x.flags.f_contiguous and not x.flags.c_contiguous
    if x.dtype == np.bool_:
        x = x.astype(np.uint8)
    if x.dtype != np.uint8:
        raise DataError(f"{path}: array dtype {x.dtype} is not supported "
                        "(need uint8 pixels 0..255)")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or not 1 <= x.shape[3] <= MAX_CHANNELS:
        raise DataError(f"{path}: array shape {x.shape} is not (N, H, W) or (N, H, W, C) "
                        f"with C <= {MAX_CHANNELS}")
    if min(x.shape) == 0:
        raise DataError(f"{path}: array shape {x.shape} holds no images")
    width = len(str(len(x) - 1))
    names = [f"{i:0{width}d}" for i in range(len(x))]
    ds = _dataset(np.ascontiguousarray(x), names, str(path), "array", others, size)
    ds.origin = {"kind": path.suffix.lower().lstrip("."), "file": path.name, "key": key,
                 "ndim": int(ndim), **({"dtype": "bool"} if dtype == np.bool_ else {}),
                 **({"fortran_order": True} if fortran else {})}
    return ds


# Pillow's raw modes that unpack at most 8 bits per sample one to one into the image's mode
# (1- to 4-bit grey is scaled up, which loses nothing); a file read through any other (16-bit
# samples cut to 8, a padding byte that may hold alpha, ...) is kept byte for byte instead.
_EXACT_RAWMODES = {"1", "1;I", "1;R", "1;IR", "L", "L;I", "L;2", "L;2I", "L;4", "L;4I",
                   "LA", "RGB", "RGBA", "BGR", "BGRA"}


def _pixels_exact(img: Image.Image) -> bool:
    """Whether the uint8 pixels Pillow gives for `img` hold everything its file's samples do:
    8 bits or fewer per sample, unpacked one to one, and no transparency key beside them."""
    if "transparency" in img.info:                 # a tRNS colour: PNG restores it not
        return False
    if img.format == "WEBP":                       # 8-bit samples, decoded when opened
        return True
    if not img.tile:
        return False
    for tile in img.tile:
        decoder, args = tile[0], tile[3]
        if decoder in ("jpeg", "gif"):             # 8-bit decoders (JPEG: pixels as decoded)
            continue
        if decoder == "ppm":                       # (mode, maxval): scaled up to 0..255
            if not (isinstance(args, tuple) and len(args) == 2 and args[1] <= 255):
                return False
            continue
        rawmode = args if isinstance(args, str) else (args[0] if args else None)
        if rawmode not in _EXACT_RAWMODES:
            return False
    return True


def _read_image(path: Path) -> tuple[np.ndarray, str] | None:
    """(H, W, C) uint8 and Pillow mode of a single-frame image in a supported mode whose
    pixels hold all its file holds (_pixels_exact); None for anything else, including any
    file Pillow fails on in any way and any PNG that is not whole (png_is_whole: Pillow reads
    some damaged ones without a word), all kept byte for byte."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # DecompressionBombWarning, EXIF quirks
            with Image.open(path) as img:
                if getattr(img, "n_frames", 1) != 1 or img.mode not in _MODES \
                        or not _pixels_exact(img):
                    return None
                if img.format == "PNG" and not png_is_whole(Path(path).read_bytes()):
                    return None
                img.load()
                mode = img.mode
                arr = np.asarray(img, dtype=np.uint8)
    except MemoryError:
        raise
    except Exception:                              # a damaged or crafted file: not an image
        return None
    return (arr[..., None] if arr.ndim == 2 else arr), mode


def png_name(name: str) -> str:
    """The file an image named `name` is restored to: the same path with a .png suffix."""
    path = PurePosixPath(name)
    return name if path.suffix.lower() == ".png" else str(path.with_suffix(".png"))


def check_names(names: list[str], others: list[str] = ()) -> None:
    """Refuse names that cannot be stored or restored one to one (DataError): image `names`
    are restored as png_name(name), `others` (files kept byte for byte) as they are."""
    for which, limit in ((names, LIMITS.max_names_bytes), (others, LIMITS.max_paths_bytes)):
        if sum(len(x.encode("utf-8", "replace")) + 1 for x in which) > limit:
            raise DataError(f"the file names hold more than {limit >> 20} MiB in all: compress "
                            "the folder in parts")
    seen: dict[str, str] = {}
    for name, out in [*((n, png_name(n)) for n in names), *((n, n) for n in others)]:
        if "\n" in name or not safe_name(name) or len(name.encode("utf-8", "replace")) > \
                LIMITS.max_name_bytes:
            raise DataError(f"cannot store the file name {name!r}")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"file name {name!r} is not valid UTF-8") from None
        if out in seen:
            raise DataError(f"{seen[out]} and {name} would both be restored as {out}")
        seen[out] = name


def _folder_files(root: Path) -> tuple[list[Path], list[Path]]:
    """The files under `root`, sorted by relative path (symlinks to files followed; the
    folder's own sub-folders walked), and its sub-folders. Anything decompress could not give
    back is refused (DataError), never skipped: an unreadable folder, a FIFO, socket or
    device, a symlink to a folder or to nothing."""
    def unreadable(exc: OSError):
        raise DataError(f"cannot read the folder {exc.filename}: {exc.strerror}")

    found, folders = [], []
    why = "acnzip stores regular files and folders only: move it out of the folder"
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            try:
                mode = path.stat().st_mode                      # through symlinks
            except OSError:
                raise DataError(f"{path} is a symbolic link to nothing; {why}") from None
            if stat.S_ISDIR(mode):
                if path.is_symlink():
                    raise DataError(f"{path} is a symbolic link to a folder; {why}")
                folders.append(path)
            elif not stat.S_ISREG(mode):
                raise DataError(f"{path} is {kind_of(mode)}; {why}")
            else:
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix()), folders


def empty_folders(folders: list[str], files: list[str]) -> list[str]:
    """The folders (relative paths) with no file anywhere beneath them, deepest only: the ones
    decompress must create for the tree to come back whole (their parents come with them)."""
    above = {str(p) for f in [*files, *folders] for p in PurePosixPath(f).parents}
    return sorted(d for d in folders if d not in above)


def load_folder(root: Path, exclude: Path | None = None) -> Dataset:
    """Every file under `root` (recursive, sorted by relative path; `exclude` left out): the
    single-frame images in a supported mode are the dataset, the rest is kept byte for byte."""
    root = Path(root)
    skip = Path(exclude).resolve() if exclude is not None else None
    found, folders = _folder_files(root)
    files = [p for p in found if p.resolve() != skip]
    images, names, others, first, total, other_total, pixel_bytes = [], [], [], None, 0, 0, 0
    for path in files:
        name = path.relative_to(root).as_posix()
        size = path.stat().st_size
        total += size
        read = _read_image(path) if path.suffix.lower() in IMAGE_EXTENSIONS else None
        if read is None:
            other_total += size
            if other_total > LIMITS.max_other_bytes:
                raise DataError(f"{root} holds more than {LIMITS.max_other_bytes >> 20} MiB of "
                                "files that are not images acnzip codes; archive those apart "
                                "(tar, xz) or move them out")
            others.append((name, path))
            continue
        arr, mode = read
        if first is None:
            first = (name, arr.shape, mode)
        elif arr.shape[:2] != first[1][:2]:
            raise DataError(f"{name} is {arr.shape[1]}x{arr.shape[0]} but {first[0]} is "
                            f"{first[1][1]}x{first[1][0]}: all images must have one size")
        elif mode != first[2]:
            raise DataError(f"{name} has mode {mode} but {first[0]} has mode {first[2]}: "
                            "all images must have one mode")
        pixel_bytes += arr.nbytes
        if pixel_bytes > LIMITS.max_pixel_bytes:
            raise DataError(f"{root}: the images hold more than {LIMITS.max_pixel_bytes >> 30} "
                            "GiB of pixels, over the memory budget; compress them in parts")
        images.append(arr)
        names.append(name)
    if not images:
        plural = "" if len(others) == 1 else "s"
        raise DataError(f"{root}: no images acnzip codes (single-frame "
                        f"{', '.join(IMAGE_EXTENSIONS)} in modes {', '.join(_MODES)}, at most 8 "
                        f"bits per sample); {len(others):,} other file{plural}")
    empty = empty_folders([d.relative_to(root).as_posix() for d in folders],
                          [p.relative_to(root).as_posix() for p in files])
    check_names(names, [n for n, _ in others] + empty)
    kept = [(n, p.read_bytes()) for n, p in others]
    ds = _dataset(np.stack(images), names, str(root), first[2], kept, total)
    if empty:
        ds.origin["folders"] = empty
    return ds


# -- restoring a dataset (decompress) ------------------------------------------------------
def image_names(h: dict, names: list[str] | None) -> Iterable[str]:
    """Relative paths of the restored images of a folder archive: the stored names with
    .png suffixes, or 0.png, 1.png, ... (zero-padded; generated one at a time, so a header's
    n costs no memory here) when no names were stored."""
    n = h["n_images"]
    if names is not None:
        return [png_name(x) for x in names]
    return (f"{i:0{len(str(n - 1))}d}.png" for i in range(n))


def restore_writers(pixels: np.ndarray, names, others, h: dict):
    """(relative path, writer) for every file of a restored dataset: the images from pixels
    (N, C, H, W) as the model saw them, as PNG files in their Pillow mode or as the array file
    they came from, and the files kept byte for byte; `h` is the archive header (its source,
    mode and binary_value say what the input was)."""
    images = pixels.transpose(0, 2, 3, 1)
    if h["binary"]:
        images = images * np.uint8(h["binary_value"])
    src = h["source"]
    if src["kind"] != "folder":
        arr = images[..., 0] if src["ndim"] == 3 else images
        yield src["file"], lambda path: _save_array(path, arr, src, others)
        return
    for rel, img in zip(image_names(h, names), images):
        yield rel, (lambda path, img=img: _save_png(path, img, h["mode"]))
    for rel, content in others:
        yield rel, (lambda path, content=content: path.write_bytes(content))


def _save_array(path: Path, arr: np.ndarray, src: dict, others: list) -> None:
    """The array file: .npy, or a .npz holding the array under its key beside the other
    members kept byte for byte (written with zipfile: any key, even 'file' or
    'allow_pickle', which numpy's savez would take as its own arguments). The array has the
    source's dtype (uint8, or bool) and memory order (C, or Fortran)."""
    if src.get("dtype") == "bool":
        arr = arr.astype(np.bool_)
    arr = np.asfortranarray(arr) if src.get("fortran_order") else np.ascontiguousarray(arr)
    if src["kind"] == "npy":
        with open(path, "wb") as f:
            np.save(f, arr)
        return
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(src["key"] + ".npy", buf.getvalue())
        for member, content in others:
            zf.writestr(member, content)


def _save_png(path: Path, img: np.ndarray, mode: str) -> None:
    """img (H, W, C) uint8 -> a PNG in the original Pillow mode."""
    if mode == "1":
        Image.fromarray(img[..., 0] > 0).save(path, format="PNG")
    elif img.shape[2] == 1:
        Image.fromarray(img[..., 0], mode="L").save(path, format="PNG")
    else:
        Image.fromarray(img, mode=mode).save(path, format="PNG")
