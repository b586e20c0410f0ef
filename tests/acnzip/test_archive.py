"""The container rejects every kind of damage with a clear ArchiveError."""
import json
import struct
import zlib

import pytest

from acnzip.archive import Archive, ArchiveError, pack, read_archive, unpack, write_archive
from acnzip.atomic import OutputExistsError, atomic_directory, check_output

ARCHIVE = Archive(header={"n_images": 3, "shape": [28, 28, 1]}, payload=b"\x01\x00\x00\x00" * 5,
                  names=b"names", model=b"", order_kept=True)


def test_pack_unpack_roundtrip():
    back = unpack(pack(ARCHIVE))
    assert back == ARCHIVE and back.flags == 0b10


def test_layout_is_as_documented():
    data = pack(ARCHIVE)
    assert data[:4] == b"\x89ACZ"
    assert struct.unpack_from("<HH", data, 4) == (1, 0b10)
    assert struct.unpack_from("<Q", data, 24)[0] == 20


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:-1], "truncated"),
    (lambda d: d[:50], "truncated"),
    (lambda d: d + b"\x00", "trailing"),
    (lambda d: b"PK\x03\x04" + d[4:], "magic"),
    (lambda d: d[:40] + bytes([d[40] ^ 1]) + d[41:], "corrupt"),
    (lambda d: d[:-5] + bytes([d[-5] ^ 0x80]) + d[-4:], "corrupt"),
    (lambda d: d[:9] + bytes([d[9] ^ 1]) + d[10:], "corrupt"),
    (lambda d: b"", "magic"),
])
def test_damaged_archives_are_rejected(damage, message):
    with pytest.raises(ArchiveError, match=message):
        unpack(damage(pack(ARCHIVE)))


def _refix(data: bytearray) -> bytes:
    struct.pack_into("<I", data, 32, zlib.crc32(bytes(data[:32])))
    return bytes(data)


def test_unknown_version_and_reserved_flags_are_rejected():
    d = bytearray(pack(ARCHIVE))
    struct.pack_into("<H", d, 4, 2)
    with pytest.raises(ArchiveError, match="version 2 is not supported"):
        unpack(_refix(d))
    d = bytearray(pack(ARCHIVE))
    struct.pack_into("<H", d, 6, 0b110)
    with pytest.raises(ArchiveError, match="reserved"):
        unpack(_refix(d))


def test_write_is_atomic_and_refuses_existing_output(tmp_path):
    out = tmp_path / "x.acn"
    write_archive(out, ARCHIVE)
    assert read_archive(out) == ARCHIVE
    with pytest.raises(OutputExistsError, match="-f"):
        check_output(out, force=False)
    assert [p.name for p in tmp_path.iterdir()] == ["x.acn"]


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "out") as d:
            (d / "a.png").write_bytes(b"x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(tmp_path / "out") as d:
        (d / "a.png").write_bytes(b"x")
    assert (tmp_path / "out" / "a.png").read_bytes() == b"x"


def _with_raw_header(raw: bytes) -> bytes:
    """A well-formed container (lengths and CRCs right) whose header section is `raw`."""
    body = raw + ARCHIVE.names + ARCHIVE.payload
    fixed = struct.pack("<4sHHIIQQ", b"\x89ACZ", 1, 0b10, len(raw), len(ARCHIVE.names), 0,
                        len(ARCHIVE.payload))
    return (fixed + struct.pack("<I", zlib.crc32(fixed)) + body
            + struct.pack("<I", zlib.crc32(body)))


@pytest.mark.parametrize("raw, message", [
    (b'{"n_images": 3}', "not valid zlib"),
    (zlib.compress(b"[1, 2]"), "not a JSON object"),
    (zlib.compress(b"{nope"), "not valid JSON"),
    (zlib.compress(b"{}")[:-2], "not one complete zlib stream"),
    (zlib.compress(b" " * (1 << 24) + b"{}", 9), "not one complete zlib stream"),
])
def test_headers_that_are_not_deflated_json_objects_are_rejected(raw, message):
    with pytest.raises(ArchiveError, match=message):
        unpack(_with_raw_header(raw))


def test_header_is_deflated_json():
    data = pack(ARCHIVE)
    lh = struct.unpack_from("<I", data, 8)[0]
    assert json.loads(zlib.decompress(data[36:36 + lh])) == ARCHIVE.header
