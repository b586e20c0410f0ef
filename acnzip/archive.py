"""The .acn container and its header schema: the one place an archive's bytes are trusted.

Byte layout of format versions 10 down to 4 (little-endian; docs/format.md has the full
table and keys):

    offset  size  field
    0       4     magic 0x89 'A' 'C' 'Z'
    4       2     format version (u16): 10 when the header records gate levels or fitted
                  weights, else 9 when it records the GMM's bits-back coding, else 8 when
                  it records weight levels or a table step, else 7 when it records empty
                  folders, else 6 when it records a posterior window, else 5 when it
                  records PixelCNN levels, else 4 (`writer_version`); versions 3 and 2,
                  the same bytes, and 1, without the
                  files section, are read too (they differ in which orders use which
                  protocol, and 3 and older have no portable archives)
    6       2     flags (u16): bit 0 model embedded, bit 1 order kept; bits 2-15 reserved = 0
    8       4     header length Lh (u32)
    12      4     names length Ln (u32)
    16      8     other-files length Lf (u64)
    24      8     model length Lm (u64)
    32      8     payload length Lp (u64), a multiple of 4
    40      4     CRC-32 of bytes 0..39
    44      Lh    header: zlib (deflate, level 9) of the UTF-8 JSON
            Ln    names section: xz of the newline-separated names
            Lf    other files: xz of (u32 path length, UTF-8 path, u64 size, bytes) records
            Lm    model file bytes (empty unless bit 0)
            Lp    ANS payload: 32-bit words, little-endian
    end-4   4     CRC-32 of everything from offset 44 up to the end of the payload

Guarantees of `read_archive`: it reads the fixed header first and nothing more unless the
magic, CRC and version are right and the declared sections add up to the file's size; the
JSON header is inflated with a cap and validated against one schema (`check_header`: every
key's type and range, every count bounded by a memory budget) before any other work; the
names and other-files sections are inflated with caps derived from the validated header.
Every failure is an ArchiveError with a one-line message.
"""
from __future__ import annotations

import json
import lzma
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_write_bytes
from .errors import AcnzipError
from .inputs import NotRegularFileError, open_regular

__all__ = ["Archive", "ArchiveError", "MAGIC", "FORMAT_VERSION", "FLAG_MODEL_EMBEDDED",
           "FLAG_ORDER_KEPT", "pack", "unpack", "read_archive", "write_archive", "check_header",
           "pack_names", "unpack_names", "pack_files", "unpack_files", "safe_name",
           "section_sizes", "LIMITS", "associative"]

MAGIC = b"\x89ACZ"
FORMAT_VERSION = 10
FLAG_MODEL_EMBEDDED = 1 << 0
FLAG_ORDER_KEPT = 1 << 1
_KNOWN_FLAGS = FLAG_MODEL_EMBEDDED | FLAG_ORDER_KEPT
_FIXED = {1: struct.Struct("<4sHHIIQQ"),      # 32 bytes + CRC: no files section
          2: struct.Struct("<4sHHIIQQQ"),     # 40 bytes + CRC
          3: struct.Struct("<4sHHIIQQQ"),
          4: struct.Struct("<4sHHIIQQQ"),
          5: struct.Struct("<4sHHIIQQQ"),
          6: struct.Struct("<4sHHIIQQQ"),
          7: struct.Struct("<4sHHIIQQQ"),
          8: struct.Struct("<4sHHIIQQQ"),
          9: struct.Struct("<4sHHIIQQQ"),
          10: struct.Struct("<4sHHIIQQQ")}
MAX_HEADER_JSON = 1 << 24             # bytes of JSON a reader inflates at most (no zip bombs)


class _Limits:
    """What a reader accepts; anything beyond is refused before it costs memory or time.

    The output budget bounds what decoding holds in memory: N x C x H x W pixel bytes."""
    max_images = 10 ** 8
    max_side = 1 << 14
    max_pixel_bytes = 1 << 33         # 8 GiB of decoded pixels
    max_chains = 4096                 # also the largest --order set batch
    max_neighbours = 1024
    max_seed_words = 1 << 22
    max_threads = 256
    max_grid_bins = 1 << 14           # latent tables: batch rows x bins x 8 bytes, ~0.5 GB each
    max_name_bytes = 4096             # one stored path, UTF-8
    max_names_bytes = 1 << 30         # all stored image names together (names section)
    max_paths_bytes = 1 << 28         # all paths of the files kept byte for byte together
    max_other_files = 10 ** 6
    max_other_bytes = 1 << 28         # 256 MiB of files kept byte for byte (held in memory)
    max_text = 256                    # short strings (versions, mode, names of things)


