"""Nothing a user owns is lost: whole folders round-trip, -f never removes foreign files, the
model is named, and crafted input gets one line and exit status 1. Data are generated here,
so these run on any clone."""
import copy
import json
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from acnzip import api
from acnzip.archive import read_archive
from acnzip.atomic import (OutputExistsError, Terminated, atomic_write_bytes,
                           terminate_cleanly, write_folder)
from acnzip.cli import main


def digits(n: int, seed: int = 0) -> np.ndarray:
    """Binary 28x28 images with strokes (rectangles), (n, 28, 28) uint8 {0, 1}."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28), np.uint8)
    for img in x:
        for _ in range(3):
            r, c = rng.integers(2, 20, 2)
            img[r:r + rng.integers(2, 8), c:c + rng.integers(2, 8)] = 1
    return x


def make_folder(root: Path, n: int = 6) -> Path:
    """A dataset folder as users have them: images, a README, labels, hidden and empty files,
    a multi-frame TIFF, a BMP."""
    x = digits(n)
    (root / "train" / "sub").mkdir(parents=True)
    for i, img in enumerate(x[:-1]):
        Image.fromarray(img * 255).save(root / "train" / f"{i}.png")
    Image.fromarray(x[-1] * 255).save(root / "train" / "sub" / "last.bmp")
    (root / "README.md").write_text("my dataset\n")
    (root / "labels.csv").write_text("".join(f"{i},{i % 10}\n" for i in range(n)))
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "empty").write_bytes(b"")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.bin").write_bytes(os.urandom(300))
    frames = [Image.fromarray(img * 255) for img in x[:2]]
    frames[0].save(root / "stack.tif", save_all=True, append_images=frames[1:])
    return root


def files_of(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run_cli(*args, cwd=None):
    """The CLI in-process: (exit code, output)."""
    runner = CliRunner()
    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        r = runner.invoke(main, [str(a) for a in args], catch_exceptions=True)
    finally:
        os.chdir(old)
    return r.exit_code, r.output                  # click >= 8.2: stdout and stderr together


@pytest.fixture
def folder_archive(tmp_path, binary_model):
    src = make_folder(tmp_path / "data")
    arc = tmp_path / "data.acn"
    r = api.compress(src, arc, model=binary_model, quiet=True)
    return src, arc, r


def test_whole_folder_round_trips_every_file(tmp_path, folder_archive, binary_model):
    src, arc, r = folder_archive
    assert r["n_images"] == 6 and r["n_other_files"] == 6 and r["images_renamed"] == 1
    assert r["input_bytes"] == sum(len(b) for b in files_of(src).values())
    api.decompress(arc, tmp_path / "out", model=binary_model, quiet=True)
    orig, back = files_of(src), files_of(tmp_path / "out")
    renamed = {"train/sub/last.bmp": "train/sub/last.png"}
    assert set(back) == {renamed.get(k, k) for k in orig}
    for name, content in orig.items():
        if name.endswith(".png") or name in renamed:       # images: identical pixels and mode
            a, b = Image.open(src / name), Image.open(tmp_path / "out" / renamed.get(name, name))
            assert a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b))
        else:                                                # everything else: identical bytes
            assert back[name] == content, name
    assert (tmp_path / "out" / "stack.tif").read_bytes() == (src / "stack.tif").read_bytes()


def test_force_into_a_folder_keeps_foreign_files_and_dot_works(tmp_path, folder_archive,
                                                               binary_model):
    src, arc, _ = folder_archive
    out = tmp_path / "mine"
    (out / "train").mkdir(parents=True)
    (out / "diary.txt").write_text("private")
    (out / "train" / "0.png").write_bytes(b"old version")
    (out / "train" / "notes").write_text("keep me too")
    code, text = run_cli("decompress", arc, "-o", out, "--model", binary_model, "-q")
    assert code == 1 and "not empty" in text and "Traceback" not in text
    assert (out / "train" / "0.png").read_bytes() == b"old version"
    code, text = run_cli("decompress", arc, "-o", out, "--model", binary_model, "-q", "-f")
    assert code == 0, text
    assert (out / "diary.txt").read_text() == "private"
    assert (out / "train" / "notes").read_text() == "keep me too"
    assert np.array_equal(np.asarray(Image.open(out / "train" / "0.png")),
                          np.asarray(Image.open(src / "train" / "0.png")))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    # -o . : the current folder, with -f, gains the files and keeps its own.
    here = tmp_path / "here"
    here.mkdir()
    (here / "own.txt").write_text("own")
    code, text = run_cli("decompress", arc, "-o", ".", "--model", binary_model, "-q", "-f",
                         cwd=here)
    assert code == 0, text
    assert (here / "own.txt").read_text() == "own" and (here / "README.md").is_file()


def _specials(folder: Path) -> dict:
    """A pipe and a socket (and a device where this user may make one) in `folder`: name ->
    what the refusal calls it."""
    import socket
    os.mkfifo(folder / "pipe")
    made = {"pipe": "a pipe (FIFO)", "sock": "a socket"}
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock"))
    sock.close()                                  # the socket file stays
    try:
        os.mknod(folder / "null", 0o666 | 0o020000, os.makedev(1, 3))   # like /dev/null
        made["null"] = "a device"
    except PermissionError:                       # not root: pipes and sockets only
        pass
    return made


def _kinds(folder: Path) -> dict:
    return {p.name: os.lstat(p).st_mode & 0o170000 for p in folder.iterdir()}


def test_force_never_replaces_a_device_pipe_or_socket(tmp_path, binary_model):
    """-f replaces files, never what only looks like an output path: a device, pipe or socket
    given to -o or --report, or in an archive's place in a folder, is refused in one line and
    stays what it was (`acnzip compress -o /dev/null -f` once turned /dev/null into a file)."""
    here = tmp_path / "here"
    here.mkdir()
    specials = _specials(here)
    before = _kinds(here)
    data = tmp_path / "x.npy"
    np.save(data, digits(6))
    arc = tmp_path / "x.acn"
    for name, what in specials.items():
        for args in (["-o", here / name], ["-o", arc, "--report", here / name]):
            code, text = run_cli("compress", data, *args, "--model", binary_model, "-q", "-f")
            assert code == 1 and f"is {what}, not a file" in text, text
            assert "Traceback" not in text and len(text.strip().splitlines()) == 1
    assert _kinds(here) == before and not arc.exists()
    for name in specials:                              # the writer itself refuses too
        with pytest.raises(OutputExistsError, match="not a file"):
            atomic_write_bytes(here / name, b"data")
    assert _kinds(here) == before and sorted(os.listdir(here)) == sorted(specials)

    link = tmp_path / "link"                           # a symlink is replaced, never followed
    link.symlink_to(here / "pipe")
    code, text = run_cli("compress", data, "-o", link, "--model", binary_model, "-q", "-f")
    assert code == 0, text
    assert not link.is_symlink() and read_archive(link).header["n_images"] == 6
    assert _kinds(here) == before

    out = tmp_path / "out"                             # decompress -f: the archive's paths
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    os.mkfifo(out / "x.npy")                           # where the array is restored
    code, text = run_cli("compress", data, "-o", arc, "--model", binary_model, "-q", "-f")
    assert code == 0, text
    code, text = run_cli("decompress", arc, "-o", out, "--model", binary_model, "-q", "-f")
    assert code == 1 and "x.npy is a pipe (FIFO), not a file" in text, text
    assert sorted(os.listdir(out)) == ["mine.txt", "x.npy"]
    assert os.lstat(out / "x.npy").st_mode & 0o170000 == 0o010000      # still a FIFO


def test_archive_inside_its_own_folder(tmp_path, binary_model):
    src = make_folder(tmp_path / "data")
    arc = src / "data.acn"
    api.compress(src, arc, model=binary_model, quiet=True)
    before = files_of(src)
    r = api.compress(src, arc, model=binary_model, quiet=True, force=True)   # not itself
    assert r["n_other_files"] == 6
    api.decompress(arc, src, model=binary_model, quiet=True, force=True)
    after = files_of(src)
    assert after["data.acn"] == arc.read_bytes() and set(after) == \
        set(before) | {"train/sub/last.png"}
    assert all(after[k] == v for k, v in before.items() if not k.endswith(".png"))


def test_jpeg_comes_back_as_png_with_identical_pixels_and_the_summary_says_so(tmp_path):
    from .conftest import make_model_file
    grey_model = make_model_file(tmp_path / "grey.pt", binary=False)
    src = tmp_path / "jpgs"
    src.mkdir()
    for i, img in enumerate(digits(3)):
        Image.fromarray((img * 200 + 20).astype(np.uint8)).save(src / f"{i}.jpg", quality=90)
    pixels = {p.name: np.asarray(Image.open(p)) for p in src.iterdir()}
    code, text = run_cli("compress", src, "-o", tmp_path / "j.acn", "--model", grey_model)
    assert code == 0, text
    assert "3 images not in PNG files will come back as PNG with identical pixels" in text
    api.decompress(tmp_path / "j.acn", tmp_path / "out", model=grey_model, quiet=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png", "2.png"]
    for name, arr in pixels.items():
        back = Image.open(tmp_path / "out" / name.replace(".jpg", ".png"))
        assert back.mode == "L" and np.array_equal(np.asarray(back), arr)


@pytest.mark.parametrize("key", ["file", "allow_pickle", "x"])
def test_npz_keys_like_numpy_arguments_and_other_members_are_kept(tmp_path, binary_model, key):
    x, labels = digits(5), np.arange(5, dtype=np.int64)
    src = tmp_path / "d.npz"
    import zipfile, io
    with zipfile.ZipFile(src, "w") as zf:
        for name, arr in ((key, x), ("labels", labels)):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr)
            zf.writestr(name + ".npy", buf.getvalue())
    r = api.compress(f"{src}:{key}", tmp_path / "a.acn", model=binary_model, quiet=True)
    assert r["n_other_files"] == 1
    api.decompress(tmp_path / "a.acn", tmp_path / "out", model=binary_model, quiet=True)
    with np.load(tmp_path / "out" / "d.npz") as z:
        assert np.array_equal(z[key], x) and np.array_equal(z["labels"], labels)


def test_the_model_is_named_everywhere(tmp_path, folder_archive, binary_model):
    src, arc, r = folder_archive
    assert r["model_name"] == binary_model.name and r["model_from"] == "file"
    with pytest.raises(api.CompressError, match=rf"needs the model file {binary_model.name} "
                                                r"\(sha256 [0-9a-f]{16}\.\.\.\).*--model"):
        api.decompress(arc, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()
    code, text = run_cli("info", arc)
    assert code == 0 and binary_model.name in text and "needed to decode" in text
    info = api.archive_info(arc)
    parts = ["frame_bytes", "header_bytes", "names_bytes", "other_files_bytes", "model_bytes",
             "payload_bytes"]
    assert sum(info[k] for k in parts) == info["archive_bytes"] == arc.stat().st_size
    assert all(info[k] == r[k] for k in parts + ["archive_bytes"])        # the same meanings
    code, text = run_cli("compress", src, "-o", tmp_path / "b.acn", "--model", binary_model)
    assert code == 0 and f"decodes only with the model file {binary_model.name}" in text
    assert "--embed-model" in text
    assert f"\n{src}: 6 images + 6 other files kept byte for byte, " in "\n" + text.replace("\r", "\n")
    code, text = run_cli("compress", src, "-o", tmp_path / "c.acn", "--model", binary_model,
                         "--embed-model")
    assert code == 0 and "decodes only" not in text


def test_crafted_npy_header_is_one_line(tmp_path):
    bad = tmp_path / "huge.npy"
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000000, 28, 28), }"
    header = header.ljust(117) + "\n"
    bad.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
                    + b"\x00" * 100)
    code, text = run_cli("compress", bad, "-o", tmp_path / "a.acn")
    assert code == 1 and "memory budget" in text and len(text.strip().splitlines()) == 1
    small = tmp_path / "short.npy"
    np.save(small, digits(4))
    small.write_bytes(small.read_bytes()[:-10])
    code, text = run_cli("compress", small, "-o", tmp_path / "a.acn")
    assert code == 1 and "truncated" in text


def _mutations(h: dict, rng: random.Random):
    """Crafted values for the header's fields: wrong types, extremes, huge sizes, nesting."""
    values = [None, True, False, -1, 0, 1, 2 ** 31, 2 ** 63, 10 ** 30, 1e308, -1e-9, "", "x" * 5000,
              "../../etc/passwd", "\x00", [], [1] * 10_000, {}, {"kind": "npz"}, [[[[]]]],
              {"width": 1e-12, "range": 1e6}, {"count": 10 ** 9, "bytes": 10 ** 12}]
    keys = sorted(h)
    pick = lambda: copy.deepcopy(rng.choice(values))    # never share (and so nest) one value
    while True:
        m = json.loads(json.dumps(h))
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(keys)
            v = m.get(key)
            if isinstance(v, dict) and v and rng.random() < 0.5:
                sub = rng.choice(sorted(v))
                v[sub] = pick()
            elif isinstance(v, list) and v and rng.random() < 0.3:
                v[rng.randrange(len(v))] = pick()
            else:
                m[key] = pick()
        yield m


