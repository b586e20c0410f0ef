"""Unusual inputs (session 17's review): what compress takes as an image, what it refuses
before coding, and outputs that would replace an input or escape the output folder. Every
case here was a defect: an archive that could not be restored, pixels cut to 8 bits, a
traceback, a hang, or a file replaced. Data are generated here."""
import hashlib
import io
import os
import struct
import subprocess
import sys
import resource
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from acnzip import api
from acnzip.archive import LIMITS, Archive, read_archive, write_archive
from acnzip.data import DataError, _values, load_folder
from acnzip.modelfile import ModelFileError, load_model

from .test_safety import _with_header, digits, files_of, run_cli


def _png(path: Path, img: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, **kw)
    return path


def _png16(path: Path, colour_type: int, channels: int, seed: int = 0) -> Path:
    """A 28x28 PNG of 16-bit samples (colour type 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA)."""
    h = w = 28
    data = np.random.default_rng(seed).integers(0, 1 << 16, (h, w * channels)).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in data)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I",
                                                                          zlib.crc32(kind + body))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def _binary_folder(root: Path, n: int = 4) -> Path:
    for i, img in enumerate(digits(n)):
        _png(root / f"{i}.png", img * 255)
    return root


# -- what is coded as an image, and what is kept byte for byte ----------------------------------
def test_images_whose_pixels_pillow_cuts_are_kept_byte_for_byte(tmp_path):
    """16-bit samples (Pillow reads RGB, RGBA, grey+alpha PNGs and 16-bit PPMs as 8-bit), a
    transparency key (PNG tRNS) and a BMP's fourth byte would be lost as pixels: those files
    are kept as they are; 8-bit and 1-bit images are still coded."""
    root = _binary_folder(tmp_path / "d")
    _png16(root / "rgb16.png", 2, 3)
    _png16(root / "rgba16.png", 6, 4, seed=1)
    _png16(root / "la16.png", 4, 2, seed=2)
    sixteen = np.random.default_rng(3).integers(0, 1 << 16, (28, 28, 3)).astype(">u2")
    (root / "rgb16.ppm").write_bytes(b"P6 28 28 65535\n" + sixteen.tobytes())
    _png(root / "keyed.png", digits(1, 5)[0] * 255, transparency=0)
    rgba = np.random.default_rng(4).integers(0, 256, (28, 28, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "alpha.bmp")       # 32-bit BMP, read as RGB
    ds = load_folder(root)
    kept = {name for name, _ in ds.other_files}
    assert kept == {"rgb16.png", "rgba16.png", "la16.png", "rgb16.ppm", "keyed.png",
                    "alpha.bmp"}
    assert ds.names == [f"{i}.png" for i in range(4)] and ds.mode == "L"
    assert all(content == (root / name).read_bytes() for name, content in ds.other_files)


def test_low_depth_and_maxval_images_are_still_coded(tmp_path):
    """1-bit PNG, 8-bit BMP/TIFF, a PGM of maxval 100 (scaled up by Pillow, one to one)."""
    img = digits(1)[0] * 255
    for name in ("a.png", "b.bmp", "c.tif"):
        _png(tmp_path / "d" / name, img)
    (tmp_path / "d" / "e.pgm").write_bytes(b"P5 28 28 100\n" + (img // 255 * 100).tobytes())
    ds = load_folder(tmp_path / "d")
    assert ds.names == ["a.png", "b.bmp", "c.tif", "e.pgm"] and not ds.other_files
    assert np.array_equal(ds.images[3, ..., 0], img)
    (tmp_path / "one").mkdir()
    Image.fromarray(img > 0).save(tmp_path / "one" / "one.png")
    assert load_folder(tmp_path / "one").mode == "1"


def test_a_tiff_pillow_fails_on_is_kept_not_a_traceback(tmp_path):
    """A second TIFF page without a width makes Pillow raise TypeError from n_frames."""
    root = _binary_folder(tmp_path / "d")
    b = io.BytesIO()
    Image.new("L", (28, 28)).save(b, "TIFF")
    d = bytearray(b.getvalue())
    ifd = struct.unpack_from("<I", d, 4)[0]
    nxt = ifd + 2 + 12 * struct.unpack_from("<H", d, ifd)[0]
    extra = len(d)
    d += struct.pack("<HHHII", 1, 305, 2, 1, 0) + struct.pack("<I", 0)
    struct.pack_into("<I", d, nxt, extra)
    (root / "bad.tif").write_bytes(bytes(d))
    ds = load_folder(root)
    assert dict(ds.other_files)["bad.tif"] == bytes(d) and len(ds.names) == 4


# -- folders decompress could not restore are refused at compress ------------------------------
def test_set_order_names_that_collide_with_kept_files_are_refused(tmp_path, binary_model):
    root = _binary_folder(tmp_path / "d")
    (root / "0.png").unlink()
    _png(root / "sub" / "x.png", digits(1, 9)[0] * 255)
    (root / "0.png").write_text("not an image")           # --order set restores 0.png
    for order, word in (("set", "'0.png'"), ("tour", "'0.png'")):
        code, text = run_cli("compress", root, "-o", tmp_path / "s.acn", "--order", order,
                             "--model", binary_model, "-q")
        assert code == 1 and word in text and "--order keep" in text, text
        assert not (tmp_path / "s.acn").exists()
    code, text = run_cli("compress", root, "-o", tmp_path / "k.acn", "--model", binary_model,
                         "-q")
    assert code == 0, text


def test_a_renamed_image_meeting_a_folder_is_refused(tmp_path, binary_model):
    root = _binary_folder(tmp_path / "d")
    _png(root / "x.bmp", digits(1, 7)[0] * 255)            # restored as x.png ...
    (root / "x.png").mkdir()                               # ... where a folder is
    (root / "x.png" / "readme.txt").write_text("hi")
    code, text = run_cli("compress", root, "-o", tmp_path / "a.acn", "--model", binary_model,
                         "-q")
    assert code == 1 and "'x.png' is both a file and a folder" in text, text
    assert not (tmp_path / "a.acn").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_what_a_folder_cannot_give_back_is_refused_not_skipped(tmp_path):
    root = _binary_folder(tmp_path / "d")
    (tmp_path / "elsewhere").mkdir()
    cases = [("link", lambda p: p.symlink_to(tmp_path / "elsewhere"), "a folder"),
             ("dangling", lambda p: p.symlink_to(tmp_path / "nothing"), "to nothing"),
             ("pipe", lambda p: os.mkfifo(p), "a FIFO")]
    for name, make, words in cases:
        make(root / name)
        with pytest.raises(DataError, match=words):
            load_folder(root)
        (root / name).unlink()
    (root / "file-link.png").symlink_to(root / "0.png")    # a link to a file: its content
    assert load_folder(root).names == ["0.png", "1.png", "2.png", "3.png", "file-link.png"]


def test_folder_pixels_have_the_memory_budget(tmp_path, monkeypatch):
    root = _binary_folder(tmp_path / "d", 4)
    monkeypatch.setattr(LIMITS, "max_pixel_bytes", 3 * 28 * 28)
    with pytest.raises(DataError, match="memory budget"):
        load_folder(root)


def test_value_histogram_does_not_widen_the_array():
    """np.bincount copies its input to int64: 8x the pixels, in slices it is bounded."""
    x = np.zeros(64 << 20, np.uint8)
    x[-1] = 255
    tracemalloc.start()
    try:
        assert _values(x) == {0, 255}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak


# -- arrays come back as they were --------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_bool_and_fortran_arrays_come_back_with_their_dtype_and_order(tmp_path, binary_model,
                                                                      suffix):
    for name, arr in (("b", digits(12).astype(bool)), ("f", np.asfortranarray(digits(12)))):
        src = tmp_path / f"{name}{suffix}"
        if suffix == ".npy":
            np.save(src, arr)
        else:
            np.savez(src, x=arr)
        api.compress(src, tmp_path / f"{name}.acn", model=binary_model, quiet=True)
        api.decompress(tmp_path / f"{name}.acn", tmp_path / f"out-{name}{suffix}",
                       model=binary_model, quiet=True)
        back = np.load(tmp_path / f"out-{name}{suffix}" / src.name)
        back = back if suffix == ".npy" else back["x"]
        assert back.dtype == arr.dtype and np.array_equal(back, arr)
        assert back.flags.f_contiguous == arr.flags.f_contiguous
        assert back.flags.c_contiguous == arr.flags.c_contiguous


def test_damaged_npz_files_are_one_line(tmp_path):
    good = io.BytesIO()
    np.savez_compressed(good, x=digits(30))
    data = bytearray(good.getvalue())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")

    def patched(offset: int, value) -> bytearray:           # in both headers of the member
        out = bytearray(data)
        for at in (local + offset, central + offset + 2):
            struct.pack_into("<H", out, at, value(struct.unpack_from("<H", out, at)[0]))
        return out
    cases = {"encrypted": patched(6, lambda v: v | 1),
             "method": patched(8, lambda v: 99)}           # an unknown compression method
    inflate = bytearray(data)
    start = 30 + struct.unpack_from("<H", data, 26)[0] + struct.unpack_from("<H", data, 28)[0]
    inflate[start + 40:start + 60] = b"\xff" * 20          # corrupted deflate data
    cases["inflate"] = inflate
    for name, blob in cases.items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(bytes(blob))
        code, text = run_cli("compress", path, "-o", tmp_path / f"{name}.acn", "-q")
        assert code == 1 and len(text.strip().splitlines()) == 1, (name, text)
        assert "Traceback" not in text and "cannot read" in text, (name, text)


# -- model files ------------------------------------------------------------------------------
def _model_blob(path) -> dict:
    return torch.load(path, weights_only=True)


def _bytes_of(blob: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.getvalue()


def test_crafted_model_files_are_refused_before_anything_is_built(binary_model):
    blob = _model_blob(binary_model)
    missing = dict(blob, weights=dict(list(blob["weights"].items())[1:]))
    unknown = dict(blob, model_config=dict(blob["model_config"], bogus=1))
    no_gmm = {k: v for k, v in blob.items() if k != "gmm"}
    huge = dict(blob, model_config=dict(blob["model_config"], pixelcnn_filters=200_000))
    deep = dict(blob, model_config=dict(blob["model_config"], pixelcnn_blocks=10 ** 9))
    gmm = dict(blob, gmm=dict(blob["gmm"], means=torch.zeros((2, 3), dtype=torch.float64)))
    far, flat = blob["gmm"]["means"].clone(), blob["gmm"]["variances"].clone()
    far[0, 0], flat[-1, -1] = 1e300, 1e-300      # finite, but log densities would overflow
    cases = [(missing, "weights do not match"), (unknown, "bogus"), (no_gmm, "no field 'gmm'"),
             (huge, "pixelcnn_filters must be"), (deep, "pixelcnn_blocks must be"),
             (gmm, "p\\(z\\) does not match"),
             (dict(blob, gmm=dict(blob["gmm"], means=far)), "means within \\+-1e\\+06"),
             (dict(blob, gmm=dict(blob["gmm"], variances=flat)), "variances in \\[1e-08")]
    for crafted, words in cases:
        with pytest.raises(ModelFileError, match=words):
            load_model(_bytes_of(crafted), name="crafted.pt")
    assert load_model(_bytes_of(blob)).config.latent_dim == blob["model_config"]["latent_dim"]


def test_an_embedded_crafted_model_is_one_line(tmp_path, binary_model):
    """The archive's header hash matches the crafted model, so only its checks stop it."""
    root = _binary_folder(tmp_path / "d")
    arc = tmp_path / "e.acn"
    api.compress(root, arc, model=binary_model, embed_model=True, quiet=True)
    blob = _model_blob(binary_model)
    crafted = _bytes_of(dict(blob, weights=dict(list(blob["weights"].items())[1:])))
    a = read_archive(arc)
    header = dict(a.header, model_sha256=hashlib.sha256(crafted).hexdigest())
    write_archive(tmp_path / "c.acn", Archive(header, a.payload, a.names, a.files, crafted,
                                              order_kept=True))
    code, text = run_cli("decompress", tmp_path / "c.acn", "-o", tmp_path / "out", "-q")
    assert code == 1 and "not a usable acnzip model" in text and "Traceback" not in text, text
    assert not (tmp_path / "out").exists()


def test_integer_activation_scales_in_a_header_are_one_line(tmp_path, binary_model):
    root = _binary_folder(tmp_path / "d")
    arc = tmp_path / "p.acn"
    api.compress(root, arc, model=binary_model, quiet=True)
    header = read_archive(arc).header
    scales = dict(header["portable"]["scales"])
    scales[sorted(scales)[0]] = 2 ** 64                     # an integer: no float conversion
    crafted = tmp_path / "s.acn"
    crafted.write_bytes(_with_header(arc.read_bytes(),
                                     dict(header, portable=dict(header["portable"],
                                                                scales=scales))))
    code, text = run_cli("decompress", crafted, "-o", tmp_path / "out", "--model",
                         binary_model, "-q")
    assert code == 1 and len(text.strip().splitlines()) == 1 and "Traceback" not in text, text
    assert not (tmp_path / "out").exists()


# -- outputs -------------------------------------------------------------------------------------
def test_report_on_the_archive_and_outputs_on_inputs_are_refused(tmp_path, binary_model):
    root = _binary_folder(tmp_path / "d")
    (root / "notes.txt").write_text("mine")
    arc = tmp_path / "a.acn"
    code, text = run_cli("compress", root, "-o", arc, "--report", arc, "--model", binary_model,
                         "-q")
    assert code == 1 and "--report must not be the archive" in text and not arc.exists()
    before = files_of(root)
    for args in (["-o", root / "0.png"], ["-o", root / "notes.txt"],
                 ["-o", arc, "--report", root / "notes.txt"]):
        code, text = run_cli("compress", root, *args, "--model", binary_model, "-q", "-f")
        assert code == 1 and "one of the files being compressed" in text, (args, text)
    assert files_of(root) == before and not arc.exists()
    npy = tmp_path / "x.npy"
    np.save(npy, digits(5))
    kept = npy.read_bytes()
    code, text = run_cli("compress", npy, "-o", npy, "--model", binary_model, "-q", "-f")
    assert code == 1 and "one of the files being compressed" in text and \
        npy.read_bytes() == kept


def test_outputs_in_missing_folders_and_dangling_links_fail_before_coding(tmp_path,
                                                                          binary_model):
    root = _binary_folder(tmp_path / "d")
    code, text = run_cli("compress", root, "-o", tmp_path / "a.acn", "--report",
                         tmp_path / "no" / "r.json", "--model", binary_model, "-q")
    assert code == 1 and "no such folder" in text and ".tmp" not in text, text
    assert not (tmp_path / "a.acn").exists()
    link = tmp_path / "link.acn"
    link.symlink_to(tmp_path / "nowhere")
    code, text = run_cli("compress", root, "-o", link, "--model", binary_model, "-q")
    assert code == 1 and "already exists" in text and link.is_symlink()


def test_decompress_never_writes_through_a_symlinked_folder(tmp_path, binary_model):
    root = tmp_path / "d"
    _png(root / "sub" / "b.png", digits(1)[0] * 255)
    _png(root / "a.png", digits(1, 1)[0] * 255)
    arc = tmp_path / "a.acn"
    api.compress(root, arc, model=binary_model, quiet=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "b.png").write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(outside)
    code, text = run_cli("decompress", arc, "-o", out, "--model", binary_model, "-q", "-f")
    assert code == 1 and "symbolic link" in text, text
    assert (outside / "b.png").read_bytes() == b"precious" and not (out / "a.png").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_given_as_input_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "in.acn"
    os.mkfifo(fifo)
    npy = tmp_path / "x.npy"
    os.mkfifo(npy)
    src = _binary_folder(tmp_path / "d")
    for args in (["info", fifo], ["decompress", fifo, "-o", tmp_path / "o"],
                 ["compress", npy, "-o", tmp_path / "c.acn"],
                 ["compress", src, "-o", tmp_path / "c.acn", "--model", fifo, "-q"]):
        r = subprocess.run([sys.executable, "-m", "acnzip", *map(str, args)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "FIFO" in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "c.acn").exists()


# -- crafted archives (session 17's archive fuzz) ------------------------------------------------
def _rewrite(src: Path, dst: Path, **changes) -> Path:
    """The archive src with some of its parts replaced (header, names, files, model), every
    length and CRC recomputed by the writer itself."""
    a = read_archive(src)
    parts = {"header": a.header, "payload": a.payload, "names": a.names, "files": a.files,
             "model": a.model, **changes}
    write_archive(dst, Archive(parts["header"], parts["payload"], parts["names"],
                               parts["files"], parts["model"],
                               order_kept=parts["header"]["order"] == "keep"))
    return dst


def _refused(*args) -> str:
    code, text = run_cli(*args)
    assert code == 1 and len(text.strip().splitlines()) == 1 and "Traceback" not in text, text
    return text


def test_info_checks_what_decompress_checks_before_decoding(tmp_path, binary_model):
    from acnzip.archive import pack_names
    root = _binary_folder(tmp_path / "d")
    arc = tmp_path / "k.acn"
    api.compress(root, arc, model=binary_model, embed_model=True, quiet=True)
    escaping = _rewrite(arc, tmp_path / "esc.acn",
                        names=pack_names(["../escape.png", "1.png", "2.png", "3.png"]))
    model = bytearray(read_archive(arc).model)
    model[len(model) // 2] ^= 1
    other_model = _rewrite(arc, tmp_path / "model.acn", model=bytes(model))
    for crafted, words in ((escaping, "unsafe"), (other_model, "embedded model")):
        assert words in _refused("info", crafted)
        assert words in _refused("decompress", crafted, "-o", tmp_path / "out")
        assert not (tmp_path / "out").exists() and not (tmp_path / "escape.png").exists()


def test_a_kept_npz_member_where_the_array_goes_is_refused(tmp_path, binary_model):
    from acnzip.archive import pack_files
    src = tmp_path / "g.npz"
    np.savez(src, x=digits(6), y=np.arange(6))
    arc = tmp_path / "g.acn"
    api.compress(src, arc, model=binary_model, quiet=True)
    a = read_archive(arc)
    fake = io.BytesIO()
    np.save(fake, np.full((6, 28, 28), 7, np.uint8))
    files = [("x.npy", fake.getvalue())]
    header = dict(a.header, other_files={"count": 1, "bytes": len(fake.getvalue())})
    crafted = _rewrite(arc, tmp_path / "c.acn", header=header, files=pack_files(files))
    assert "where the array goes" in _refused("info", crafted)
    _refused("decompress", crafted, "-o", tmp_path / "out", "--model", binary_model)
    assert not (tmp_path / "out").exists()


def test_npz_with_two_members_of_one_name_is_refused(tmp_path):
    path = tmp_path / "dup.npz"
    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")                   # zipfile: "Duplicate name"
        for value in (1, 2):
            buf = io.BytesIO()
            np.save(buf, digits(3) * value)
            zf.writestr("x.npy", buf.getvalue())
    assert "two members of the same name" in _refused("compress", path, "-o",
                                                      tmp_path / "a.acn")


@pytest.mark.parametrize("member", ["a\\b.npy", "a/../b.npy", "a//b.npy", "./y.npy",
                                    "../../evil.npy", "/tmp/abs.npy", "L" * 4100 + ".npy",
                                    "line\nbreak.npy", "somedir/"])
def test_npz_members_decompress_could_not_restore_are_refused(tmp_path, member):
    """compress refuses what decompress would refuse to read back: a kept member's name goes
    through the files section's path rules (a backslash, '..', an empty part, an absolute
    path, over 4,096 bytes), and a folder entry (here holding data) has no file to restore."""
    path = tmp_path / "m.npz"
    buf = io.BytesIO()
    np.save(buf, digits(3))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", buf.getvalue())
        zf.writestr(member, b"data")
    text = _refused("compress", path, "-o", tmp_path / "a.acn")
    assert str(path) in text and ("a folder entry" if member.endswith("/") else
                                  "cannot store the file name") in text
    assert not (tmp_path / "a.acn").exists()


def test_a_header_claiming_many_images_costs_no_memory_before_the_model_refuses(
        tmp_path, binary_model):
    """n = 10^7 images of 1x1: the model check comes before any per-image list."""
    root = _binary_folder(tmp_path / "d")
    arc = tmp_path / "s.acn"
    api.compress(root, arc, model=binary_model, order="set", quiet=True)
    header = dict(read_archive(arc).header, n_images=10 ** 7, shape_chw=[1, 1, 1])
    crafted = tmp_path / "many.acn"
    crafted.write_bytes(_with_header(arc.read_bytes(), header))
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    code, text = run_cli("info", crafted)
    assert code == 0 and "10,000,000" in text, text
    assert "is for binary 28x28x1" in _refused("decompress", crafted, "-o", tmp_path / "out", "--model",
                             binary_model)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - start
    assert grown < 200, grown                   # 10^7 names as strings: about 700 MB


def test_names_and_paths_sections_inflate_within_their_caps(monkeypatch):
    from acnzip.archive import ArchiveError, pack_files, pack_names, unpack_files, \
        unpack_names
    names = [f"{'a' * 200}{i}.png" for i in range(50)]
    assert unpack_names(pack_names(names), 50) == names
    monkeypatch.setattr(LIMITS, "max_names_bytes", 5000)
    with pytest.raises(ArchiveError, match="names section is damaged"):
        unpack_names(pack_names(names), 50)
    files = [(f"{'b' * 300}/{i}", b"") for i in range(20)]
    assert unpack_files(pack_files(files), 20, 0) == files
    monkeypatch.setattr(LIMITS, "max_paths_bytes", 1000)
    with pytest.raises(ArchiveError, match="files section is damaged"):
        unpack_files(pack_files(files), 20, 0)


def test_crafted_model_fields_and_foreign_formats_are_short_lines(binary_model):
    blob = _model_blob(binary_model)
    nan = dict(blob, weights={k: v.clone() for k, v in blob["weights"].items()})
    next(v for v in nan["weights"].values() if v.is_floating_point()).view(-1)[0] = np.nan
    bare = {"format": "acnzip-model", "version": 1}
    other = dict(blob, format="something else")
    for crafted, words in ((nan, "not all finite"), (bare, "no field"),
                           (other, "not an acnzip model file")):
        with pytest.raises(ModelFileError, match=words) as info:
            load_model(_bytes_of(crafted))
        assert len(str(info.value)) < 300                    # never the file's bytes


def test_a_failed_write_leaves_no_folders_it_created(tmp_path):
    from acnzip.atomic import write_folder

    def fails(path):
        raise OSError("disk full")
    target = tmp_path / "new1" / "new2" / "out"
    with pytest.raises(OSError, match="disk full"):
        write_folder(target, [("a.png", fails)])
    assert list(tmp_path.iterdir()) == []


def test_the_npz_member_coded_is_the_one_checked(tmp_path, binary_model):
    """np.load(npz)['x'] prefers a member named exactly 'x' over 'x.npy': the array is read
    from the member acnzip checked (x.npy), and 'x' is kept byte for byte beside it."""
    path = tmp_path / "two.npz"
    members = {}
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in (("x.npy", digits(6)), ("x", np.zeros((6, 28, 28), np.uint8))):
            buf = io.BytesIO()
            np.save(buf, arr)
            members[name] = buf.getvalue()
            zf.writestr(name, members[name])
    api.compress(path, tmp_path / "a.acn", model=binary_model, quiet=True)
    api.decompress(tmp_path / "a.acn", tmp_path / "out", model=binary_model, quiet=True)
    with zipfile.ZipFile(tmp_path / "out" / "two.npz") as zf:
        assert zf.read("x") == members["x"]
        assert np.array_equal(np.lib.format.read_array(io.BytesIO(zf.read("x.npy"))), digits(6))


def test_decompress_never_replaces_the_archive_it_reads(tmp_path, binary_model):
    root = _binary_folder(tmp_path / "d")
    arc = tmp_path / "a.acn"
    api.compress(root, arc, model=binary_model, quiet=True)
    inside = root / "0.png"
    kept = inside.read_bytes()
    inside.write_bytes(arc.read_bytes())                   # the archive, named like an output
    code, text = run_cli("decompress", inside, "-o", root, "--model", binary_model, "-q", "-f")
    assert code == 1 and "one of the files it restores" in text, text
    assert inside.read_bytes() == arc.read_bytes() and kept


def test_a_dangling_symlink_as_outdir_is_one_line(tmp_path, binary_model):
    root = _binary_folder(tmp_path / "d")
    arc = tmp_path / "a.acn"
    api.compress(root, arc, model=binary_model, quiet=True)
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere")
    assert "symbolic link to nothing" in _refused("decompress", arc, "-o", link, "--model",
                                                  binary_model)
    assert not (tmp_path / "nowhere").exists()


def test_info_refuses_an_embedded_model_decompress_would_refuse(tmp_path, binary_model):
    root = _binary_folder(tmp_path / "d")
    arc = tmp_path / "e.acn"
    api.compress(root, arc, model=binary_model, embed_model=True, quiet=True)
    blob = _model_blob(binary_model)
    crafted = _bytes_of(dict(blob, model_config=dict(blob["model_config"], bogus=1)))
    header = dict(read_archive(arc).header, model_sha256=hashlib.sha256(crafted).hexdigest())
    bad = _rewrite(arc, tmp_path / "bad.acn", header=header, model=crafted)
    assert "not a usable acnzip model" in _refused("info", bad)


def _pixel_multiset(root: Path) -> list[bytes]:
    return sorted(np.asarray(Image.open(p)).tobytes() for p in root.rglob("*.png"))


def test_a_portable_archive_decodes_with_at_most_this_machines_cpus(tmp_path, binary_model):
    """A crafted (or far-away) header's thread count: a portable archive's pixels do not depend
    on it, so decompress runs at most as many threads as it has CPUs; the pixels come back
    equal."""
    from acnzip.runtime import usable_cpus
    root = _binary_folder(tmp_path / "d")
    arc = tmp_path / "a.acn"
    api.compress(root, arc, model=binary_model, order="set", quiet=True)
    header = dict(read_archive(arc).header, threads=256)
    many = _rewrite(arc, tmp_path / "many.acn", header=header)
    before = torch.get_num_threads()
    try:
        api.decompress(many, tmp_path / "out", model=binary_model, quiet=True)
        assert torch.get_num_threads() == min(256, usable_cpus())
    finally:
        torch.set_num_threads(before)
    assert _pixel_multiset(tmp_path / "out") == _pixel_multiset(root)


def test_torch_running_out_of_memory_is_one_line():
    """torch's CPU allocator raises RuntimeError, not MemoryError; the commands' wrapper makes
    it one line naming memory (a real failed allocation), and lets other errors through."""
    import click
    from acnzip.cli import user_errors
    with pytest.raises(click.ClickException, match="^out of memory: torch could not allocate"):
        user_errors(lambda: torch.empty(1 << 60, dtype=torch.uint8))()
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        user_errors(lambda: torch.ones(2, 3) @ torch.ones(4, 5))()


@pytest.mark.parametrize("message, memory", [
    ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
     "memory: you tried to allocate 2359296 bytes. Error code 12", True),
    ("could not create a primitive", True),
    ("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)", False)])
def test_only_torch_allocation_failures_are_taken_for_memory(message, memory):
    from acnzip.cli import _torch_out_of_memory
    assert _torch_out_of_memory(RuntimeError(message)) is memory
