"""Classical lossless peers of acnzip, each measured on the same uint8 image set and verified.

A peer codes the set in two forms:

* per-image: every image its own file (PNG, WebP, ...) or its own compressed stream; the size
  is the sum of the files, as a folder of files would cost;
* whole-set: the fair, strongest form — the image codecs get all images tiled into one
  near-square grid image (the tiling is recorded), the stream codecs and archivers one stream
  of the whole packed array.

Binary sets ({0, 1}) are packed 8 pixels to a byte (np.packbits, per image or over the whole
set) for the stream codecs and archivers; 8-bit sets are coded as their raw bytes. Every peer
decodes what it encoded and compares arrays exactly (`NotLossless` if they differ). A peer whose
library or tool is missing is reported `available: False` with a reason, never an exception.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, features

__all__ = ["NotLossless", "PeerResult", "Peer", "PEERS", "run_peer", "run_peers", "tile",
           "untile", "verify_lossless"]

FORMS = ("per-image", "whole-set")


class NotLossless(AssertionError):
    """A codec gave back different pixels than it was given."""


@dataclass
class PeerResult:
    """One peer in one form; sizes in bytes, times in seconds (wall clock)."""
    method: str
    form: str
    available: bool = True
    reason: str = ""
    total_bytes: int | None = None
    encode_seconds: float | None = None
    decode_seconds: float | None = None
    lossless: bool | None = None
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def verify_lossless(original: np.ndarray, restored: np.ndarray, what: str) -> None:
    """Raise NotLossless unless `restored` equals `original` in shape, dtype and every value."""
    if (restored.shape != original.shape or restored.dtype != original.dtype
            or not np.array_equal(restored, original)):
        raise NotLossless(f"{what}: decoded images differ from the originals "
                          f"(shape {restored.shape} {restored.dtype} vs "
                          f"{original.shape} {original.dtype})")


# ----- splitting a set into what a codec codes, and joining it back -----

def tile(images: np.ndarray) -> tuple[np.ndarray, dict]:
    """(N, H, W[, C]) -> one (rows*H, cols*W[, C]) image, cols = ceil(sqrt N), zero padded."""
    n, h, w = images.shape[:3]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pad = np.zeros((rows * cols - n,) + images.shape[1:], images.dtype)
    grid = np.concatenate([images, pad]).reshape((rows, cols) + images.shape[1:])
    big = grid.swapaxes(1, 2).reshape((rows * h, cols * w) + images.shape[3:])
    return np.ascontiguousarray(big), {"rows": rows, "cols": cols, "tile_h": h, "tile_w": w,
                                       "padding_tiles": rows * cols - n}


def untile(big: np.ndarray, tiling: dict, n: int) -> np.ndarray:
    """The inverse of `tile`: the first n tiles, (n, H, W[, C])."""
    rows, cols, h, w = tiling["rows"], tiling["cols"], tiling["tile_h"], tiling["tile_w"]
    grid = big.reshape((rows, h, cols, w) + big.shape[2:]).swapaxes(1, 2)
    return grid.reshape((rows * cols, h, w) + big.shape[2:])[:n]


def pack(images: np.ndarray, binary: bool) -> bytes:
    """Images as a byte string: bits packed 8 per byte (binary) or the raw uint8 values."""
    return np.packbits(images.reshape(-1)).tobytes() if binary else images.tobytes()


def unpack(data: bytes, binary: bool, shape: tuple) -> np.ndarray:
    """The inverse of `pack` for images of `shape`."""
    if binary:
        bits = np.unpackbits(np.frombuffer(data, np.uint8), count=int(np.prod(shape)))
        return bits.reshape(shape)
    return np.frombuffer(data, np.uint8).reshape(shape).copy()


# ----- image codecs: array (H, W[, C]) uint8 <-> bytes -----

def _pil_image(a: np.ndarray, binary: bool) -> Image.Image:
    """A Pillow image: mode 1 (binary), L (grey) or RGB."""
    if binary:
        return Image.fromarray(a.astype(bool))
    return Image.fromarray(a, mode="L" if a.ndim == 2 else "RGB")


def _pil_back(img: Image.Image, binary: bool, channels: int) -> np.ndarray:
    """Decoded Pillow image -> the uint8 array it should equal ({0, 1} for binary)."""
    if binary:
        return (np.asarray(img.convert("L")) > 127).astype(np.uint8)
    return np.asarray(img.convert("L" if channels == 1 else "RGB"))


def _save(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def png_encode(a, binary):
    """PNG, Pillow optimize=True; binary images as 1-bit PNG (mode 1)."""
    return _save(_pil_image(a, binary), "PNG", optimize=True)


def png_decode(data, binary, channels):
    return _pil_back(Image.open(io.BytesIO(data)), binary, channels)


def webp_encode(a, binary):
    """WebP lossless, quality 100 and method 6 (slowest, smallest); binary as 0/255 grey."""
    img = _pil_image(a * np.uint8(255) if binary else a, False)
    return _save(img, "WEBP", lossless=True, quality=100, method=6)


def webp_decode(data, binary, channels):
    return _pil_back(Image.open(io.BytesIO(data)), binary, channels)


JXL_EFFORT = 9          # libjxl's slowest standard effort (10 needs expert options)


def jxl_encode(a, binary):
    """JPEG XL lossless (imagecodecs / libjxl, effort 9); binary as 0/255 grey."""
    import imagecodecs
    return imagecodecs.jpegxl_encode(a * np.uint8(255) if binary else a, lossless=True,
                                     effort=JXL_EFFORT)


def jxl_decode(data, binary, channels):
    import imagecodecs
    a = imagecodecs.jpegxl_decode(data)
    return (a > 127).astype(np.uint8) if binary else a


def pbm_bytes(a: np.ndarray) -> bytes:
    """A {0,1} (H, W) image as PBM P4 (1 = black), rows padded to whole bytes."""
    h, w = a.shape
    return f"P4\n{w} {h}\n".encode() + np.packbits(a.astype(np.uint8), axis=1).tobytes()


def pbm_array(data: bytes) -> np.ndarray:
    """PBM P4 bytes (as jbgtopbm writes them: no comments) -> (H, W) {0,1} uint8."""
    magic, w, h, rest = data.split(maxsplit=3)
    if magic != b"P4":
        raise ValueError("not a P4 PBM")
    w, h = int(w), int(h)
    rows = np.frombuffer(rest, np.uint8)[: h * ((w + 7) // 8)].reshape(h, -1)
    return np.unpackbits(rows, axis=1, count=w)


def _tool(args: list[str], cwd: Path) -> None:
    """Run a command-line tool quietly; its stderr in the error if it fails."""
    done = subprocess.run(args, cwd=cwd, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): "
                           f"{done.stderr.decode(errors='replace').strip()[:200]}")


JBIG_OPTIONS = ["-q"]   # sequential: no resolution-reduction layers (smallest for these data)


def jbig_encode(a, binary, tmp: Path):
    """JBIG1 (ITU T.82) with jbigkit's pbmtojbg: PBM P4 in, BIE out."""
    (tmp / "in.pbm").write_bytes(pbm_bytes(a))
    _tool(["pbmtojbg", *JBIG_OPTIONS, "in.pbm", "out.jbg"], tmp)
    return (tmp / "out.jbg").read_bytes()