LIMITS = _Limits()


class ArchiveError(AcnzipError, ValueError):
    """The file is not a readable acnzip archive: one line saying what is wrong."""


@dataclass
class Archive:
    header: dict
    payload: bytes
    names: bytes = b""
    files: bytes = b""           # the other-files section (xz), empty if none
    model: bytes = b""
    order_kept: bool = True
    version: int | None = None   # as read; None: the version it will be written as

    def __post_init__(self):
        if self.version is None:
            self.version = writer_version(self.header)

    @property
    def flags(self) -> int:
        return (FLAG_MODEL_EMBEDDED if self.model else 0) | (FLAG_ORDER_KEPT if self.order_kept else 0)


def fixed_bytes(version: int = FORMAT_VERSION) -> int:
    """Bytes of the fixed header, its CRC and the trailing body CRC: the per-archive frame."""
    return _FIXED[version].size + 8


def _header_json(header: dict) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _header_bytes(header: dict) -> bytes:
    return zlib.compress(_header_json(header), 9)


def check_header_size(header: dict, reserve: int = 0) -> None:
    """A writer's check: the JSON, and `reserve` bytes more, fits what a reader inflates
    (MAX_HEADER_JSON); a folder's list of empty folders is what can make it large.
    ArchiveError otherwise."""
    size = len(_header_json(header)) + reserve
    if size > MAX_HEADER_JSON:
        raise ArchiveError(f"the archive header would be {size:,} bytes of JSON, over the "
                           f"{MAX_HEADER_JSON:,} a reader accepts (its list of "
                           f"{len(header.get('source', {}).get('folders', [])):,} empty "
                           "folders is too long)")


def writer_version(header: dict) -> int:
    """The format version an archive with this header is written as: the lowest that
    describes it, so that archives which do not need a newer version keep their bytes and
    older readers still decode them:
    10 when its portable networks record gate levels or fitted weight levels (8-bit models);
    9 when the GMM p(z) codes its component with bits back (`base_coding`);
    8 when its portable networks record weight levels or a table step (8-bit models);
    7 when a folder's source lists empty folders (`source.folders`);
    6 when q(z|x) is coded on a window (`posterior_window`);
    5 when its portable networks record PixelCNN activation levels; else 4."""
    if {"gate_levels", "fit_weights"} & set(header.get("portable", {})):
        return 10
    if "base_coding" in header:
        return 9
    if {"weight_levels", "table_step"} & set(header.get("portable", {})):
        return 8
    if "folders" in header.get("source", {}):
        return 7
    if "posterior_window" in header:
        return 6
    return 5 if "levels" in header.get("portable", {}) else 4


def pack(archive: Archive) -> bytes:
    """The archive's bytes, as format version `writer_version(header)`."""
    header = _header_bytes(archive.header)
    if len(archive.payload) % 4:
        raise ValueError("payload must be whole 32-bit words")
    version = writer_version(archive.header)
    fixed = _FIXED[version].pack(MAGIC, version, archive.flags, len(header),
                                        len(archive.names), len(archive.files),
                                        len(archive.model), len(archive.payload))
    body = header + archive.names + archive.files + archive.model + archive.payload
    return (fixed + struct.pack("<I", zlib.crc32(fixed)) + body
            + struct.pack("<I", zlib.crc32(body)))


def section_sizes(archive: Archive) -> dict:
    """Bytes of each part of the packed archive; they add up to `archive_bytes`."""
    sizes = {"frame_bytes": fixed_bytes(writer_version(archive.header)),
             "header_bytes": len(_header_bytes(archive.header)),
             "names_bytes": len(archive.names), "other_files_bytes": len(archive.files),
             "model_bytes": len(archive.model), "payload_bytes": len(archive.payload)}
    sizes["archive_bytes"] = sum(sizes.values())
    return sizes


