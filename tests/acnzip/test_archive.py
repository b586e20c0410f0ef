"""The container and its header schema reject every kind of damage with a one-line
ArchiveError, before any work; outputs never touch what acnzip did not write."""
import copy
import json
import lzma
import struct
import zlib

import numpy as np
import pytest

from acnzip.archive import (Archive, ArchiveError, FORMAT_VERSION, LIMITS, check_header, pack, pack_files,
                            pack_names, read_archive, section_sizes, unpack, unpack_files,
                            unpack_names, write_archive)
from acnzip.atomic import (OutputExistsError, atomic_directory, check_output, write_folder)


def valid_header(n=3, **changes) -> dict:
    h = {"acnzip_version": "0.1.0", "n_images": n, "shape_chw": [1, 28, 28], "binary": True,
         "binary_value": 255, "mode": "L", "source": {"kind": "folder"}, "order": "keep",
         "batch": 256, "neighbours": 16, "base_weight": 0.0625, "seed_words": 40, "seed": 0,
         "grid": {"width": 0.015625, "range": 24.0}, "threads": 1, "model_sha256": "ab" * 32,
         "model_name": "binarized-mnist.pt", "fingerprint": "cd" * 16,
         "versions": {"torch": "2.13.0+cpu", "numpy": "2.4.6"},
         "other_files": {"count": 0, "bytes": 0}}
    h.update(changes)
    return h


def tour_header(n=3, **changes) -> dict:
    """An --order tour header: chains along the tour instead of batches."""
    h = valid_header(n, order="tour", chain_lengths=[n])
    for key in ("batch", "neighbours", "base_weight"):
        del h[key]
    h.update(changes)
    return h


NAMES = pack_names(["a.png", "b/c.png", "d.png"])
ARCHIVE = Archive(header=valid_header(), payload=b"\x01\x00\x00\x00" * 5, names=NAMES,
                  model=b"", order_kept=True)


def test_pack_unpack_roundtrip_and_sizes_add_up():
    data = pack(ARCHIVE)
    back = unpack(data)
    assert back == ARCHIVE and back.flags == 0b10
    sizes = section_sizes(ARCHIVE)
    assert sizes["archive_bytes"] == len(data) == sum(v for k, v in sizes.items()
                                                      if k != "archive_bytes")


def test_layout_is_as_documented():
    data = pack(ARCHIVE)
    assert data[:4] == b"\x89ACZ"
    assert struct.unpack_from("<HH", data, 4) == (4, 0b10)      # no PixelCNN levels: version 4
    lh, ln, lf, lm, lp = struct.unpack_from("<IIQQQ", data, 8)
    assert (ln, lf, lm, lp) == (len(NAMES), 0, 0, 20) and len(data) == 44 + lh + ln + lp + 4
    assert struct.unpack_from("<I", data, 40)[0] == zlib.crc32(data[:40])
    assert json.loads(zlib.decompress(data[44:44 + lh])) == ARCHIVE.header


def test_version_1_containers_are_still_read():
    header = zlib.compress(json.dumps(valid_header(chain_lengths=[3])).encode())
    body = header + NAMES + ARCHIVE.payload
    fixed = struct.pack("<4sHHIIQQ", b"\x89ACZ", 1, 0b10, len(header), len(NAMES), 0, 20)
    data = fixed + struct.pack("<I", zlib.crc32(fixed)) + body + struct.pack("<I", zlib.crc32(body))
    back = unpack(data)
    assert back.version == 1 and back.payload == ARCHIVE.payload and back.names == NAMES


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:-1], "truncated"),
    (lambda d: d[:50], "truncated"),
    (lambda d: d[:5], "truncated"),
    (lambda d: d + b"\x00", "trailing"),
    (lambda d: b"PK\x03\x04" + d[4:], "magic"),
    (lambda d: d[:50] + bytes([d[50] ^ 1]) + d[51:], "corrupt"),
    (lambda d: d[:-5] + bytes([d[-5] ^ 0x80]) + d[-4:], "corrupt"),
    (lambda d: d[:9] + bytes([d[9] ^ 1]) + d[10:], "corrupt"),
    (lambda d: b"", "magic"),
])
def test_damaged_archives_are_rejected(damage, message):
    with pytest.raises(ArchiveError, match=message):
        unpack(damage(pack(ARCHIVE)))