def _with_header(data: bytes, header: dict) -> bytes:
    """The archive `data` with its JSON header replaced, every length and CRC recomputed."""
    fixed = list(struct.unpack_from("<4sHHIIQQQ", data))
    lh = fixed[3]
    body = data[44:-4]
    raw = zlib.compress(json.dumps(header).encode())
    body = raw + body[lh:]
    fixed[3] = len(raw)
    head = struct.pack("<4sHHIIQQQ", *fixed)
    return head + struct.pack("<I", zlib.crc32(head)) + body + struct.pack("<I", zlib.crc32(body))


MEMORY_BUDGET_MB = 600          # growth of the test process's peak RSS over the whole fuzz


def test_fuzzed_headers_give_one_line_and_exit_1(tmp_path, folder_archive, binary_model):
    """Seeded, time-bounded: mutate header fields of a valid archive (CRCs recomputed); every
    decompress and info either works or exits 1 with one line, writes nothing, and the
    process's peak memory stays within MEMORY_BUDGET_MB."""
    _, arc, _ = folder_archive
    data = arc.read_bytes()
    header = read_archive(arc).header
    rng = random.Random(1234)
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    deadline, cases, refused = time.monotonic() + 40, 0, 0
    for mutated in _mutations(header, rng):
        if time.monotonic() > deadline or cases >= 300:
            break
        cases += 1
        crafted = tmp_path / "crafted.acn"
        crafted.write_bytes(_with_header(data, mutated))
        out = tmp_path / f"out{cases}"
        for args in (["info", crafted], ["decompress", crafted, "-o", out, "--model",
                                         binary_model, "-q"]):
            code, text = run_cli(*args)
            assert code in (0, 1), (mutated, text)
            if code == 1:
                refused += 1
                lines = text.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("Error: "), (mutated, text)
                assert "Traceback" not in text
                assert not out.exists()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - start_rss
    assert cases >= 20 and refused >= cases // 2 and grown < MEMORY_BUDGET_MB, \
        (cases, refused, grown)