def _parse_fixed(head: bytes, total: int | None) -> tuple[int, int, tuple[int, ...]]:
    """(version, flags, section lengths) from the first bytes; checks magic, CRC, version,
    flags and, when `total` (the file's size) is known, that the sections add up to it."""
    if head[:4] != MAGIC[:len(head[:4])] or not head:
        raise ArchiveError("not an acnzip archive (bad magic number)")
    if len(head) < 6:
        raise ArchiveError(f"archive is truncated ({len(head)} bytes)")
    version = struct.unpack_from("<H", head, 4)[0]
    if version not in _FIXED:
        raise ArchiveError(f"archive format version {version} is not supported "
                           f"(this acnzip reads versions 1 to {FORMAT_VERSION})")
    fmt = _FIXED[version]
    if len(head) < fmt.size + 4:
        raise ArchiveError(f"archive is truncated ({len(head)} bytes)")
    if struct.unpack_from("<I", head, fmt.size)[0] != zlib.crc32(head[:fmt.size]):
        raise ArchiveError("archive header is corrupt (CRC mismatch)")
    fields = fmt.unpack_from(head)
    flags = fields[2]
    lengths = fields[3:] if version >= 2 else (fields[3], fields[4], 0, fields[5], fields[6])
    if flags & ~_KNOWN_FLAGS:
        raise ArchiveError(f"archive uses unknown flags 0x{flags:04x} (reserved bits set)")
    expected = fixed_bytes(version) + sum(lengths)
    if total is not None and total != expected:
        raise ArchiveError(f"archive is truncated or has trailing bytes "
                           f"({total} bytes, expected {expected})")
    return version, flags, lengths


def unpack(data: bytes) -> Archive:
    """Parse and verify an archive's bytes: container, CRCs and header schema (ArchiveError)."""
    version, flags, (lh, ln, lf, lm, lp) = _parse_fixed(data[:_FIXED[2].size + 4], len(data))
    start = _FIXED[version].size + 4
    end = len(data) - 4
    body = data[start:end]
    if struct.unpack_from("<I", data, end)[0] != zlib.crc32(body):
        raise ArchiveError("archive data is corrupt (CRC mismatch)")
    if bool(flags & FLAG_MODEL_EMBEDDED) != (lm > 0) or lp % 4:
        raise ArchiveError("archive sections are inconsistent with its flags")
    cuts = [0, lh, lh + ln, lh + ln + lf, lh + ln + lf + lm, len(body)]
    raw_header, names, files, model, payload = (body[a:b] for a, b in zip(cuts, cuts[1:]))
    archive = Archive(_parse_header(raw_header), payload, names, files, model,
                      bool(flags & FLAG_ORDER_KEPT), version)
    check_header(archive.header, archive)
    return archive


def _parse_header(raw: bytes) -> dict:
    """Inflate and parse the JSON header; ArchiveError if it is not exactly that."""
    inflate = zlib.decompressobj()
    try:
        text = inflate.decompress(raw, MAX_HEADER_JSON)
        if not inflate.eof and len(text) == MAX_HEADER_JSON:      # stopped at the limit
            raise ArchiveError(f"archive header inflates to more than {MAX_HEADER_JSON >> 20} "
                               "MiB of JSON (the most a reader accepts)")
        if not inflate.eof or inflate.unconsumed_tail or inflate.unused_data:
            raise ArchiveError("archive header is not one complete zlib stream")
        header = json.loads(text.decode())
    except zlib.error as exc:
        raise ArchiveError(f"archive header is not valid zlib data: {exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:   # JSONDecodeError is a
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__   # ValueError
        raise ArchiveError(f"archive header is not valid JSON: {reason}") from None
    if not isinstance(header, dict):
        raise ArchiveError("archive header is not a JSON object")
    return header


def write_archive(path: Path, archive: Archive) -> int:
    """Write atomically; returns the number of bytes written."""
    data = pack(archive)
    atomic_write_bytes(Path(path), data)
    return len(data)


def read_archive(path: Path) -> Archive:
    """Read and verify an archive file. Reads the fixed header first: a file that is not an
    archive (or not a regular file, or of the wrong size) is refused without reading it."""
    try:
        with open_regular(path) as f:
            st = os.fstat(f.fileno())
            head = f.read(_FIXED[2].size + 4)
            _parse_fixed(head, st.st_size)            # raises unless the sizes add up
            data = head + f.read(st.st_size - len(head))
    except IsADirectoryError:
        raise ArchiveError(f"{path}: is a folder, not an archive") from None
    except NotRegularFileError as exc:
        raise ArchiveError(str(exc)) from None
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) != st.st_size:
        raise ArchiveError(f"{path} changed while it was read")
    return unpack(data)


