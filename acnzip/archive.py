"""The .acn container: fixed header, JSON header, names, optional model, ANS payload, CRCs.

Byte layout (little-endian; docs/format.md has the full table and the JSON keys):

    offset  size  field
    0       4     magic 0x89 'A' 'C' 'Z'
    4       2     format version (u16), currently 1
    6       2     flags (u16): bit 0 model embedded, bit 1 order kept; bits 2-15 reserved = 0
    8       4     header length Lh (u32)
    12      4     names length Ln (u32)
    16      8     model length Lm (u64)
    24      8     payload length Lp (u64), a multiple of 4
    32      4     CRC-32 of bytes 0..31
    36      Lh    header: zlib (deflate, level 9) of the UTF-8 JSON
            Ln    names section
            Lm    model file bytes (empty unless bit 0)
            Lp    ANS payload: 32-bit words, little-endian
    end-4   4     CRC-32 of everything from offset 36 up to the end of the payload
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_write_bytes

__all__ = ["Archive", "ArchiveError", "MAGIC", "FORMAT_VERSION", "FLAG_MODEL_EMBEDDED",
           "FLAG_ORDER_KEPT", "pack", "unpack", "read_archive", "write_archive"]

MAGIC = b"\x89ACZ"
FORMAT_VERSION = 1
FLAG_MODEL_EMBEDDED = 1 << 0
FLAG_ORDER_KEPT = 1 << 1
_KNOWN_FLAGS = FLAG_MODEL_EMBEDDED | FLAG_ORDER_KEPT
_FIXED = struct.Struct("<4sHHIIQQ")  # 32 bytes, followed by its CRC-32
MAX_HEADER_JSON = 1 << 24             # bytes of JSON a reader inflates at most (no zip bombs)
FIXED_BYTES = _FIXED.size + 4


class ArchiveError(ValueError):
    """The file is not a readable acnzip archive (wrong magic, version, flags, size, CRC)."""


@dataclass
class Archive:
    header: dict
    payload: bytes
    names: bytes = b""
    model: bytes = b""
    order_kept: bool = True

    @property
    def flags(self) -> int:
        return (FLAG_MODEL_EMBEDDED if self.model else 0) | (FLAG_ORDER_KEPT if self.order_kept else 0)


def pack(archive: Archive) -> bytes:
    """The archive's bytes."""
    header = zlib.compress(json.dumps(archive.header, sort_keys=True,
                                      separators=(",", ":")).encode(), 9)
    if len(archive.payload) % 4:
        raise ValueError("payload must be whole 32-bit words")
    fixed = _FIXED.pack(MAGIC, FORMAT_VERSION, archive.flags, len(header), len(archive.names),
                        len(archive.model), len(archive.payload))
    body = header + archive.names + archive.model + archive.payload
    return (fixed + struct.pack("<I", zlib.crc32(fixed)) + body
            + struct.pack("<I", zlib.crc32(body)))


def unpack(data: bytes) -> Archive:
    """Parse and verify an archive; raises ArchiveError saying what is wrong."""
    if data[:4] != MAGIC[:len(data[:4])] or not data:
        raise ArchiveError("not an acnzip archive (bad magic number)")
    if len(data) < FIXED_BYTES + 4:
        raise ArchiveError(f"archive is truncated ({len(data)} bytes)")
    magic, version, flags, lh, ln, lm, lp = _FIXED.unpack_from(data)
    if struct.unpack_from("<I", data, _FIXED.size)[0] != zlib.crc32(data[:_FIXED.size]):
        raise ArchiveError("archive header is corrupt (CRC mismatch)")
    if version != FORMAT_VERSION:
        raise ArchiveError(f"archive format version {version} is not supported "
                           f"(this acnzip reads version {FORMAT_VERSION})")
    if flags & ~_KNOWN_FLAGS:
        raise ArchiveError(f"archive uses unknown flags 0x{flags:04x} (reserved bits set)")
    end = FIXED_BYTES + lh + ln + lm + lp
    if len(data) != end + 4:
        raise ArchiveError(f"archive is truncated or has trailing bytes "
                           f"({len(data)} bytes, expected {end + 4})")
    body = data[FIXED_BYTES:end]
    if struct.unpack_from("<I", data, end)[0] != zlib.crc32(body):
        raise ArchiveError("archive data is corrupt (CRC mismatch)")
    if bool(flags & FLAG_MODEL_EMBEDDED) != (lm > 0) or lp % 4:
        raise ArchiveError("archive sections are inconsistent with its flags")
    header = _parse_header(body[:lh])
    names, model, payload = body[lh:lh + ln], body[lh + ln:lh + ln + lm], body[lh + ln + lm:]
    return Archive(header, payload, names, model, bool(flags & FLAG_ORDER_KEPT))


def _parse_header(raw: bytes) -> dict:
    """Inflate and parse the JSON header; ArchiveError if it is not exactly that."""
    inflate = zlib.decompressobj()
    try:
        text = inflate.decompress(raw, MAX_HEADER_JSON)
        if not inflate.eof or inflate.unconsumed_tail or inflate.unused_data:
            raise ArchiveError("archive header is not one complete zlib stream")
        header = json.loads(text.decode())
    except zlib.error as exc:
        raise ArchiveError(f"archive header is not valid zlib data: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"archive header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ArchiveError("archive header is not a JSON object")
    return header


def write_archive(path: Path, archive: Archive) -> int:
    """Write atomically; returns the number of bytes written."""
    data = pack(archive)
    atomic_write_bytes(Path(path), data)
    return len(data)


def read_archive(path: Path) -> Archive:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror}") from None
    return unpack(data)