def _refix(data: bytearray) -> bytes:
    struct.pack_into("<I", data, 40, zlib.crc32(bytes(data[:40])))
    return bytes(data)


def test_unknown_version_and_reserved_flags_are_rejected():
    d = bytearray(pack(ARCHIVE))
    struct.pack_into("<H", d, 4, FORMAT_VERSION + 1)
    with pytest.raises(ArchiveError, match=f"version {FORMAT_VERSION + 1} is not supported"):
        unpack(_refix(d))
    d = bytearray(pack(ARCHIVE))
    struct.pack_into("<H", d, 6, 0b110)
    with pytest.raises(ArchiveError, match="reserved"):
        unpack(_refix(d))


def _with_header(header=None, raw: bytes | None = None, names=NAMES, files=b"",
                 version: int = 3, flags: int = 0b10) -> bytes:
    """A well-formed container (lengths and CRCs right) with this header."""
    raw = raw if raw is not None else zlib.compress(json.dumps(header).encode())
    payload = ARCHIVE.payload
    body = raw + names + files + payload
    fixed = struct.pack("<4sHHIIQQQ", b"\x89ACZ", version, flags, len(raw), len(names), len(files),
                        0, len(payload))
    return (fixed + struct.pack("<I", zlib.crc32(fixed)) + body
            + struct.pack("<I", zlib.crc32(body)))


@pytest.mark.parametrize("raw, message", [
    (b'{"n_images": 3}', "not valid zlib"),
    (zlib.compress(b"[1, 2]"), "not a JSON object"),
    (zlib.compress(b"{nope"), "not valid JSON"),
    (zlib.compress(b"{}")[:-2], "not one complete zlib stream"),
    (zlib.compress(b" " * (1 << 24) + b"{}", 9), "more than 16 MiB of JSON"),
    (zlib.compress(b"[" * 200_000 + b"]" * 200_000), "not valid JSON"),
    (zlib.compress(b'{"n_images": ' + b"9" * 5000 + b"}"), "not valid JSON"),
    (zlib.compress(b"{}"), "archive header:"),
])
def test_headers_that_are_not_deflated_json_objects_are_rejected(raw, message):
    with pytest.raises(ArchiveError, match=message):
        unpack(_with_header(raw=raw))


BAD_FIELDS = [
    ("n_images", True, "n_images"), ("n_images", 0, "n_images"), ("n_images", "3", "n_images"),
    ("n_images", 10 ** 12, "n_images"), ("n_images", 3.0, "n_images"),
    ("shape_chw", [1, 28], "shape_chw"), ("shape_chw", [5, 28, 28], "shape_chw"),
    ("shape_chw", [1, 10 ** 6, 28], "shape_chw"), ("shape_chw", None, "shape_chw"),
    ("binary", 1, "binary"), ("binary_value", 7, "binary_value"),
    ("binary_value", True, "binary_value"), ("binary_value", 1.0, "binary_value"),
    ("mode", "RGB", "mode"), ("mode", 5, "mode"),
    ("source", {"kind": "npy", "file": "../x.npy", "key": None, "ndim": 3}, "source.file"),
    ("source", {"kind": "npz", "file": "x.npz", "key": "", "ndim": 3}, "source.key"),
    ("source", {"kind": "npz", "file": "x.npz", "ndim": 3}, "source.key"),
    ("source", {"kind": "npy", "file": "x.npy", "key": None, "ndim": 5}, "source.ndim"),
    ("source", {"kind": "tar"}, "source"), ("source", [], "source"),
    ("order", "set", "order and flags"), ("order", ["keep"], "order"),
    ("batch", 0, "batch"), ("batch", 10 ** 6, "batch"), ("batch", True, "batch"),
    ("neighbours", 0, "neighbours"), ("neighbours", 1.5, "neighbours"),
    ("base_weight", 1.0, "base_weight"), ("base_weight", -0.1, "base_weight"),
    ("base_weight", "0.5", "base_weight"), ("base_weight", None, "base_weight"),
    ("seed_words", 10 ** 9, "seed_words"), ("seed_words", -1, "seed_words"),
    ("seed", -1, "seed"), ("threads", 0, "threads"), ("threads", 10 ** 6, "threads"),
    ("grid", {"width": 0, "range": 8}, "grid"), ("grid", {"width": 1e-9, "range": 8}, "grid"),
    ("grid", {"width": 0.1, "range": 1e9}, "grid"), ("grid", {"width": 1 / 64, "range": 129}, "grid"),
    ("grid", {"width": "x", "range": 8}, "grid"),
    ("grid", {"width": 0.1}, "grid"),
    ("model_sha256", "xyz", "model_sha256"), ("model_sha256", "AB" * 32, "model_sha256"),
    ("model_name", "../m.pt", "model_name"), ("model_name", 3, "model_name"),
    ("fingerprint", "cd" * 17, "fingerprint"), ("versions", {"torch": 2}, "versions"),
    ("versions", "torch", "versions"), ("acnzip_version", "x" * 10_000, "acnzip_version"),
    ("other_files", {"count": 1, "bytes": 0}, "other_files"),
    ("other_files", {"count": -1, "bytes": 0}, "count"),
    ("other_files", {"count": 0, "bytes": 1 << 40}, "bytes"),
    ("other_files", [], "other_files"),
]


