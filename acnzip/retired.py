"""Retired model files, kept compactly and byte-exact.

A replaced default model must stay available for as long as archives made with it exist
(they name it by hash), so it stays in acnzip/models/retired/. Stored whole, each costs
6.3 MB for good, in every install and in every GPU window's upload. A model file is a zip
archive (torch.save) whose tensor storages are stored uncompressed; trained float32 weights
barely compress (xz: -7%), but a model trained on from another differs from it mostly in the
low bits of each weight. So a retired file is stored *packed*: each storage XOR-ed with the
storage of the same name and size in a base model (usually the model that replaced it),
split into byte planes (every first byte, then every second, ...), and the whole file
xz-compressed. Measured on the shipped models: mnist.pt leg 13 against leg 17, 6.3 -> 3.8 MB;
binarized-mnist.pt's GPU model against the CPU model continued from it, 6.3 -> 2.8 MB; with no
base (an unrelated model), byte planes alone, 6.3 -> 5.4 MB.

A packed file (STEM-SHA16.pt.packed) is an xz stream of:

    MAGIC                b"acnzip-retired 1\\n"
    header length        4 bytes, big-endian
    header               JSON: {"sha256": the model file's, "size": its bytes,
                                "base_sha256": the base's, or null for none,
                                "regions": [[offset, size, base_offset], ...]}
    body                 the model file's bytes, each region [offset, offset + size) replaced
                         by its byte planes, XOR-ed first with the base's bytes at base_offset
                         (base_offset -1: no base bytes, planes only)

`unpack` reverses this and returns the model file's bytes only if their sha256 is the
header's; a base is found by hash (it may be packed itself: a chain of at most MAX_CHAIN).
"""
from __future__ import annotations

import hashlib
import json
import lzma
import struct
import zipfile
from io import BytesIO
from typing import Callable

import numpy as np

from .errors import AcnzipError

__all__ = ["RetiredFileError", "pack", "unpack", "base_of", "PACKED_SUFFIX", "MAX_CHAIN"]

MAGIC = b"acnzip-retired 1\n"
PACKED_SUFFIX = ".packed"
MAX_CHAIN = 16
PLANES = 4                        # float32 storages: 4 byte planes
MAX_UNPACKED = 1 << 30            # a model file of more than 1 GiB is not one of ours


class RetiredFileError(AcnzipError):
    """A packed retired model that cannot be restored exactly."""


def _storages(blob: bytes) -> dict[str, tuple[int, int]]:
    """{entry name: (data offset, size)} of the uncompressed tensor storages of a torch.save
    zip (entries '<archive>/data/<key>'), sizes a multiple of PLANES."""
    out = {}
    with zipfile.ZipFile(BytesIO(blob)) as z:
        for info in z.infolist():
            parts = info.filename.split("/")
            if len(parts) != 3 or parts[1] != "data" or info.compress_type != zipfile.ZIP_STORED:
                continue
            if info.file_size == 0 or info.file_size % PLANES:
                continue
            local = blob[info.header_offset:info.header_offset + 30]
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            out["data/" + parts[2]] = (info.header_offset + 30 + name_len + extra_len,
                                       info.file_size)
    return out


def _planes(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b.reshape(-1, PLANES).T).reshape(-1)


def _unplanes(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b.reshape(PLANES, -1).T).reshape(-1)


def pack(model: bytes, base: bytes | None = None) -> bytes:
    """The packed form of the model file `model`, against `base` (a model file, or None)."""
    own = _storages(model)
    theirs = _storages(base) if base is not None else {}
    body = np.frombuffer(model, dtype=np.uint8).copy()
    regions = []
    for name, (off, size) in sorted(own.items(), key=lambda kv: kv[1]):
        seg = body[off:off + size].copy()
        boff = -1
        if name in theirs and theirs[name][1] == size:
            boff = theirs[name][0]
            seg ^= np.frombuffer(base, dtype=np.uint8, count=size, offset=boff)
        body[off:off + size] = _planes(seg)
        regions.append([off, size, boff])
    header = json.dumps({"sha256": hashlib.sha256(model).hexdigest(), "size": len(model),
                         "base_sha256": hashlib.sha256(base).hexdigest() if base is not None
                         else None, "regions": regions}).encode()
    raw = MAGIC + struct.pack(">I", len(header)) + header + body.tobytes()
    return lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)


def _read(packed: bytes, what: str) -> tuple[dict, np.ndarray]:
    try:
        raw = lzma.LZMADecompressor().decompress(packed, max_length=MAX_UNPACKED + 65536)
    except lzma.LZMAError:
        raise RetiredFileError(f"{what}: not a packed acnzip model (damaged?)") from None
    if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + 4:
        raise RetiredFileError(f"{what}: not a packed acnzip model")
    (n,) = struct.unpack(">I", raw[len(MAGIC):len(MAGIC) + 4])
    try:
        header = json.loads(raw[len(MAGIC) + 4:len(MAGIC) + 4 + n])
        regions = [(int(o), int(s), int(b)) for o, s, b in header["regions"]]
        sha, size = str(header["sha256"]), int(header["size"])
    except (ValueError, KeyError, TypeError):
        raise RetiredFileError(f"{what}: damaged header") from None
    body = np.frombuffer(raw, dtype=np.uint8, offset=len(MAGIC) + 4 + n).copy()
    if len(body) != size or any(o < 0 or s <= 0 or s % PLANES or o + s > size
                                for o, s, _ in regions):
        raise RetiredFileError(f"{what}: damaged (sizes do not agree)")
    return {"sha256": sha, "base_sha256": header.get("base_sha256"), "regions": regions}, body


def base_of(packed: bytes, what: str = "packed model") -> str | None:
    """The sha256 of the model a packed file was packed against (None: no base)."""
    return _read(packed, what)[0]["base_sha256"]


def unpack(packed: bytes, find_base: Callable[[str], bytes | None],
           what: str = "packed model") -> bytes:
    """The model file's bytes, exactly (checked against the header's sha256). find_base(sha)
    gives the base's bytes, or None if there is none to be had."""
    header, body = _read(packed, what)
    base = None
    if header["base_sha256"] is not None:
        base = find_base(str(header["base_sha256"]))
        if base is None:
            raise RetiredFileError(f"{what}: its base model (sha256 "
                                   f"{str(header['base_sha256'])[:16]}...) is not shipped")
    for off, size, boff in header["regions"]:
        seg = _unplanes(body[off:off + size])
        if boff >= 0:
            if base is None or boff + size > len(base):
                raise RetiredFileError(f"{what}: damaged (a region outside its base)")
            seg ^= np.frombuffer(base, dtype=np.uint8, count=size, offset=boff)
        body[off:off + size] = seg
    model = body.tobytes()
    if hashlib.sha256(model).hexdigest() != header["sha256"]:
        raise RetiredFileError(f"{what}: restored bytes do not have the recorded sha256")
    return model