def test_sigterm_while_writing_leaves_no_temporary_files(tmp_path):
    def slow_writer(path):
        path.write_bytes(b"partial")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)                               # the signal arrives before this ends

    with pytest.raises(Terminated):
        with terminate_cleanly():
            write_folder(tmp_path / "out", [("a", lambda p: p.write_bytes(b"a")),
                                            ("b", slow_writer)])
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_a_pipe_for_its_checkpoint_before_training(tmp_path):
    np.save(tmp_path / "x.npy", digits(20))
    os.mkfifo(tmp_path / "pipe")
    code, text = run_cli("train", tmp_path / "x.npy", "--config", "tiny", "--max-steps", "1",
                         "-q", "-o", tmp_path / "m.pt", "--checkpoint", tmp_path / "pipe")
    assert code == 1 and "pipe is a pipe (FIFO), not a file" in text, text
    assert sorted(os.listdir(tmp_path)) == ["pipe", "x.npy"]


def test_ctrl_c_is_one_line_and_exit_1(tmp_path, monkeypatch):
    """Ctrl-C in a command ends like SIGTERM: 'Error: interrupted ...' and exit status 1, not
    click's blank line and 'Aborted!'."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "compress", interrupted)
    np.save(tmp_path / "x.npy", digits(3))
    code, text = run_cli("compress", tmp_path / "x.npy", "-o", tmp_path / "x.acn")
    assert code == 1 and text == "Error: interrupted (Ctrl-C); nothing partial was left\n", text


def test_idle_openmp_threads_sleep():
    code = "import os, acnzip.cli, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == "PASSIVE", done.stderr


def test_train_splits_validation_and_limits_from_a_folder(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    for i, img in enumerate(digits(30)):
        Image.fromarray(img * 255).resize((8, 8)).save(src / f"{i:02d}.png")
    (src / "README").write_text("ignored by training")
    code, text = run_cli("train", src, "--valid-fraction", "0.2", "--limit", "16", "--config",
                         "tiny", "--max-steps", "2", "-q", "-o", tmp_path / "m.pt")
    assert code == 0, text
    from acnzip.modelfile import load_model
    meta = load_model(tmp_path / "m.pt").metadata
    assert meta["train_data"]["n"] == 16 and meta["final_valid"] is not None
    assert "training part" in meta["data"]["source"]
    code, text = run_cli("train", src, "--valid-fraction", "0.2", "--valid", src, "-o",
                         tmp_path / "n.pt")
    assert code == 2 and "not both" in text