@pytest.mark.parametrize("key, value, message", BAD_FIELDS)
def test_every_header_field_is_checked(key, value, message):
    with pytest.raises(ArchiveError, match=message) as err:
        unpack(_with_header(valid_header(**{key: value})))
    assert "\n" not in str(err.value)


def _portable_header(**portable) -> dict:
    h = valid_header(portable={"scales": {"enc1": 0.5, "v0": 0.25}, **portable})
    del h["fingerprint"]
    return h


@pytest.mark.parametrize("levels, version, message", [
    (511, 5, None), (127, 5, None), (2047, 5, None), (126, 5, "levels must be an integer"),
    (2048, 5, "levels must be an integer"), (511.0, 5, "levels must be an integer"),
    (True, 5, "levels must be an integer"), ("511", 5, "levels must be an integer"),
    (511, 4, "levels need format version 5")])
def test_portable_pixelcnn_levels_are_checked(levels, version, message):
    """Version 5 records the PixelCNN's activation levels of portable archives; a crafted
    value (out of range, not an integer, in an older container) is refused in one line."""
    data = _with_header(_portable_header(levels=levels), version=version)
    if message is None:
        assert unpack(data).header["portable"]["levels"] == levels
    else:
        with pytest.raises(ArchiveError, match=message) as err:
            unpack(data)
        assert "\n" not in str(err.value)


def test_archives_are_written_as_the_lowest_version_that_describes_them():
    """Archives whose GMM codes its component with bits back need version 9, whose networks
    record weight levels or a table step version 8, whose q(z|x) is coded on a window version
    6, those that record PixelCNN levels (only) version 5; the others keep version 4's
    bytes, so older readers still decode them."""
    plain = Archive(_portable_header(), ARCHIVE.payload, NAMES)
    wide = Archive(_portable_header(levels=511), ARCHIVE.payload, NAMES)
    windowed = Archive({**_portable_header(levels=511), "posterior_window": 8.0},
                       ARCHIVE.payload, NAMES)
    finer = [Archive({**_portable_header(levels=511, **fine), "posterior_window": 8.0},
                     ARCHIVE.payload, NAMES)
             for fine in ({"weight_levels": 511}, {"table_step": 256},
                          {"weight_levels": 511, "table_step": 256})]
    bits_back = Archive({**_portable_header(), "posterior_window": 8.0,
                         "base_coding": "bits-back"}, ARCHIVE.payload, NAMES)
    fitted = [Archive({**_portable_header(levels=1023, weight_levels=2047, **fit),
                       "posterior_window": 8.0, "base_coding": "bits-back"},
                      ARCHIVE.payload, NAMES)
              for fit in ({"fit_weights": True}, {"gate_levels": 511},
                          {"fit_weights": True, "gate_levels": 511, "table_step": 1024})]
    assert [unpack(pack(a)).version for a in (plain, wide, windowed, *finer, bits_back,
                                              *fitted)] == [4, 5, 6, 8, 8, 8, 9, 10, 10, 10]
    assert struct.unpack_from("<H", pack(bits_back), 4)[0] == 9
    assert struct.unpack_from("<H", pack(fitted[0]), 4)[0] == 10 == FORMAT_VERSION


