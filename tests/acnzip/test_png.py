"""png_is_whole: every PNG Pillow writes (and interlaced ones built here) passes; every kind of
damage Pillow reads without a word fails, and such a file in a folder comes back byte for byte
rather than as a repaired image. Data are generated here."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from acnzip import api
from acnzip.png import SIGNATURE, png_is_whole

from .test_safety import digits, files_of


def _chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _grey_png(img: np.ndarray, interlace: bool = False, raw_extra: bytes = b"",
              rows: int | None = None, filter_type: int = 0) -> bytes:
    """An 8-bit grey PNG of img (H, W) built by hand: Adam7 passes when `interlace`;
    `raw_extra` appended to the inflated scanlines, `rows` of the first image kept."""
    h, w = img.shape
    if interlace:
        passes = [img[y0::dy, x0::dx] for x0, y0, dx, dy in
                  ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                   (1, 0, 2, 2), (0, 1, 1, 2))]
    else:
        passes = [img[:rows]]
    raw = b"".join(bytes([filter_type]) + row.tobytes() for p in passes if p.size for row in p)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, int(interlace))
    return SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw + raw_extra)) \
        + _chunk(b"IEND", b"")


def _idat_span(data: bytes) -> tuple[int, int]:
    """Where the first chunk after IHDR (the IDAT of _grey_png) starts, and its data length."""
    at = len(SIGNATURE) + 25
    return at, struct.unpack_from(">I", data, at)[0]


def _pillow_png(img: np.ndarray, mode: str | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode=mode).save(buf, format="PNG", **kw)
    return buf.getvalue()


@pytest.mark.parametrize("shape, interlace", [((28, 28), False), ((28, 28), True),
                                              ((5, 3), True), ((1, 1), True), ((9, 13), True)])
def test_hand_built_pngs_are_whole_and_read_as_built(shape, interlace):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    data = _grey_png(img, interlace)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), img)
    assert png_is_whole(data)


def test_every_png_pillow_writes_is_whole():
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 256, (17, 23), dtype=np.uint8)
    cases = [_pillow_png(grey), _pillow_png(grey > 128), _pillow_png(grey, optimize=True),
             _pillow_png(grey, compress_level=0),
             _pillow_png(rng.integers(0, 256, (17, 23, 2), dtype=np.uint8), "LA"),
             _pillow_png(rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)),
             _pillow_png(rng.integers(0, 256, (17, 23, 4), dtype=np.uint8)),
             _pillow_png(rng.integers(0, 65536, (17, 23)).astype(np.uint16)),
             _pillow_png(grey // 64)]
    buf = io.BytesIO()
    Image.fromarray(grey).convert("P").save(buf, format="PNG")        # palette
    cases.append(buf.getvalue())
    for data in cases:
        assert png_is_whole(data)


def _damaged() -> dict:
    """Damaged PNGs of one 28x28 image that Pillow reads all the same (checked below)."""
    img = digits(1)[0] * 255
    good = _grey_png(img)
    ihdr_end, idat_len = _idat_span(good)
    crc_at = ihdr_end + 8 + idat_len
    bad_crc = bytearray(good)
    bad_crc[crc_at] ^= 1
    extra = _chunk(b"ABCD", b"x")                      # an unknown critical chunk
    return {"rows cut short": _grey_png(img, rows=20),
            "data running on": _grey_png(img, raw_extra=b"\0" * 29),
            "an IDAT CRC wrong": bytes(bad_crc),
            "bytes after IEND": good + b"garbage",
            "an unknown critical chunk": good[:ihdr_end] + extra + good[ihdr_end:],
            "no IEND": good[:-12]}


def test_damage_pillow_reads_silently_is_found():
    img = digits(1)[0] * 255
    for why, data in _damaged().items():
        Image.open(io.BytesIO(data)).load()            # Pillow takes them all
        assert not png_is_whole(data), why
    good = _grey_png(img)
    for cut in range(len(good)):                       # cut anywhere: never whole
        assert not png_is_whole(good[:cut]), cut
    ihdr_end, idat_len = _idat_span(good)              # two IDATs, then a text chunk between
    stream = good[ihdr_end + 8:ihdr_end + 8 + idat_len]
    head = good[:ihdr_end]
    two = head + _chunk(b"IDAT", stream[:40]) + _chunk(b"IDAT", stream[40:]) \
        + _chunk(b"IEND", b"")
    assert png_is_whole(two)
    apart = head + _chunk(b"IDAT", stream[:40]) + _chunk(b"tEXt", b"a\0b") \
        + _chunk(b"IDAT", stream[40:]) + _chunk(b"IEND", b"")
    assert not png_is_whole(apart)
    assert not png_is_whole(_grey_png(img, filter_type=5))
    assert not png_is_whole(b"not a png at all")


def test_a_damaged_png_in_a_folder_comes_back_byte_for_byte(tmp_path, binary_model):
    """The damaged files are kept as they are; the whole ones are the dataset's images."""
    src = tmp_path / "d"
    src.mkdir()
    for i, img in enumerate(digits(4)):
        (src / f"{i}.png").write_bytes(_grey_png(img * 255))
    damaged = _damaged()
    for j, data in enumerate(damaged.values()):
        (src / f"bad{j}.png").write_bytes(data)
    arc = tmp_path / "d.acn"
    r = api.compress(src, arc, model=binary_model, quiet=True)
    assert r["n_images"] == 4 and r["n_other_files"] == len(damaged)
    api.decompress(arc, tmp_path / "out", model=binary_model, quiet=True)
    back = files_of(tmp_path / "out")
    for j, data in enumerate(damaged.values()):
        assert back[f"bad{j}.png"] == data
    for i, img in enumerate(digits(4)):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"{i}.png")), img * 255)