# ----- the header schema -----

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and v == v and abs(v) != float("inf")


def _utf8_length(v) -> int:
    """Bytes of the string `v` in UTF-8; a huge number for anything else (a non-string, a
    lone surrogate), so one comparison with a limit refuses it."""
    try:
        return len(v.encode("utf-8")) if isinstance(v, str) else 1 << 62
    except UnicodeEncodeError:
        return 1 << 62


def _fail(what: str):
    raise ArchiveError(f"archive header: {what}")


def _int_in(h: dict, key: str, lo: int, hi: int) -> int:
    v = h.get(key)
    if not _is_int(v) or not lo <= v <= hi:
        _fail(f"{key!r} must be an integer in [{lo}, {hi}]")
    return v


def _text(v, what: str, limit: int = LIMITS.max_text) -> str:
    if not isinstance(v, str) or len(v) > limit or "\x00" in v:
        _fail(f"{what} must be a string of at most {limit} characters")
    return v


def safe_name(name: str) -> bool:
    """A relative POSIX path with no empty, '.' or '..' parts, no backslash or NUL (so it
    stays inside the output folder on every system)."""
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and "\\" not in name and "\x00" not in name \
        and all(p not in ("", ".", "..") for p in parts)


_MODE_CHANNELS = {"1": 1, "L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
_HEX = re.compile(r"[0-9a-f]+")


def associative(order: str, version: int) -> bool:
    """Whether an archive of this order and format version was coded in batches with the
    associative prior (set since version 2, keep since 3) rather than along the tour's chains."""
    return (order == "set" and version >= 2) or (order == "keep" and version >= 3)


_SCALE_NAME = re.compile(r"[a-z_]{1,16}[0-9]{0,4}")


MAX_LEVELS = 2047      # the largest activation or weight range a reader accepts
MAX_TABLE_STEP = 1024  # the finest tanh and gate tables a reader builds (16,385 entries)


def _check_portable(p, version: int) -> None:
    """'portable': {"scales": {name: positive number}, "levels": int (version 5),
    "weight_levels": int, "table_step": int (both version 8), "gate_levels": int,
    "fit_weights": true (both version 10)}: the integer networks' activation scales
    (nn/integer.py), the integer range [-levels, levels] of the PixelCNN's activations,
    [-weight_levels, weight_levels] of every layer's weights (with fit_weights: at most that)
    and [-gate_levels, gate_levels] of its gates (each absent: 127), and the step
    1/table_step of the tanh and gate tables' inputs (absent: 64); which scale names a model
    needs is checked against the model."""
    keys = set(p) if isinstance(p, dict) else set()
    known = "scales" in keys and keys <= {"scales", "levels", "weight_levels", "table_step",
                                          "gate_levels", "fit_weights"}
    scales = p.get("scales") if known else None
    if not (isinstance(scales, dict) and len(scales) <= 4096
            and all(isinstance(k, str) and _SCALE_NAME.fullmatch(k) for k in scales)
            and all(_is_num(v) and 1e-30 < v < 1e30 for v in scales.values())):
        _fail("'portable' must be {scales: {name: number in (1e-30, 1e30)}, levels: integer, "
              "weight_levels: integer, table_step: integer, gate_levels: integer, "
              "fit_weights: true}")
    if "fit_weights" in keys:
        if version < 10:
            _fail("'portable' fit_weights need format version 10")
        if p["fit_weights"] is not True:
            _fail("'portable' fit_weights must be true (or absent)")
    for key, since, low, high in (("levels", 5, 127, MAX_LEVELS),
                                  ("weight_levels", 8, 127, MAX_LEVELS),
                                  ("table_step", 8, 64, MAX_TABLE_STEP),
                                  ("gate_levels", 10, 127, MAX_LEVELS)):
        if key in keys:
            if version < since:
                _fail(f"'portable' {key} need format version {since}")
            if not (_is_int(p[key]) and low <= p[key] <= high):
                _fail(f"'portable' {key} must be an integer in [{low}, {high}]")


def check_header(h: dict, archive: Archive) -> None:
    """Validate the JSON header against the schema (docs/format.md), with every size bounded
    (LIMITS); ArchiveError naming the first field that is wrong."""
    portable = "portable" in h
    if portable:
        if archive.version < 4:
            _fail("'portable' needs format version 4")
        _check_portable(h["portable"], archive.version)
    for key in ("acnzip_version", "mode", "model_sha256", "order") + \
            (() if portable else ("fingerprint",)):
        _text(h.get(key), repr(key))
    if "model_name" in h or archive.version >= 2:
        name = _text(h.get("model_name"), "'model_name'")
        if not safe_name(name) or "/" in name:
            _fail("'model_name' must be a bare file name")
    n = _int_in(h, "n_images", 1, LIMITS.max_images)
    shape = h.get("shape_chw")
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) for v in shape)
            and 1 <= shape[0] <= 4 and all(1 <= v <= LIMITS.max_side for v in shape[1:])):
        _fail("'shape_chw' must be [channels 1-4, height, width]")
    if n * shape[0] * shape[1] * shape[2] > LIMITS.max_pixel_bytes:
        _fail(f"{n} images of {shape[1]}x{shape[2]}x{shape[0]} exceed the decoding memory "
              f"budget of {LIMITS.max_pixel_bytes >> 30} GiB")
    if not isinstance(h.get("binary"), bool):
        _fail("'binary' must be true or false")
    if type(h.get("binary_value")) is not int or h["binary_value"] not in (1, 255):
        _fail("'binary_value' must be 1 or 255")
    mode = h["mode"]
    if mode != "array" and _MODE_CHANNELS.get(mode) != shape[0]:
        _fail(f"'mode' {mode!r} does not fit {shape[0]} channel(s)")
    if mode == "1" and not h["binary"]:
        _fail("'mode' 1 needs binary pixels")
    _check_source(h.get("source"), shape[0])
    if "folders" in h["source"] and archive.version < 7:
        _fail("'source.folders' needs format version 7")
    if h["order"] not in ("keep", "set", "tour") or (h["order"] == "keep") != archive.order_kept \
            or (h["order"] == "tour" and archive.version < 2):
        _fail("order and flags disagree")
    if associative(h["order"], archive.version):         # batches, associative prior
        _int_in(h, "batch", 1, LIMITS.max_chains)
        _int_in(h, "neighbours", 1, LIMITS.max_neighbours)
        if n >= 1 << 24:
            _fail(f"--order {h['order']} archives hold fewer than 2**24 images")
        if archive.version >= 3 and not (_is_num(h.get("base_weight"))
                                         and 0 <= h["base_weight"] < 1):
            _fail("'base_weight' must be a number in [0, 1)")
    else:                                                     # chains along the tour
        lengths = h.get("chain_lengths")
        if not (isinstance(lengths, list) and 1 <= len(lengths) <= min(n, LIMITS.max_chains)
                and all(_is_int(v) and v >= 1 for v in lengths) and sum(lengths) == n
                and sorted(lengths, reverse=True) == lengths):
            _fail("chain lengths must be positive, non-increasing and add up to the images")
    _int_in(h, "seed_words", 1, LIMITS.max_seed_words)
    _int_in(h, "seed", 0, 2 ** 32 - 1)
    _int_in(h, "threads", 1, LIMITS.max_threads)
    grid = h.get("grid")
    if not (isinstance(grid, dict) and set(grid) == {"width", "range"}
            and _is_num(grid["width"]) and _is_num(grid["range"])
            and 0 < grid["width"] <= 1 and 1 <= grid["range"] <= 1024
            and 2 * grid["range"] / grid["width"] <= LIMITS.max_grid_bins):
        _fail("'grid' must be {width in (0, 1], range in [1, 1024]} with at most "
              f"{LIMITS.max_grid_bins} bins")
    if "base_coding" in h and (archive.version < 9 or h["base_coding"] != "bits-back"
                               or not portable):
        _fail("'base_coding' must be \"bits-back\", in a portable archive of format "
              "version 9")
    if "posterior_window" in h and archive.version < 6:
        _fail("'posterior_window' needs format version 6")
    window = h.get("posterior_window", grid["range"])
    if not (_is_num(window) and grid["width"] <= window <= grid["range"]):
        _fail("'posterior_window' must be a number from the grid's width to its range")
    if len(h["model_sha256"]) != 64 or not _HEX.fullmatch(h["model_sha256"]):
        _fail("'model_sha256' must be 64 hex digits")
    if not portable and (len(h["fingerprint"]) != 32 or not _HEX.fullmatch(h["fingerprint"])):
        _fail("'fingerprint' must be 32 hex digits")
    if portable and not associative(h["order"], archive.version):
        _fail("portable archives are coded with --order keep or set")
    versions = h.get("versions")
    if not (isinstance(versions, dict) and len(versions) <= 16
            and all(isinstance(v, str) and len(v) <= LIMITS.max_text for v in versions.values())
            and isinstance(versions.get("torch"), str)):
        _fail("'versions' must map names to short strings, torch among them")
    other = h.get("other_files", {"count": 0, "bytes": 0})
    if not (isinstance(other, dict) and set(other) == {"count", "bytes"}):
        _fail("'other_files' must be {count, bytes}")
    count = _int_in(other, "count", 0, LIMITS.max_other_files)
    _int_in(other, "bytes", 0, LIMITS.max_other_bytes)
    if (count > 0) != (len(archive.files) > 0):
        _fail("'other_files' disagrees with the files section")
    if h["source"]["kind"] == "npy" and count:
        _fail("an .npy source has no other files")
    if archive.names and not (h["order"] == "keep" and h["source"]["kind"] == "folder"):
        _fail("a names section is only stored for folders kept in order")


