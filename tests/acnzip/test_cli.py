"""`acnzip train` end to end; user errors are one line on stderr with exit status 1."""
import numpy as np
import pytest
from click.testing import CliRunner

from acnzip import __version__
from acnzip.cli import main
from acnzip.modelfile import load_model


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((40, 8, 8)) < 0.3).astype(np.uint8)
    np.save(tmp_path / "train.npy", x)
    np.save(tmp_path / "valid.npy", x[:10])
    return tmp_path


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_version_and_help():
    assert _run("--version").output.strip() == f"acnzip, version {__version__}"
    res = _run("train", "--help")
    assert res.exit_code == 0 and "--max-minutes" in res.output and "--resume" in res.output


def test_train_then_resume(data):
    out = data / "m.pt"
    args = ["train", data / "train.npy", "-o", out, "--config", "tiny", "-q", "--threads", "1"]
    res = _run(*args, "--valid", data / "valid.npy", "--epochs", "2", "--max-steps", "2")
    assert res.exit_code == 0, res.output
    assert "wrote" in res.stderr and load_model(out).metadata["stop_reason"] == "max-steps"
    res = _run(*args, "--valid", data / "valid.npy", "--resume", f"{out}.ckpt")
    assert res.exit_code == 0, res.output
    meta = load_model(out).metadata
    assert meta["complete"] and meta["steps"] == 6 and meta["config"] == "tiny"


@pytest.mark.parametrize("extra, message", [
    (["--valid", "nowhere.npy"], "nowhere.npy: no such file or folder"),
    (["--resume", "missing.ckpt"], "no such checkpoint"),
])
def test_user_errors_are_one_line(data, extra, message):
    res = _run("train", data / "train.npy", "-o", data / "m.pt", "--config", "tiny", "-q", *extra)
    assert res.exit_code == 1
    assert message in res.stderr and "Traceback" not in res.output
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("Error:")


def test_bad_data_existing_output_and_resume_conflicts(data):
    (data / "bad.npy").write_bytes(b"garbage")
    res = _run("train", data / "bad.npy", "-o", data / "m.pt")
    assert res.exit_code == 1 and "cannot read" in res.stderr
    (data / "m.pt").write_bytes(b"x")
    res = _run("train", data / "train.npy", "-o", data / "m.pt")
    assert res.exit_code == 1 and "already exists" in res.stderr
    args = ["train", data / "train.npy", "-o", data / "m2.pt", "--config", "tiny", "-q"]
    assert _run(*args, "--max-steps", "1").exit_code == 0
    res = _run(*args, "--resume", data / "m2.pt.ckpt", "--lr", "0.5")
    assert res.exit_code == 1 and "--lr 0.5 differs from the checkpoint's 0.001" in res.stderr
    res = _run(*args[:-3], "--config", "cpu", "--resume", data / "m2.pt.ckpt")
    assert res.exit_code == 1 and "--config cpu differs" in res.stderr