def jbig_decode(data, binary, channels, tmp: Path):
    (tmp / "in.jbg").write_bytes(data)
    _tool(["jbgtopbm", "in.jbg", "out.pbm"], tmp)
    return pbm_array((tmp / "out.pbm").read_bytes())


def paq8px_path() -> str | None:
    """paq8px: $PAQ8PX, else on the PATH, else ../shared/peers/bin/paq8px beside the project."""
    import os
    shared = Path(__file__).resolve().parents[2] / "shared" / "peers" / "bin" / "paq8px"
    for cand in (os.environ.get("PAQ8PX"), shutil.which("paq8px"), str(shared)):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def _paq8px_missing() -> str | None:
    if paq8px_path() is None:
        return "paq8px not found (build it with ../shared/peers/build-paq8px.sh, or set $PAQ8PX)"
    return None


PAQ8PX_LEVEL = "-8"     # the strongest level without the LSTM (-8L: ~2% smaller, ~10x slower)


def paq8px_encode(a, binary, tmp: Path):
    """paq8px -8 on the set tiled into one PBM (binary), PGM (8-bit grey) or PPM (colour)
    image: its image models recognise the header."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if binary:
        head = pbm_bytes(a)
    else:
        magic = "P6" if a.ndim == 3 else "P5"
        head = f"{magic}\n{a.shape[1]} {a.shape[0]}\n255\n".encode() + \
            np.ascontiguousarray(a, np.uint8).tobytes()
    (tmp / "in.pnm").write_bytes(head)
    _tool([paq8px_path(), PAQ8PX_LEVEL, "in.pnm", "out.paq8px216"], tmp)
    return (tmp / "out.paq8px216").read_bytes()


def paq8px_decode(data, binary, channels, tmp: Path):
    (tmp / "in.paq8px216").write_bytes(data)   # paq8px wants its own extension
    out = tmp / "dec"
    out.mkdir()
    _tool([paq8px_path(), "-d", str(tmp / "in.paq8px216"), str(out) + "/"], tmp)
    raw = next(out.iterdir()).read_bytes()
    if binary:
        return pbm_array(raw)
    magic, w, h, _, rest = raw.split(maxsplit=4)
    c = 3 if magic == b"P6" else 1
    x = np.frombuffer(rest, np.uint8)[: int(w) * int(h) * c]
    return x.reshape(int(h), int(w), 3) if c == 3 else x.reshape(int(h), int(w))


# ----- stream codecs: bytes <-> bytes -----

def zstd_codec() -> tuple[Callable, Callable] | None:
    """zstd --ultra -22 as the CLI writes a file (with its content checksum): the zstandard
    module if installed, else the zstd CLI, else None. Both know the input size, so small
    inputs get parameters scaled to them (without it -22 sets up a 128 MiB window per call)."""
    try:
        import zstandard
        return (lambda b: zstandard.ZstdCompressor(level=22, write_checksum=True).compress(b),
                lambda b: zstandard.ZstdDecompressor().decompress(b))
    except ImportError:
        pass
    if shutil.which("zstd"):
        def run(args, b):
            return subprocess.run(["zstd", "-q", "-c", *args], input=b, capture_output=True,
                                  check=True).stdout
        return (lambda b: run(["--ultra", "-22", f"--stream-size={len(b)}"], b),
                lambda b: run(["-d"], b))
    return None


def xz_compress(data: bytes) -> bytes:
    """xz -9e with the dictionary capped at the input size (>= 4 KiB): for an input smaller
    than the dictionary only the header's size field changes, and small per-image streams no
    longer each allocate the 674 MiB that preset 9 needs (tens of ms per image)."""
    dict_size = max(4096, min(len(data), 64 << 20))
    return lzma.compress(data, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME,
                                         "dict_size": dict_size}])


STREAMS = {
    "gzip -9": (lambda b: gzip.compress(b, 9, mtime=0), gzip.decompress),
    "bzip2 -9": (lambda b: bz2.compress(b, 9), bz2.decompress),
    "xz -9e": (xz_compress, lzma.decompress),
}


def zpaq_encode(data: bytes, tmp: Path) -> bytes:
    """zpaq 7 method 5 (context mixing, its strongest), one thread."""
    (tmp / "set.bin").write_bytes(data)
    _tool(["zpaq", "a", "set.zpaq", "set.bin", "-m5", "-t1", "-noattributes"], tmp)
    return (tmp / "set.zpaq").read_bytes()


def zpaq_decode(blob: bytes, tmp: Path) -> bytes:
    out = tmp / "x"
    out.mkdir()
    (out / "set.zpaq").write_bytes(blob)
    _tool(["zpaq", "x", "set.zpaq", "-t1", "-force"], out)
    return (out / "set.bin").read_bytes()


def lrzip_encode(data: bytes, tmp: Path) -> bytes:
    """lrzip -z: long-range matching then ZPAQ context mixing, level 9, one thread."""
    (tmp / "set.bin").write_bytes(data)
    _tool(["lrzip", "-z", "-L", "9", "-p", "1", "-Q", "-f", "-o", "set.lrz", "set.bin"], tmp)
    return (tmp / "set.lrz").read_bytes()


def lrzip_decode(blob: bytes, tmp: Path) -> bytes:
    (tmp / "in.lrz").write_bytes(blob)
    _tool(["lrzip", "-d", "-p", "1", "-Q", "-f", "-o", "out.bin", "in.lrz"], tmp)
    return (tmp / "out.bin").read_bytes()


# ----- the peers -----

def _imagecodecs_jxl() -> str | None:
    try:
        import imagecodecs
    except ImportError:
        return "the imagecodecs package is not installed (pip install -e '.[bench]')"
    except Exception as exc:  # a broken binary build raises other types on import
        return f"imagecodecs does not import ({type(exc).__name__}: {exc})"
    if not imagecodecs.JPEGXL.available:
        return "this imagecodecs build has no JPEG XL"
    return None


TOOL_PACKAGES = {"pbmtojbg": "jbigkit-bin", "zpaq": "zpaq", "lrzip": "lrzip"}


def _tools(*names: str) -> Callable[[], str | None]:
    def check():
        missing = [n for n in names if shutil.which(n) is None]
        return f"{', '.join(missing)} not found (Debian package: " \
               f"{TOOL_PACKAGES.get(names[0], 'unknown')})" if missing else None
    return check


@dataclass(frozen=True)
class Peer:
    """A codec and how it sees the set: `kind` image (arrays) or stream (bytes).

    encode/decode take a temp dir as last argument when `uses_tmp` (CLI tools).
    """
    method: str
    kind: str                                    # "image" | "stream"
    encode: Callable
    decode: Callable
    missing: Callable[[], str | None] = lambda: None
    binary_only: bool = False
    forms: tuple = FORMS
    uses_tmp: bool = False
    settings: str = ""


def _zstd_missing():
    return None if zstd_codec() else ("neither the zstandard module (pip install -e '.[bench]') "
                                      "nor the zstd CLI is available")


def _zstd(i):
    return lambda b: zstd_codec()[i](b)


PEERS: tuple[Peer, ...] = (
    Peer("PNG", "image", png_encode, png_decode, settings="Pillow optimize=True; 1-bit for binary"),
    Peer("WebP lossless", "image", webp_encode, webp_decode,
         lambda: None if features.check("webp") else "Pillow was built without WebP",
         settings="Pillow lossless=True quality=100 method=6"),
    Peer("JPEG XL lossless", "image", jxl_encode, jxl_decode, _imagecodecs_jxl,
         settings=f"imagecodecs libjxl lossless effort={JXL_EFFORT}"),
    Peer("JBIG1", "image", jbig_encode, jbig_decode, _tools("pbmtojbg", "jbgtopbm"),
         binary_only=True, uses_tmp=True, settings="jbigkit pbmtojbg " + " ".join(JBIG_OPTIONS)),
    *(Peer(name, "stream", enc, dec, settings="Python stdlib" + (
        ", dictionary capped at the input size" if name.startswith("xz") else ""))
      for name, (enc, dec) in STREAMS.items()),
    Peer("zstd -22", "stream", _zstd(0), _zstd(1), _zstd_missing,
         settings="--ultra -22 with checksum (zstandard module, else the zstd CLI)"),
    Peer("paq8px -8", "image", paq8px_encode, paq8px_decode, _paq8px_missing,
         forms=("whole-set",), uses_tmp=True, settings="paq8px v216 -8, tiled PBM/PGM/PPM"),
    Peer("zpaq -m5", "stream", zpaq_encode, zpaq_decode, _tools("zpaq"), forms=("whole-set",),
         uses_tmp=True, settings="zpaq 7 a -m5 -t1 (context mixing)"),
    Peer("lrzip -z", "stream", lrzip_encode, lrzip_decode, _tools("lrzip"),
         forms=("whole-set",), uses_tmp=True, settings="lrzip -z -L 9 -p 1 (ZPAQ back end)"),
)


def _split(peer: Peer, images: np.ndarray, binary: bool, form: str) -> tuple[list, dict]:
    """What the codec codes: per-image arrays/streams, or one tiled image / one stream."""
    if peer.kind == "image":
        if form == "per-image":
            return list(images), {}
        big, tiling = tile(images)
        return [big], {"tiling": tiling}
    items = [pack(a, binary) for a in images] if form == "per-image" else [pack(images, binary)]
    return items, {"packing": "np.packbits, 8 pixels per byte" if binary else "raw uint8"}


def _join(peer: Peer, items: list, images: np.ndarray, binary: bool, form: str, details: dict):
    """The inverse of `_split`."""
    if form == "per-image":
        return np.stack(items if peer.kind == "image" else
                        [unpack(b, binary, images.shape[1:]) for b in items])
    if peer.kind == "image":
        return untile(items[0], details["tiling"], len(images))
    return unpack(items[0], binary, images.shape)


def _timed_map(fn, items: list, peer: Peer, tmp: Path, what: str) -> tuple[list, float]:
    """[fn(item)] and its wall time in seconds; CLI tools get a fresh temp dir per item."""
    out, seconds = [], 0.0
    for i, item in enumerate(items):
        args = [item]
        if peer.uses_tmp:
            work = tmp / f"{what}{i}"
            work.mkdir()
            args.append(work)
        t0 = time.perf_counter()
        out.append(fn(*args))
        seconds += time.perf_counter() - t0
    return out, seconds


def run_peer(peer: Peer, images: np.ndarray, binary: bool, form: str) -> PeerResult:
    """Encode, decode, verify one peer in one form; unavailable peers say why."""
    res = PeerResult(peer.method, form, details={"settings": peer.settings})
    reason = ("binary images only" if peer.binary_only and not binary else None) or \
        (f"{peer.method} codes only the whole-set form" if form not in peer.forms else None) or \
        peer.missing()
    if reason:
        res.available, res.reason = False, reason
        return res
    channels = images.shape[3] if images.ndim == 4 else 1
    items, details = _split(peer, images, binary, form)
    res.details.update(details)
    if peer.kind == "image":
        enc = lambda a, *t: peer.encode(a, binary, *t)                       # noqa: E731
        dec = lambda b, *t: peer.decode(b, binary, channels, *t)             # noqa: E731
    else:
        enc, dec = peer.encode, peer.decode
    with tempfile.TemporaryDirectory(prefix="acnzip-peer-") as tmp:
        blobs, res.encode_seconds = _timed_map(enc, items, peer, Path(tmp), "e")
        back, res.decode_seconds = _timed_map(dec, blobs, peer, Path(tmp), "d")
    res.total_bytes = sum(len(b) for b in blobs)
    verify_lossless(images, _join(peer, back, images, binary, form, details),
                    f"{peer.method} ({form})")
    res.lossless = True
    return res


def run_peers(images: np.ndarray, binary: bool, peers=PEERS, forms=FORMS,
              log: Callable[[str], None] = lambda m: None) -> list[PeerResult]:
    """Every peer in every form on `images` (N, H, W[, C]) uint8 ({0,1} when binary)."""
    if binary and images.max(initial=0) > 1:
        raise ValueError("binary images must hold values {0, 1}")
    results = []
    for peer in peers:
        for form in (f for f in forms if f in peer.forms):
            r = run_peer(peer, images, binary, form)
            log(f"{peer.method:18s} {form:9s} " + (
                f"{r.total_bytes:>10d} bytes  enc {r.encode_seconds:6.2f} s  "
                f"dec {r.decode_seconds:6.2f} s" if r.available else f"unavailable: {r.reason}"))
            results.append(r)
    return results