def _check_source(src, channels: int) -> None:
    if not isinstance(src, dict) or src.get("kind") not in ("folder", "npy", "npz"):
        _fail("'source' must be a folder, npy or npz description")
    if src["kind"] == "folder":
        if not set(src) <= {"kind", "folders"}:
            _fail("'source' of a folder has only a kind and its empty folders")
        if "folders" in src:
            folders = src["folders"]
            if not isinstance(folders, list) or not folders or \
                    not all(_utf8_length(f) <= LIMITS.max_name_bytes for f in folders):
                _fail("'source.folders' must be a non-empty list of paths")
            if folders != sorted(folders):
                _fail("'source.folders' must be sorted")
            try:
                check_paths(folders, "'source.folders'")
            except ArchiveError as exc:
                _fail(str(exc))
        return
    if "folders" in src:
        _fail("'source.folders' is only for a folder")
    name = _text(src.get("file"), "'source.file'")
    if not safe_name(name) or "/" in name:
        _fail("'source.file' must be a bare file name")
    if src.get("ndim") not in (3, 4) or isinstance(src.get("ndim"), bool) or \
            (src["ndim"] == 3 and channels != 1):
        _fail("'source.ndim' must be 3 (one channel) or 4")
    key = src.get("key")
    if src["kind"] == "npz":
        _text(key, "'source.key'")
        if not key or "/" in key or "\\" in key:
            _fail("'source.key' must be a non-empty array name")
    elif key is not None:
        _fail("'source.key' is only for npz files")
    if src.get("dtype", "uint8") not in ("uint8", "bool"):
        _fail("'source.dtype' must be uint8 or bool")
    if not isinstance(src.get("fortran_order", False), bool):
        _fail("'source.fortran_order' must be true or false")