@pytest.mark.parametrize("value, version, portable, message", [
    ("bits-back", 9, True, None), ("bits-back", 8, True, "in a portable archive of format version 9"),
    ("dims", 9, True, "'base_coding' must be \"bits-back\""), (True, 9, True, "'base_coding' must be"),
    (["bits-back"], 9, True, "'base_coding' must be"),
    ("bits-back", 9, False, "in a portable archive")])
def test_base_coding_is_checked(value, version, portable, message):
    """Version 9 records that the GMM p(z) codes its component with bits back; a crafted value
    (another coding, another type, an older container, a float archive) is refused in one
    line before anything is decoded."""
    h = {**_portable_header(), "base_coding": value} if portable else \
        valid_header(base_coding=value)
    data = _with_header(h, version=version)
    if message is None:
        assert unpack(data).header["base_coding"] == value
    else:
        with pytest.raises(ArchiveError, match=message) as err:
            unpack(data)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("key, value, version, message", [
    ("weight_levels", 511, 8, None), ("weight_levels", 127, 8, None),
    ("weight_levels", 2047, 8, None), ("weight_levels", 126, 8, "weight_levels must be an integer"),
    ("weight_levels", 2048, 8, "weight_levels must be an integer"),
    ("weight_levels", 511.0, 8, "weight_levels must be an integer"),
    ("weight_levels", True, 8, "weight_levels must be an integer"),
    ("weight_levels", 511, 7, "weight_levels need format version 8"),
    ("table_step", 256, 8, None), ("table_step", 64, 8, None), ("table_step", 1024, 8, None),
    ("table_step", 63, 8, "table_step must be an integer in \\[64, 1024\\]"),
    ("table_step", 1025, 8, "table_step must be an integer"),
    ("table_step", 1 << 40, 8, "table_step must be an integer"),
    ("table_step", "256", 8, "table_step must be an integer"),
    ("table_step", 256, 6, "table_step need format version 8"),
    ("tables", 256, 8, "'portable' must be"),
    ("gate_levels", 511, 10, None), ("gate_levels", 127, 10, None), ("gate_levels", 2047, 10, None),
    ("gate_levels", 126, 10, "gate_levels must be an integer in \\[127, 2047\\]"),
    ("gate_levels", 2048, 10, "gate_levels must be an integer"),
    ("gate_levels", 511.5, 10, "gate_levels must be an integer"),
    ("gate_levels", False, 10, "gate_levels must be an integer"),
    ("gate_levels", 511, 9, "gate_levels need format version 10"),
    ("fit_weights", True, 10, None),
    ("fit_weights", False, 10, "fit_weights must be true"),
    ("fit_weights", 1, 10, "fit_weights must be true"),
    ("fit_weights", "true", 10, "fit_weights must be true"),
    ("fit_weights", True, 9, "fit_weights need format version 10")])
def test_portable_weight_levels_and_table_step_are_checked(key, value, version, message):
    """Version 8 records the weights' levels and the tables' step of portable archives, version
    10 the gates' levels and whether the weights' levels are fitted; a crafted value (out of
    range, not an integer or not true, in an older container, an unknown key) is refused in
    one line before any table is built."""
    data = _with_header(_portable_header(levels=511, **{key: value}), version=version)
    if message is None:
        assert unpack(data).header["portable"][key] == value
    else:
        with pytest.raises(ArchiveError, match=message) as err:
            unpack(data)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("window, version, order, message", [
    (8.0, 6, "keep", None), (8, 6, "set", None), (0.015625, 6, "keep", None),
    (24.0, 6, "keep", None), (0.01, 6, "keep", "posterior_window' must be a number"),
    (24.5, 6, "keep", "posterior_window' must be a number"),
    ("8", 6, "keep", "posterior_window' must be a number"),
    (True, 6, "keep", "posterior_window' must be a number"),
    (8.0, 5, "keep", "needs format version 6"), (8.0, 6, "tour", None), (8.0, 5, "tour", "needs format version 6")])
