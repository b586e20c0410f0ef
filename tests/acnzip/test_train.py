"""Training: the loss goes down on real data, checkpoints resume exactly, model files load."""
import os
import signal

import numpy as np
import pytest
import torch

from acnzip.config import ModelConfig, TrainConfig, model_config, train_config
from acnzip.data import load_array
from acnzip.modelfile import load_model
from acnzip.train import (RunOptions, Trainer, TrainError, TrainingInterrupted, evaluate,
                          load_checkpoint, run, save_checkpoint, train)

QUIET = dict(progress=False, log=lambda msg: None)


def _synthetic(n, seed, h=8, w=8):
    """Binary images with structure (random rectangles), (N, 1, H, W) uint8."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, h, w), np.uint8)
    for img in x:
        r, c = rng.integers(0, h - 3), rng.integers(0, w - 3)
        img[0, r:r + rng.integers(2, 4), c:c + rng.integers(2, 4)] = 1
    return x


def _tiny(h=8, w=8, **train_overrides):
    return model_config("tiny", 1, h, w, True), train_config("tiny", **train_overrides)


def test_training_lowers_the_loss_on_binarized_mnist(shared_datasets):
    torch.set_num_threads(1)
    x = np.load(shared_datasets / "binarized_mnist" / "train.npz")["x"][:320, None]
    tr = Trainer(*_tiny(28, 28, epochs=3, valid_every=0), x, device="cpu")

    def held_out_loss():                     # fixed images, fixed c_hat and noise
        return evaluate(tr.model, tr.x[:128], tr.store, k=5, seed=0)["total"]

    before = held_out_loss()
    assert run(tr, RunOptions(**QUIET)) == "complete" and tr.progress.step == 60
    after = held_out_loss()
    assert after < before - 40, (before, after)          # ~560 -> ~490 nats/image


def _state(tr):
    return {"model": tr.model.state_dict(), "polyak": tr.polyak.model.state_dict(),
            "opt": tr.opt.state_dict()["state"], "codes": tr.store.codes,
            "rng": tr.rng.bit_generator.state, "gen": tr.gen.get_state(),
            "step": tr.progress.step, "epoch": tr.progress.epoch,
            "history": [{k: v for k, v in h.items()} for h in tr.progress.history]}


def _assert_same(a, b):
    for key in ("model", "polyak"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    for i in a["opt"]:
        for k in a["opt"][i]:
            assert torch.equal(a["opt"][i][k], b["opt"][i][k])
    assert np.array_equal(a["codes"], b["codes"]) and a["rng"] == b["rng"]
    assert torch.equal(a["gen"], b["gen"])
    assert (a["step"], a["epoch"], a["history"]) == (b["step"], b["epoch"], b["history"])


@pytest.mark.parametrize("stop_at", [3, 5, 9])    # mid-epoch, at an epoch's end, later
def test_resume_continues_exactly(tmp_path, stop_at):
    torch.set_num_threads(1)
    x, xv = _synthetic(70, 0), _synthetic(20, 1)         # 5 batches of 16 per epoch
    mc, tc = _tiny(epochs=3, valid_every=4)
    whole = Trainer(mc, tc, x, xv)
    assert run(whole, RunOptions(**QUIET)) == "complete"

    ckpt = tmp_path / "run.ckpt"
    first = Trainer(mc, tc, x, xv)
    assert run(first, RunOptions(checkpoint=ckpt, max_steps=stop_at, **QUIET)) == "max-steps"
    saved = load_checkpoint(ckpt)
    assert ModelConfig.from_dict(saved["model_config"]) == mc
    assert TrainConfig.from_dict(saved["train_config"]) == tc
    resumed = Trainer.from_checkpoint(saved, x, xv)
    _assert_same(_state(resumed), _state(first))
    assert run(resumed, RunOptions(checkpoint=ckpt, **QUIET)) == "complete"
    _assert_same(_state(resumed), _state(whole))
    assert whole.progress.step == 15 and len(whole.progress.history) >= 3


def test_ctrl_c_stops_after_a_whole_step_with_a_checkpoint(tmp_path):
    torch.set_num_threads(1)
    x, xv = _synthetic(70, 0), _synthetic(20, 1)
    mc, tc = _tiny(epochs=2, valid_every=3)
    whole = Trainer(mc, tc, x, xv)
    run(whole, RunOptions(**QUIET))
    ckpt, tr = tmp_path / "run.ckpt", Trainer(mc, tc, x, xv)
    ctrl_c = lambda msg: os.kill(os.getpid(), signal.SIGINT)      # at the first validation
    with pytest.raises(TrainingInterrupted) as stop:
        run(tr, RunOptions(checkpoint=ckpt, progress=False, log=ctrl_c))
    assert stop.value.step == 3 and stop.value.checkpoint == ckpt
    resumed = Trainer.from_checkpoint(load_checkpoint(ckpt), x, xv)
    run(resumed, RunOptions(**QUIET))
    _assert_same(_state(resumed), _state(whole))


def test_checkpoint_refuses_other_data_and_foreign_files(tmp_path):
    mc, tc = _tiny()
    tr = Trainer(mc, tc, _synthetic(20, 0))
    save_checkpoint(tmp_path / "a.ckpt", tr)
    with pytest.raises(TrainError, match="different data"):
        Trainer.from_checkpoint(load_checkpoint(tmp_path / "a.ckpt"), _synthetic(20, 5))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.ckpt")
    with pytest.raises(TrainError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(TrainError, match="at least 2"):
        Trainer(mc, tc, _synthetic(1, 0))


def test_train_writes_a_model_file_that_loads(tmp_path):
    torch.set_num_threads(1)
    np.save(tmp_path / "train.npy", _synthetic(40, 0)[:, 0] * 255)
    np.save(tmp_path / "valid.npy", _synthetic(12, 1)[:, 0] * 255)
    data, valid = load_array(tmp_path / "train.npy"), load_array(tmp_path / "valid.npy")
    out = tmp_path / "m.pt"
    res = train(data, out, valid=valid, config="tiny", overrides={"epochs": 2, "seed": 3},
                opts=RunOptions(checkpoint=tmp_path / "m.pt.ckpt", **QUIET), command="test")
    assert res.reason == "complete" and res.steps == 6
    m = load_model(out)
    meta = m.metadata
    assert m.config == model_config("tiny", 1, 8, 8, True) and m.train_config.seed == 3
    assert meta["steps"] == 6 and meta["complete"] and meta["command"] == "test"
    assert meta["data"]["binary_value"] == 255 and meta["final_valid_nats_per_image"] > 0
    assert set(meta["gmm_selection_nats"]) <= {"1", "2", "4", "8", "16", "32"}
    assert m.gmm.means.shape[1] == 4 and not m.model.training
    # The file holds the averaged weights: same outputs as the trainer's average.
    tr = Trainer.from_checkpoint(load_checkpoint(tmp_path / "m.pt.ckpt"), data.model_pixels())
    x = torch.from_numpy(data.model_pixels()[:4])
    z = torch.randn(4, 4)
    assert torch.equal(m.model.decoder(x, z), tr.polyak.model.decoder(x, z))
    assert not any(k.endswith("mask") for k in torch.load(out, weights_only=True)["weights"])
