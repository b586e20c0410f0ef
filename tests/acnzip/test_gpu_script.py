"""scripts/train-gpu.sh, the script run when a GPU is lent, tested on the CPU: a `tiny` job, the
warm starts from the shipped models, and its refusals."""
import dataclasses
import io
import lzma
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from acnzip.modelfile import load_model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train-gpu.sh"


def _save_xz(path, x):
    """As scripts/gpu-data.py writes its arrays: an .npy, xz-compressed."""
    buf = io.BytesIO()
    np.save(buf, x)
    path.write_bytes(lzma.compress(buf.getvalue()))


def _data(tmp_path):
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    data.mkdir()
    for name, n in (("bin_train", 64), ("bin_valid", 16)):
        _save_xz(data / f"{name}.npy.xz", (rng.random((n, 28, 28)) < 0.2).astype(np.uint8))
    for name, n in (("mnist_train55k", 64), ("mnist_valid5k", 16)):
        _save_xz(data / f"{name}.npy.xz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    return data


def _run(tmp_path, jobs, out, minutes="0.02"):
    env = dict(os.environ, PYTHON=sys.executable, JOBS=jobs, CKPTDIR=str(tmp_path / "ckpt"),
               UNPACKDIR=str(tmp_path / "unpacked"),
               WHEELS=str(tmp_path / "no-wheels"), OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(SCRIPT), str(out), minutes, str(tmp_path / "data"), "cpu"],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_gpu_script_warm_starts_continue_the_shipped_models(tmp_path):
    _data(tmp_path)
    done = _run(tmp_path, "bin-init bin-tour mnist8-init mnist8-grow mnist8-wide",
                tmp_path / "out")
    assert done.returncode == 0, done.stdout + done.stderr
    models = Path(SCRIPT).parents[1] / "acnzip" / "models"
    for name, shipped in (("bin-init", "binarized-mnist.pt"), ("bin-tour", "binarized-mnist.pt"),
                          ("mnist8-init", "mnist.pt"), ("mnist8-grow", "mnist.pt"),
                          ("mnist8-wide", "mnist.pt")):
        m, ship = load_model(tmp_path / "out" / f"{name}.pt"), load_model(models / shipped)
        assert m.metadata["init"]["file"] == shipped
        if name == "mnist8-grow":               # the shipped model with 8 PixelCNN blocks
            assert m.config.pixelcnn_blocks == 8 and ship.config.pixelcnn_blocks <= 8
            blocks = ship.config.pixelcnn_blocks
            assert dataclasses.replace(m.config, pixelcnn_blocks=blocks) == ship.config
        elif name == "mnist8-wide":             # ... with 40 feature maps per stack
            assert (m.config.pixelcnn_filters, ship.config.pixelcnn_filters) == (40, 32)
            assert dataclasses.replace(m.config, pixelcnn_filters=32) == ship.config
        else:
            assert m.config == ship.config      # the shipped architecture, trained further
        assert m.metadata["train_data"]["n"] == 64
        assert m.train_config.neighbours == ("tour" if name == "bin-tour" else "knn")


def test_gpu_script_refuses_an_unknown_job_before_starting_anything(tmp_path):
    _data(tmp_path)
    done = _run(tmp_path, "bin-init bin-large", tmp_path / "out")
    assert done.returncode == 1
    assert "no job named bin-large" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_gpu_training_script_writes_a_model_and_a_checkpoint_on_the_cpu(tmp_path):
    _data(tmp_path)
    out = tmp_path / "out"
    done = _run(tmp_path, "bin-tiny", out, minutes="0.05")
    assert done.returncode == 0, done.stdout + done.stderr
    log = (out / "bin-tiny.log").read_text()
    assert "bf16" in log and "wrote" in log, log
    m = load_model(out / "bin-tiny.pt")
    assert m.config.binary and m.metadata["stop_reason"] == "max-minutes"
    assert m.metadata["train_data"]["n"] == 64
    assert (tmp_path / "ckpt" / "bin-tiny.ckpt").stat().st_size > 0


DEVICE_TREE_LIMIT = 64 * 2 ** 20     # what one device call may send: tracked files + carried paths
GPU_CARRY_BYTES = 29_000_000         # .gpu: scripts/gpu-data.py's four .npy.xz files (9,465,392
                                     # bytes), the constriction wheel (405,717) and faiss-cpu's
                                     # (18,834,180)


WINDOW = SCRIPT.with_name("gpu-window.sh")


def test_the_tracked_tree_leaves_room_for_the_gpu_data():
    """A GPU window sends the working tree with the carried .gpu folder, 64 MiB at most, and is
    refused outright above that. scripts/gpu-window.sh takes the retired models out of what
    travels (they grow with every new default; the GPU script never reads them); everything
    else tracked must leave room for the GPU data. When this fails, make the GPU data or the
    tracked files smaller rather than lose a GPU window."""
    root = SCRIPT.parents[1]
    ls = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True)
    if ls.returncode != 0:
        pytest.skip("not a git checkout")
    names = [n for n in ls.stdout.decode().split("\0") if n]
    travels = [n for n in names if not n.startswith("acnzip/models/retired/")]
    assert len(names) - len(travels) >= 10                     # the retired files are tracked
    tracked = sum((root / n).stat().st_size for n in travels if (root / n).is_file())
    assert len(travels) > 100 and tracked > 12_000_000          # the shipped models are counted
    assert tracked + GPU_CARRY_BYTES <= DEVICE_TREE_LIMIT, (
        f"tracked files {tracked:,} bytes + GPU data {GPU_CARRY_BYTES:,} > {DEVICE_TREE_LIMIT:,}")


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True,
                          env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
                                   GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")).stdout