def test_posterior_window_is_checked(window, version, order, message):
    """Version 6 records the window q(z|x) is coded on; a crafted one (out of the grid, not a
    number, in an older container) is refused in one line."""
    h = valid_header(posterior_window=window) if order != "tour" else \
        tour_header(posterior_window=window)
    if order == "set":
        h["order"] = "set"
    keep = order == "keep"
    data = _with_header(h, names=NAMES if keep else b"", version=version, flags=0b10 * keep)
    if message is None:
        assert unpack(data).header["posterior_window"] == window
    else:
        with pytest.raises(ArchiveError, match=message) as err:
            unpack(data)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("lengths", [[2, 2], [1, 2], [3.0], [1] * 3 + [0], "3", None])
def test_tour_chain_lengths_are_checked(lengths):
    """--order tour (and version-2 keep) headers carry chain lengths instead of batches."""
    unpack(_with_header(tour_header(), names=b"", flags=0))            # the valid one
    with pytest.raises(ArchiveError, match="chain lengths"):
        unpack(_with_header(tour_header(chain_lengths=lengths), names=b"", flags=0))
    with pytest.raises(ArchiveError, match="chain lengths"):                # v2 keep: chains
        unpack(_with_header(valid_header(chain_lengths=lengths), version=2))
    unpack(_with_header(valid_header(chain_lengths=[3]), version=2))


def test_missing_fields_and_memory_budget_are_refused():
    for key in valid_header():
        h = valid_header()
        del h[key]
        if key == "other_files":          # optional (version 1 archives have none)
            continue
        with pytest.raises(ArchiveError, match="archive header"):
            unpack(_with_header(h))
    h = valid_header(n=10 ** 6, shape_chw=[4, 4096, 4096])
    with pytest.raises(ArchiveError, match="memory budget"):
        unpack(_with_header(h))


def test_names_section_is_checked_and_capped():
    assert unpack_names(NAMES, 3) == ["a.png", "b/c.png", "d.png"]
    for names, message in [
            (b"not xz", "damaged|not valid xz"),
            (lzma.compress(b"a\nb"), "wrong count"),
            (lzma.compress(b"a\n../b\nc"), "unsafe"),
            (lzma.compress(b"a\nb\x00\nc"), "unsafe"),
            (lzma.compress(b"a\n\xff\nc"), "not UTF-8"),
            (lzma.compress(b"a\na\nc"), "wrong count"),
            (lzma.compress(b"a" * 20_000 + b"\nb\nc"), "damaged"),          # over the cap
            (lzma.compress(b"x" * 50_000_000), "damaged"),                   # a bomb
            (NAMES + b"junk", "damaged|not valid xz")]:
        with pytest.raises(ArchiveError, match=message):
            unpack_names(names, 3)
    with pytest.raises(ArchiveError, match="unsafe"):
        unpack_names(pack_names(["a", "/etc/passwd", "c"]), 3)


def test_other_files_roundtrip_and_damage():
    files = [(".DS_Store", b"\x00\x01"), ("empty", b""), ("deep/er/notes.txt", "ü".encode()),
             (".hidden/labels.csv", b"1,2\n" * 1000)]
    total = sum(len(c) for _, c in files)
    assert unpack_files(pack_files(files), 4, total) == files
    data = pack_files(files)
    assert len(data) < total                                             # compressed
    with pytest.raises(ArchiveError, match="sizes disagree"):
        unpack_files(data, 4, total - 1)
    with pytest.raises(ArchiveError, match="overruns|damaged"):
        unpack_files(data, 5, total)
    for bad, message in [([("a", b"1"), ("a", b"2")], "twice"),
                         ([("a", b"1"), ("a/b", b"2")], "both a file and a folder"),
                         ([("../a", b"1")], "unsafe"), ([("/a", b"1")], "unsafe")]:
        with pytest.raises(ArchiveError, match=message):
            unpack_files(pack_files(bad), len(bad), sum(len(c) for _, c in bad))
    with pytest.raises(ArchiveError, match="damaged"):                   # a bomb
        unpack_files(lzma.compress(b"\x00" * 10_000_000), 1, 10)