# ----- names and other files -----

def pack_names(names: list[str]) -> bytes:
    """Names, newline-separated UTF-8, xz-compressed (names must not contain newlines)."""
    if any("\n" in n for n in names):
        raise ValueError("names must not contain newlines")
    if not names:
        return b""
    return lzma.compress("\n".join(names).encode(), preset=9 | lzma.PRESET_EXTREME)


def _inflate_xz(data: bytes, cap: int, what: str) -> bytes:
    """Exactly one xz stream of at most `cap` bytes, else ArchiveError."""
    xz = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        out = xz.decompress(data, max_length=cap + 1)
    except lzma.LZMAError as exc:
        raise ArchiveError(f"archive {what} section is not valid xz data ({exc})") from None
    if len(out) > cap or not xz.eof or xz.unused_data:
        raise ArchiveError(f"archive {what} section is damaged (wrong size or trailing data)")
    return out


def unpack_names(data: bytes, n: int) -> list[str]:
    """The n stored names: safe relative paths, distinct (ArchiveError otherwise)."""
    raw = _inflate_xz(data, min(n * (LIMITS.max_name_bytes + 1), LIMITS.max_names_bytes),
                      "names")
    try:
        names = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise ArchiveError("archive names section is not UTF-8") from None
    if len(names) != n or len(set(names)) != n or not all(
            safe_name(x) and len(x.encode()) <= LIMITS.max_name_bytes for x in names):
        raise ArchiveError("archive names section is damaged (wrong count or unsafe names)")
    return names


