"""Packed retired models (acnzip/retired.py): restored byte for byte or refused, never a
wrong model; and scripts/ship-model.py, which retires a default while shipping a new one."""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from acnzip.modelfile import MODELS, load_model, save_model
from acnzip.retired import RetiredFileError, base_of, pack, unpack

from .conftest import make_model_file

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ship-model.py"


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """A tiny model file and the same model trained on a little (weights nudged): (old, new)."""
    d = tmp_path_factory.mktemp("pack")
    old = make_model_file(d / "old.pt", size=28).read_bytes()
    mf = load_model(old)
    with torch.no_grad():
        for p in mf.model.parameters():
            p.add_(1e-4 * torch.randn_like(p))
    save_model(d / "new.pt", mf.model, mf.train_config, mf.gmm, {"note": "nudged"})
    return old, (d / "new.pt").read_bytes()


def test_a_packed_model_restores_byte_for_byte_with_or_without_a_base(two_models):
    old, new = two_models
    with_base, alone = pack(old, base=new), pack(old)
    assert unpack(with_base, {_sha(new): new}.get) == old
    assert unpack(alone, lambda sha: pytest.fail("no base needed")) == old
    assert base_of(with_base) == _sha(new) and base_of(alone) is None
    assert len(with_base) < len(alone) < len(old)       # the weights' low bits differ only


def test_a_packed_model_without_its_base_or_damaged_is_refused(two_models):
    old, new = two_models
    packed = pack(old, base=new)
    with pytest.raises(RetiredFileError, match="its base model .* is not shipped"):
        unpack(packed, lambda sha: None)
    with pytest.raises(RetiredFileError, match="do not have the recorded sha256"):
        unpack(packed, lambda sha: old)                  # a lying lookup: another file's bytes
    damaged = bytearray(packed)
    damaged[len(damaged) // 2] ^= 0x10
    with pytest.raises(RetiredFileError):
        unpack(bytes(damaged), {_sha(new): new}.get)
    with pytest.raises(RetiredFileError, match="not a packed acnzip model"):
        unpack(b"PK\x03\x04" + old[4:100], {}.get)


def test_ship_model_retires_the_default_packed_and_puts_the_new_one_in_place(tmp_path):
    models = tmp_path / "models"
    (models / "retired").mkdir(parents=True)
    shutil.copy(MODELS / "binarized-mnist.pt", models / "binarized-mnist.pt")
    old = (models / "binarized-mnist.pt").read_bytes()
    new = make_model_file(tmp_path / "new.pt", size=28, binary=True, seed=3).read_bytes()
    res = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "new.pt"),
                          "binarized-mnist.pt", str(models)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (models / "binarized-mnist.pt").read_bytes() == new
    (packed,) = (models / "retired").iterdir()
    assert packed.name == f"binarized-mnist-{_sha(old)[:16]}.pt.packed"
    assert unpack(packed.read_bytes(), {_sha(new): new}.get) == old


def test_ship_model_refuses_a_model_for_other_images_and_writes_nothing(tmp_path):
    models = tmp_path / "models"
    (models / "retired").mkdir(parents=True)
    shutil.copy(MODELS / "binarized-mnist.pt", models / "binarized-mnist.pt")
    before = (models / "binarized-mnist.pt").read_bytes()
    make_model_file(tmp_path / "grey.pt", size=28, binary=False)
    res = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "grey.pt"),
                          "binarized-mnist.pt", str(models)], capture_output=True, text=True)
    assert res.returncode == 1 and "does not code the images binarized-mnist.pt serves" in res.stderr
    assert (models / "binarized-mnist.pt").read_bytes() == before
    assert not any((models / "retired").iterdir())