def test_gpu_window_takes_the_retired_models_out_of_what_travels_and_puts_them_back(tmp_path):
    """On a small repository of the same layout: `prepare` leaves the retired files on disk
    untouched but out of the index and ignored (so a device call does not send them), refuses
    to run twice, and `restore` makes the index and the exclude file what they were."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "gpu-window.sh").write_bytes(WINDOW.read_bytes())
    retired = repo / "acnzip" / "models" / "retired"
    retired.mkdir(parents=True)
    blobs = {f"m-{i}.pt.packed": os.urandom(1000 + i) for i in range(3)}
    for name, blob in blobs.items():
        (retired / name).write_bytes(blob)
    (repo / "acnzip" / "models" / "mnist.pt").write_bytes(b"shipped")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "layout")
    before = _git(repo, "ls-files")
    exclude = repo / ".git" / "info" / "exclude"
    exclude_before = exclude.read_text() if exclude.exists() else ""

    def window(step):
        return subprocess.run(["bash", "scripts/gpu-window.sh", step], cwd=repo,
                              capture_output=True, text=True, timeout=60)

    done = window("restore")                                   # out of turn: nothing changes
    assert done.returncode == 1 and "not prepared" in done.stderr
    assert _git(repo, "ls-files") == before
    done = window("prepare")                                   # no .gpu yet
    assert done.returncode == 1 and "build .gpu/data" in done.stderr
    assert _git(repo, "ls-files") == before
    for sub, name in (("data", "x.npy.xz"), ("whl", "c.whl")):
        (repo / ".gpu" / sub).mkdir(parents=True)
        (repo / ".gpu" / sub / name).write_bytes(b"0" * 100)

    done = window("prepare")
    assert done.returncode == 0, done.stderr
    travels = _git(repo, "ls-files", "--cached", "--others", "--exclude-standard").split()
    assert travels == ["acnzip/models/mnist.pt", "scripts/gpu-window.sh"]
    assert "will travel" in done.stdout
    for name, blob in blobs.items():                            # on disk, byte for byte
        assert (retired / name).read_bytes() == blob
    again = window("prepare")
    assert again.returncode == 1 and "already prepared" in again.stderr

    done = window("restore")
    assert done.returncode == 0, done.stderr
    assert window("restore").returncode == 1                   # once only
    assert _git(repo, "ls-files") == before
    assert _git(repo, "status", "--porcelain", "--", "acnzip") == ""
    assert exclude.read_text() == exclude_before + "/.gpu/\n"
    for name, blob in blobs.items():
        assert (retired / name).read_bytes() == blob
    (retired / "new.pt.packed").write_bytes(b"a model being shipped")
    _git(repo, "add", "acnzip")
    done = window("prepare")                                   # uncommitted work in retired/
    assert done.returncode == 1 and "changes not in HEAD" in done.stderr
    assert "acnzip/models/retired/new.pt.packed" in _git(repo, "diff", "--cached", "--name-only")