_RECORD = struct.Struct("<IQ")


def pack_files(files: list[tuple[str, bytes]]) -> bytes:
    """Other files kept byte for byte: xz of (u32 path length, u64 size, path, bytes) records."""
    if not files:
        return b""
    parts = []
    for path, content in files:
        p = path.encode("utf-8")
        parts += [_RECORD.pack(len(p), len(content)), p, content]
    return lzma.compress(b"".join(parts), preset=6)


def unpack_files(data: bytes, count: int, total_bytes: int) -> list[tuple[str, bytes]]:
    """The `count` files of the section, `total_bytes` of contents in all; paths are safe,
    distinct and no path is a folder of another (ArchiveError otherwise)."""
    if not count:
        return []
    cap = total_bytes + count * _RECORD.size + min(count * LIMITS.max_name_bytes,
                                                   LIMITS.max_paths_bytes)
    raw = memoryview(_inflate_xz(data, cap, "files"))
    files, pos = [], 0
    try:
        for _ in range(count):
            lp, size = _RECORD.unpack_from(raw, pos)
            pos += _RECORD.size
            if lp > LIMITS.max_name_bytes or pos + lp + size > len(raw):
                raise ArchiveError("archive files section is damaged (a record overruns it)")
            path = bytes(raw[pos:pos + lp]).decode("utf-8")
            files.append((path, bytes(raw[pos + lp:pos + lp + size])))
            pos += lp + size
    except (struct.error, UnicodeDecodeError):
        raise ArchiveError("archive files section is damaged (bad record)") from None
    if pos != len(raw) or sum(len(c) for _, c in files) != total_bytes:
        raise ArchiveError("archive files section is damaged (sizes disagree with the header)")
    check_paths([p for p, _ in files], "archive files section")
    return files


def check_paths(paths: list[str], what: str) -> None:
    """Paths that can all be written under one folder: safe, distinct, none a folder of
    another (ArchiveError otherwise). Linear in the paths' total length: folders are nodes
    of a tree keyed by (parent node, part), so a path thousands of folders deep costs no
    more than its characters."""
    seen = set()
    for p in paths:
        if p in seen:
            raise ArchiveError(f"{what} names the file {p!r} twice")
        seen.add(p)
    for p in paths:
        if not safe_name(p):
            raise ArchiveError(f"{what} names an unsafe path {p!r}")
    children: dict[tuple[int, str], int] = {}     # (node, part) -> node; node 0: the root
    listed: set[int] = set()                      # the nodes that are paths of `paths`
    for p in paths:
        node, parts = 0, p.split("/")
        for depth, part in enumerate(parts):
            if node in listed:                    # an earlier path is a folder of this one
                raise ArchiveError(f"{what}: {'/'.join(parts[:depth])!r} is both a file and "
                                   "a folder")
            nxt = children.get((node, part))
            if nxt is None:
                nxt = children[node, part] = len(children) + 1
            elif depth == len(parts) - 1:        # p is a folder of an earlier path
                raise ArchiveError(f"{what}: {p!r} is both a file and a folder")
            node = nxt
        listed.add(node)