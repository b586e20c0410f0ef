"""Whether a PNG file is whole: the strict check a PNG must pass before its pixels are coded.

Pillow decodes some damaged PNGs without a word: an image data stream that ends rows early
comes back with the missing rows zero, a chunk with a wrong CRC is read as if it were right,
bytes after the IEND chunk are ignored. Coding such pixels would give back a different file
that looks fine, so data.py keeps any PNG that fails `png_is_whole` byte for byte instead.

A whole PNG (ISO/IEC 15948): the signature; chunks whose lengths fit the file and whose CRCs
match; IHDR first, with a valid size, bit depth, colour type and methods; no critical chunk
but IHDR, PLTE, IDAT and IEND; the IDAT chunks consecutive; IEND last, with nothing after it;
the IDAT data one complete zlib stream that inflates to exactly the scanlines the header
implies (Adam7 passes too), each starting with a filter type 0-4.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["png_is_whole", "SIGNATURE"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7: (first column, first row, column step, row step) of each pass
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


def _scanlines(width: int, height: int, bits_per_pixel: int, interlace: int
               ) -> list[tuple[int, int]]:
    """(rows, bytes per row without the filter byte) of each (sub-)image, empty passes left out."""
    if not interlace:
        sizes = [(width, height)]
    else:
        sizes = [(-(-(width - x0) // dx), -(-(height - y0) // dy)) for x0, y0, dx, dy in _ADAM7]
    return [(h, -(-w * bits_per_pixel // 8)) for w, h in sizes if w > 0 and h > 0]


def png_is_whole(data: bytes) -> bool:
    """True if `data` is a whole PNG file (see the module docstring), False otherwise. Memory:
    the file and its inflated scanlines (what decoding it takes anyway), never more."""
    if not data.startswith(SIGNATURE):
        return False
    pos, prev, ihdr, idat = len(SIGNATURE), None, None, []     # prev: the last chunk's type
    while pos < len(data):
        if prev == b"IEND" or pos + 12 > len(data):
            return False                                 # bytes after IEND, or a cut chunk
        length, kind = struct.unpack_from(">I4s", data, pos)
        if length > 0x7FFFFFFF or pos + 12 + length > len(data):
            return False
        body = data[pos + 8:pos + 8 + length]
        crc, = struct.unpack_from(">I", data, pos + 8 + length)
        if not kind.isalpha() or zlib.crc32(kind + body) != crc:
            return False
        if (prev is None) != (kind == b"IHDR"):          # IHDR first, and only first
            return False
        if kind[0] < 0x61 and kind not in _CRITICAL:    # an unknown critical chunk
            return False
        if kind == b"IHDR":
            if length != 13:
                return False
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            if idat and prev != b"IDAT":
                return False                             # IDAT chunks must be consecutive
            idat.append(body)
        prev, pos = kind, pos + 12 + length
    if prev != b"IEND" or not idat:                      # (IHDR came first: prev was set)
        return False
    width, height, depth, colour, compression, filtering, interlace = ihdr
    if not (0 < width <= 0x7FFFFFFF and 0 < height <= 0x7FFFFFFF) or compression or filtering \
            or interlace > 1 or depth not in _DEPTHS.get(colour, ()):
        return False
    lines = _scanlines(width, height, _CHANNELS[colour] * depth, interlace)
    expected = sum(rows * (1 + size) for rows, size in lines)
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(b"".join(idat), expected + 1)
    except zlib.error:
        return False
    if len(raw) != expected or not inflate.eof or inflate.unused_data:
        return False
    buf, at = np.frombuffer(raw, np.uint8), 0
    for rows, size in lines:                             # every scanline's filter type
        if buf[at:at + rows * (1 + size):1 + size].max() > 4:    # passes hold rows
            return False
        at += rows * (1 + size)
    return True