def test_read_archive_refuses_non_files_without_reading_them(tmp_path):
    with pytest.raises(ArchiveError, match="not a regular file"):
        read_archive("/dev/zero")
    with pytest.raises(ArchiveError, match="folder"):
        read_archive(tmp_path)
    with pytest.raises(ArchiveError, match="cannot read"):
        read_archive(tmp_path / "missing.acn")


def test_write_is_atomic_and_refuses_existing_output(tmp_path):
    out = tmp_path / "x.acn"
    write_archive(out, ARCHIVE)
    assert read_archive(out) == ARCHIVE
    with pytest.raises(OutputExistsError, match="-f"):
        check_output(out, force=False)
    with pytest.raises(OutputExistsError, match="is a folder"):
        check_output(tmp_path, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["x.acn"]


def _writer(content: bytes):
    return lambda path: path.write_bytes(content)


def test_write_folder_creates_a_new_folder_whole(tmp_path):
    with pytest.raises(RuntimeError):
        write_folder(tmp_path / "out", [("a.png", _writer(b"x")),
                                        ("b.png", lambda p: (_ for _ in ()).throw(RuntimeError()))])
    assert list(tmp_path.iterdir()) == []
    write_folder(tmp_path / "out", [("a.png", _writer(b"x")), ("s/b", _writer(b"y"))])
    assert (tmp_path / "out" / "a.png").read_bytes() == b"x"
    assert (tmp_path / "out" / "s" / "b").read_bytes() == b"y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_folder_into_an_existing_folder_keeps_everything_else(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "mine.txt").write_bytes(b"mine")
    (out / "sub" / "keep.png").write_bytes(b"keep")
    (out / "a.png").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="not empty"):
        write_folder(out, [("a.png", _writer(b"new"))])
    assert (out / "a.png").read_bytes() == b"old"
    write_folder(out, [("a.png", _writer(b"new")), ("sub/b.png", _writer(b"b"))], force=True)
    assert (out / "a.png").read_bytes() == b"new" and (out / "mine.txt").read_bytes() == b"mine"
    assert (out / "sub" / "keep.png").read_bytes() == b"keep"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == \
        ["a.png", "mine.txt", "sub", "sub/b.png", "sub/keep.png"]
    # A folder where a file goes (or a file where a folder goes) is refused before writing.
    with pytest.raises(OutputExistsError, match="is a folder"):
        write_folder(out, [("sub", _writer(b"x"))], force=True)
    with pytest.raises(OutputExistsError, match="is a file"):
        write_folder(out, [("mine.txt/x", _writer(b"x"))], force=True)
    assert (out / "mine.txt").read_bytes() == b"mine"
    # An empty existing folder takes the outputs without -f; so does the current folder.
    (tmp_path / "empty").mkdir()
    write_folder(tmp_path / "empty", [("a", _writer(b"1"))])
    assert [p.name for p in (tmp_path / "empty").iterdir()] == ["a"]
    with pytest.raises(OutputExistsError, match="not a folder"):
        write_folder(out / "mine.txt", [("a", _writer(b"1"))], force=True)


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "out") as d:
            (d / "a.png").write_bytes(b"x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(tmp_path / "out") as d:
        (d / "a.png").write_bytes(b"x")
    assert (tmp_path / "out" / "a.png").read_bytes() == b"x"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_compress_refuses_what_decompress_would_refuse(tmp_path, monkeypatch):
    """compress runs the reader's own schema on the header it is about to write: data beyond
    a reader's limits is refused before anything is written."""
    from acnzip import api
    from .conftest import make_model_file
    model = make_model_file(tmp_path / "m.pt")
    np.save(tmp_path / "d.npy", np.zeros((3, 28, 28), np.uint8))
    monkeypatch.setattr(LIMITS, "max_images", 2)
    with pytest.raises(api.CompressError, match="cannot store this data: .*n_images"):
        api.compress(tmp_path / "d.npy", tmp_path / "a.acn", model=model, quiet=True)
    assert not (tmp_path / "a.acn").exists()
    check_header(copy.deepcopy(valid_header(n=2)), ARCHIVE)      # within the limits: fine
