"""Loading DATA: a folder of images or a .npy/.npz array, as uint8 (N, H, W, C) plus names.

Accepted:
* a folder, searched recursively for image files (by extension, see IMAGE_EXTENSIONS); every
  image must have the same size and Pillow mode (1, L, LA, RGB or RGBA); names are the
  relative paths, sorted;
* a .npy file, or a .npz file with key `x` or a single array (`FILE.npz:KEY` picks another),
  of dtype uint8 (or bool) and shape (N, H, W) or (N, H, W, C), C <= 4; names are indices.

A dataset whose values all lie in {0, 1} or in {0, 255} is binary: the model sees 0/1 pixels
(`model_pixels`), `binary_value` says which value "on" had, and `images` keep the originals.
Every problem raises DataError (a ValueError) with a one-line message.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import AcnzipError

__all__ = ["DataError", "Dataset", "load_dataset", "load_array", "load_folder", "png_name",
           "safe_name", "check_names",
           "IMAGE_EXTENSIONS", "detect_binary"]

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

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.images)

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
    """The set of values present in a uint8 array (a histogram, no sort)."""
    return set(np.flatnonzero(np.bincount(images.reshape(-1), minlength=256)).tolist())


def detect_binary(images: np.ndarray) -> tuple[bool, int]:
    """(binary, binary_value): values within {0, 1} -> (True, 1), within {0, 255} -> (True, 255)."""
    present = _values(images)
    if present <= {0, 1}:
        return True, 1
    if present <= {0, 255}:
        return True, 255
    return False, 1


def _dataset(images: np.ndarray, names: list[str], source: str, mode: str) -> Dataset:
    binary, value = detect_binary(images)
    return Dataset(images, names, binary, value, source, mode)


def load_dataset(spec: str | Path) -> Dataset:
    """DATA -> Dataset: a folder, FILE.npy, FILE.npz or FILE.npz:KEY."""
    path, key = Path(spec), None
    if not path.exists() and ":" in str(spec):
        head, key = str(spec).rsplit(":", 1)
        path = Path(head)
    if not path.exists():
        raise DataError(f"{spec}: no such file or folder")
    if path.is_dir():
        if key is not None:
            raise DataError(f"{spec}: ':KEY' applies only to .npz files")
        return load_folder(path)
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


def _read_array(path: Path, key: str | None) -> np.ndarray:
    """The array stored in a .npy/.npz file (pickles refused)."""
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise DataError(f"{path}: not a folder, .npy or .npz file")
    if key is not None and suffix != ".npz":
        raise DataError(f"{path}: ':KEY' applies only to .npz files")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path}: not a valid .npz file (not a zip archive)")
        with np.load(path, allow_pickle=False) as npz:
            return npz[_pick_key(path, list(npz.keys()), key)]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read {path}: {reason}") from None


def load_array(path: Path, key: str | None = None) -> Dataset:
    """A .npy/.npz array (N, H, W) or (N, H, W, C) of uint8 (or bool) -> Dataset."""
    path = Path(path)
    x = _read_array(path, key)
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
    return _dataset(np.ascontiguousarray(x), names, str(path), "array")


def _read_image(path: Path, name: str) -> tuple[np.ndarray, str]:
    """(H, W, C) uint8 and Pillow mode of one file."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode not in _MODES:
                raise DataError(f"{name}: image mode {mode} is not supported "
                                f"(need 8-bit {', '.join(_MODES)})")
            arr = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read image {name}: {reason}") from None
    return (arr[..., None] if arr.ndim == 2 else arr), mode


def png_name(name: str) -> str:
    """The file an image named `name` is restored to: the same path with a .png suffix."""
    path = PurePosixPath(name)
    return name if path.suffix.lower() == ".png" else str(path.with_suffix(".png"))


def safe_name(name: str) -> bool:
    """A relative path with no empty, '.' or '..' parts (so it stays inside the output)."""
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and "\\" not in name and \
        all(p not in ("", ".", "..") for p in parts)


def check_names(names: list[str]) -> None:
    """Refuse names that cannot be stored or restored one to one (DataError)."""
    seen: dict[str, str] = {}
    for name in names:
        if "\n" in name or not safe_name(name):
            raise DataError(f"cannot store the file name {name!r}")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"file name {name!r} is not valid UTF-8") from None
        out = png_name(name)
        if out in seen:
            raise DataError(f"{seen[out]} and {name} would both be restored as {out}")
        seen[out] = name


def load_folder(root: Path) -> Dataset:
    """Every image file under `root` (recursive, sorted by relative path) -> Dataset."""
    root = Path(root)
    files = sorted((p for p in root.rglob("*")
                    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                   key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise DataError(f"{root}: no image files found (looked for "
                        f"{', '.join(IMAGE_EXTENSIONS)})")
    images, names, first = [], [], None
    check_names([p.relative_to(root).as_posix() for p in files])
    for path in files:
        name = path.relative_to(root).as_posix()
        arr, mode = _read_image(path, name)
        if first is None:
            first = (name, arr.shape, mode)
        elif arr.shape[:2] != first[1][:2]:
            raise DataError(f"{name} is {arr.shape[1]}x{arr.shape[0]} but {first[0]} is "
                            f"{first[1][1]}x{first[1][0]}: all images must have one size")
        elif mode != first[2]:
            raise DataError(f"{name} has mode {mode} but {first[0]} has mode {first[2]}: "
                            "all images must have one mode")
        images.append(arr)
        names.append(name)
    return _dataset(np.stack(images), names, str(root), first[2])
