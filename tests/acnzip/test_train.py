"""Training: the loss goes down on real data, checkpoints resume exactly, model files load."""
import os
import signal
import sys

import numpy as np
import pytest
import torch

from acnzip.config import ModelConfig, TrainConfig, model_config, train_config
from acnzip.data import load_array
from acnzip.evaluate import evaluate_model
from acnzip.modelfile import load_model
from acnzip.tour import tour_pairs
from acnzip.train import RunOptions, TrainingInterrupted, run, train
from acnzip.trainer import (Trainer, TrainError, load_checkpoint, save_checkpoint, shift_images,
                            validation_loss)

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


@pytest.mark.slow
def test_training_lowers_the_loss_on_binarized_mnist(datasets):
    torch.set_num_threads(1)
    x = np.load(datasets / "binarized_mnist" / "train.npz")["x"][:320, None]
    tr = Trainer(*_tiny(28, 28, epochs=3, valid_every=0), x, device="cpu")

    def held_out_loss():                     # fixed images, fixed c_hat and noise
        return validation_loss(tr.model, tr.x[:128], tr.store, k=5, seed=0)["total"]

    before = held_out_loss()
    assert run(tr, RunOptions(**QUIET)) == "complete" and tr.progress.step == 60
    after = held_out_loss()
    assert after < before - 40, (before, after)          # ~560 -> ~490 nats/image


def test_the_periodic_validation_is_the_same_whatever_the_training_seed():
    """Runs with different seeds validate on the same subset with the same draws, so their
    logged numbers compare (the subset is a fifth of the validation images here)."""
    torch.set_num_threads(1)
    x, valid = _synthetic(32, 0), _synthetic(40, 1)
    one, two = (Trainer(*_tiny(seed=seed, valid_images=8), x, valid, device="cpu")
                for seed in (1, 2))
    assert torch.equal(one.valid_subset, two.valid_subset)
    two.polyak.model.load_state_dict(one.polyak.model.state_dict())
    two.store.set_codes(one.store.codes)
    assert one.validate()["total"] == two.validate()["total"]
    assert not torch.equal(one.model.decoder.out2.weight, two.model.decoder.out2.weight)


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


@pytest.mark.parametrize("neighbours", ["knn", "tour"])
@pytest.mark.parametrize("stop_at", [3, 5, 8, 9])  # mid-epoch, an epoch's end, a rebuild, later
def test_resume_continues_exactly(tmp_path, stop_at, neighbours):
    torch.set_num_threads(1)
    x, xv = _synthetic(70, 0), _synthetic(20, 1)         # 5 batches of 16 per epoch
    mc, tc = _tiny(epochs=3, valid_every=4, neighbours=neighbours, tour_sizes=(10, 30),
                   tour_every=4)                          # tours rebuilt at steps 0, 4, 8, 12
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


def test_shift_images_translates_with_the_edges_repeated():
    """Against numpy's edge padding, image by image: offsets (rows, columns) move the image down
    and right, negative ones up and left; zero offsets leave it as it was."""
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.integers(0, 256, (6, 3, 5, 7), dtype=np.uint8))
    offsets = np.array([[0, 0], [1, 0], [0, -2], [-2, 1], [2, 2], [-1, -1]])
    got = shift_images(x, offsets)
    assert got.dtype == torch.uint8 and got.shape == x.shape
    for img, out, (dy, dx) in zip(x.numpy(), got.numpy(), offsets):
        padded = np.pad(img, ((0, 0), (2, 2), (2, 2)), mode="edge")
        assert np.array_equal(out, padded[:, 2 - dy:7 - dy, 2 - dx:9 - dx]), (dy, dx)
    assert np.array_equal(got[1, :, 1:].numpy(), x[1, :, :-1].numpy())     # one row down
    assert torch.equal(shift_images(x, np.zeros((6, 2), np.int64)), x)


def test_shifted_training_differs_and_resumes_exactly(tmp_path):
    """--shift changes what the steps see (the same seed without it ends elsewhere), and a run
    stopped and resumed draws the offsets an uninterrupted one would (the loop's RNG)."""
    torch.set_num_threads(1)
    x, xv = _synthetic(70, 0), _synthetic(20, 1)
    mc, tc = _tiny(epochs=2, valid_every=4, shift=1)
    whole = Trainer(mc, tc, x, xv)
    assert run(whole, RunOptions(**QUIET)) == "complete"
    plain = Trainer(mc, TrainConfig.from_dict({**tc.to_dict(), "shift": 0}), x, xv)
    assert run(plain, RunOptions(**QUIET)) == "complete"
    assert not torch.equal(whole.model.decoder.out2.weight, plain.model.decoder.out2.weight)

    ckpt = tmp_path / "run.ckpt"
    first = Trainer(mc, tc, x, xv)
    assert run(first, RunOptions(checkpoint=ckpt, max_steps=6, **QUIET)) == "max-steps"
    resumed = Trainer.from_checkpoint(load_checkpoint(ckpt), x, xv)
    assert resumed.tc.shift == 1
    assert run(resumed, RunOptions(checkpoint=ckpt, **QUIET)) == "complete"
    _assert_same(_state(resumed), _state(whole))
    with pytest.raises(ValueError, match="epochs and shift >= 0"):
        TrainConfig(shift=-1)


def test_tour_neighbours_are_predecessors_on_greedy_tours_of_the_store(monkeypatch):
    x = _synthetic(60, 0)
    mc, tc = _tiny(neighbours="tour", tour_sizes=(10, 25), tour_every=3)
    tr = Trainer(mc, tc, x)
    rng = np.random.default_rng(1)                       # codes with near neighbours
    tr.store.set_codes(np.cumsum(rng.normal(0, 0.3, (60, mc.latent_dim)), axis=0))
    replay = np.random.default_rng()
    replay.bit_generator.state = tr.rng.bit_generator.state
    tr.build_tours()
    for row, size in zip(tr.tours, (10, 25)):              # one table per size, same draws
        pred, succ = tour_pairs(tr.store.codes, (size,), replay)
        expected = np.full(60, -1)
        expected[succ] = pred
        np.testing.assert_array_equal(row, expected)
    # tour starts, and for 25 the 10 codes left out of the two subsets, have no predecessor
    assert [(row == -1).sum() for row in tr.tours] == [6, 12]

    idx = np.arange(0, 60, 2)
    queries = tr.store.codes[idx] + 0.01
    replay.bit_generator.state = tr.rng.bit_generator.state
    c_hat = tr.draw_neighbours(queries, idx)
    knn = tr.store.sample_neighbours(queries, idx, tc.knn_k, replay)
    pred = tr.tours[replay.integers(0, 2, len(idx)), idx]
    has = pred >= 0
    assert 0 < has.sum() < len(idx)
    np.testing.assert_array_equal(c_hat[has], tr.store.codes[pred[has]])
    np.testing.assert_array_equal(c_hat[~has], knn[~has])

    built = []                                            # rebuilt every tour_every steps
    monkeypatch.setattr(tr, "build_tours", lambda: built.append(tr.progress.step)
                        or Trainer.build_tours(tr))
    for t in range(7):
        tr.train_step(np.arange(t * 8, t * 8 + 8) % 60)
    assert built == [0, 3, 6]


def test_tour_neighbours_without_faiss_are_refused_before_training(monkeypatch):
    """A GPU image may lack faiss (the code store searches with torch there); the tours need it."""
    monkeypatch.setitem(sys.modules, "faiss", None)          # import faiss fails
    with pytest.raises(TrainError, match="--neighbours tour needs faiss"):
        Trainer(*_tiny(neighbours="tour"), _synthetic(20, 0))
    Trainer(*_tiny(), _synthetic(20, 0))                 # the K-nearest draw does not


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
    # every default candidate that 40 training codes can fit (1 ... 32 of 1 ... 512)
    assert set(meta["gmm_selection_nats"]) == {"1", "2", "4", "8", "16", "32"}
    assert m.gmm.means.shape[1] == 4 and not m.model.training
    # The file holds the averaged weights: same outputs as the trainer's average.
    tr = Trainer.from_checkpoint(load_checkpoint(tmp_path / "m.pt.ckpt"), data.model_pixels())
    x = torch.from_numpy(data.model_pixels()[:4])
    z = torch.randn(4, 4)
    assert torch.equal(m.model.decoder(x, z), tr.polyak.model.decoder(x, z))
    assert not any(k.endswith("mask") for k in torch.load(out, weights_only=True)["weights"])
    # and records what the coders pay on the validation images: Table 2's rows, seed 0
    fv, table = meta["final_valid"], evaluate_model(m.model, m.gmm, valid.model_pixels(), seed=0)
    assert fv["kl_tour"] == pytest.approx(table["kl_tour"], rel=1e-9)
    assert fv["kl_set"] == pytest.approx(table["kl_set"], rel=1e-9)


def _tiny_model_file(tmp_path, **arch):
    """Train a tiny model for 3 steps on synthetic 8x8 data: (model path, data, valid)."""
    np.save(tmp_path / "train.npy", _synthetic(40, 0)[:, 0])
    np.save(tmp_path / "valid.npy", _synthetic(12, 1)[:, 0])
    data, valid = load_array(tmp_path / "train.npy"), load_array(tmp_path / "valid.npy")
    out = tmp_path / "first.pt"
    train(data, out, valid=valid, config="tiny", overrides={"epochs": 1}, arch=arch,
          opts=RunOptions(max_steps=3, **QUIET))
    return out, data, valid


def test_init_starts_from_the_model_files_weights_and_codes(tmp_path):
    torch.set_num_threads(1)
    first, data, valid = _tiny_model_file(tmp_path, pixelcnn_blocks=3)
    m = load_model(first)
    assert m.config.pixelcnn_blocks == 3
    from acnzip.train import _trainer
    tr = _trainer(data, valid, "tiny", {}, None, torch.device("cpu"), RunOptions(**QUIET),
                  init=first)
    assert tr.tc.kl_warmup == 0 and tr.mc == m.config
    for name, w in m.model.state_dict().items():
        assert torch.equal(tr.model.state_dict()[name], w), name
        assert torch.equal(tr.polyak.model.state_dict()[name], w), name
    np.testing.assert_array_equal(tr.store.codes, m.model.codes(tr.x))
    # The average continues with the full decay: one step moves it by (1 - decay) of the way.
    w0 = {k: v.clone() for k, v in tr.polyak.model.state_dict().items()}
    tr.train_step(np.arange(8))
    name = "decoder.out2.weight"
    moved = tr.polyak.model.state_dict()[name] - w0[name]
    wanted = (tr.model.state_dict()[name] - w0[name]) * (1 - tr.tc.polyak_decay)
    assert wanted.abs().max() > 0
    ulp = w0[name].abs().max().item() * 2.0 ** -23          # float32 rounding of the average
    torch.testing.assert_close(moved, wanted, rtol=0.01, atol=2 * ulp)
    assert moved.abs().max() < 10 * wanted.abs().max()      # not a warm-up step (d = 2/11)
    # ... and a run from it records where it started.
    res = train(data, tmp_path / "second.pt", valid=valid, config="tiny", init=first,
                overrides={"epochs": 1}, opts=RunOptions(max_steps=2, **QUIET))
    assert res.metadata["init"]["file"] == "first.pt" and len(res.metadata["init"]["sha256"]) == 64


def test_init_refuses_a_model_for_other_images_and_arch_options(tmp_path):
    first, data, valid = _tiny_model_file(tmp_path)
    np.save(tmp_path / "big.npy", _synthetic(4, 0, 10, 10)[:, 0])
    with pytest.raises(TrainError, match=r"for 1x8x8 binary images, the data are 1x10x10"):
        train(load_array(tmp_path / "big.npy"), tmp_path / "x.pt", config="tiny", init=first,
              opts=RunOptions(**QUIET))
    with pytest.raises(TrainError, match="leave out --likelihood"):
        train(data, tmp_path / "x.pt", config="tiny", init=first, arch={"likelihood": "logistic"},
              opts=RunOptions(**QUIET))
    with pytest.raises(TrainError, match=r"--filters 4: .* has 8 feature maps per stack; --init "
                                         r"can add maps, not remove them"):
        train(data, tmp_path / "x.pt", config="tiny", init=first, arch={"pixelcnn_filters": 4},
              opts=RunOptions(**QUIET))
    assert not (tmp_path / "x.pt").exists()


def test_init_with_more_blocks_grows_a_model_that_computes_what_the_file_did(tmp_path):
    torch.set_num_threads(1)
    first, data, valid = _tiny_model_file(tmp_path, pixelcnn_blocks=2)
    m = load_model(first).model.eval()
    from acnzip.train import _trainer
    tr = _trainer(data, valid, "tiny", {}, None, torch.device("cpu"), RunOptions(**QUIET),
                  arch={"pixelcnn_blocks": 4}, init=first)
    assert tr.mc.pixelcnn_blocks == 4 and len(tr.model.decoder.blocks) == 4
    x = tr.x[:6]
    with torch.no_grad():
        z = m.encoder(x)
        for grown in (tr.model.eval(), tr.polyak.model.eval()):
            assert torch.equal(grown.decoder(x, z), m.decoder(x, z))   # bit for bit
            assert torch.equal(grown.encoder(x), z)
    np.testing.assert_array_equal(tr.store.codes, m.codes(tr.x))
    assert tr.polyak.updates == 0                 # a grown model's average warms up afresh
    new = tr.model.decoder.blocks[3]
    assert not new.h_res.weight.any() and new.h_conv.weight.abs().sum() > 0   # only h_res zero
    tr.train_step(np.arange(8))
    assert tr.model.decoder.blocks[3].h_res.weight.abs().sum() > 0            # and it learns
    # A run from it writes a 4-block model file; fewer blocks than the file's are refused.
    res = train(data, tmp_path / "grown.pt", valid=valid, config="tiny", init=first,
                arch={"pixelcnn_blocks": 4}, overrides={"epochs": 1},
                opts=RunOptions(max_steps=2, **QUIET))
    assert load_model(tmp_path / "grown.pt").config.pixelcnn_blocks == 4 and res.metadata["init"]
    with pytest.raises(TrainError, match=r"--blocks 1: .* has 2 PixelCNN blocks; --init can add"):
        train(data, tmp_path / "x.pt", config="tiny", init=first, arch={"pixelcnn_blocks": 1},
              opts=RunOptions(**QUIET))
    assert not (tmp_path / "x.pt").exists()


def test_init_with_more_filters_widens_a_model_that_computes_what_the_file_did(tmp_path):
    torch.set_num_threads(1)
    first, data, valid = _tiny_model_file(tmp_path)               # 2 blocks x 8 maps
    m = load_model(first).model.eval()
    from acnzip.train import _trainer
    tr = _trainer(data, valid, "tiny", {}, None, torch.device("cpu"), RunOptions(**QUIET),
                  arch={"pixelcnn_filters": 12, "pixelcnn_blocks": 3}, init=first)
    assert (tr.mc.pixelcnn_filters, tr.mc.pixelcnn_blocks) == (12, 3)
    x = tr.x[:6]
    with torch.no_grad():
        z = m.encoder(x)
        want = m.decoder(x, z)
        for grown in (tr.model.eval(), tr.polyak.model.eval()):
            torch.testing.assert_close(grown.decoder(x, z), want, rtol=0, atol=1e-5)
            assert torch.equal(grown.encoder(x), z)
    assert tr.polyak.updates == 0                 # the average warms up afresh
    b1 = tr.model.decoder.blocks[1]
    assert not b1.v_conv.weight[:8, 8:].any() and not b1.v_conv.weight[12:20, 8:].any()
    assert b1.v_conv.weight[8:12].abs().sum() > 0                 # into new maps: fresh
    before = b1.v_conv.weight[:8, 8:].clone()
    tr.train_step(np.arange(8))
    assert not torch.equal(tr.model.decoder.blocks[1].v_conv.weight[:8, 8:], before)  # learns
    res = train(data, tmp_path / "wide.pt", valid=valid, config="tiny", init=first,
                arch={"pixelcnn_filters": 12}, overrides={"epochs": 1},
                opts=RunOptions(max_steps=2, **QUIET))
    assert load_model(tmp_path / "wide.pt").config.pixelcnn_filters == 12 and res.metadata["init"]


@pytest.mark.parametrize("old,new", [(6, 9), (6, 12), (8, 11)])
def test_widening_colour_models_keeps_each_map_in_its_channel_group(old, new):
    """RGB: masks read by channel group, so the file's maps must keep their groups."""
    from acnzip.nn import ACN
    from acnzip.nn.grow import map_slots, widened
    from acnzip.nn.pixelcnn import channel_groups
    torch.manual_seed(0)
    small = ACN(model_config("tiny", 3, 6, 6, False, pixelcnn_filters=old)).eval()
    big = ACN(model_config("tiny", 3, 6, 6, False, pixelcnn_filters=new)).eval()
    slots = map_slots(old, new, 3)
    assert torch.equal(channel_groups(new, 3)[slots], channel_groups(old, 3))
    big.load_state_dict(widened(small.state_dict(), big.state_dict(), 3))
    x = torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8)
    z = torch.randn(4, 4)
    with torch.no_grad():
        torch.testing.assert_close(big.decoder(x, z), small.decoder(x, z), rtol=0, atol=1e-5)


def test_widening_refuses_a_width_that_shrinks_a_colour_group():
    from acnzip.nn.grow import map_slots
    with pytest.raises(ValueError, match="give colour channel 0 1 of them, fewer than the 2"):
        map_slots(4, 3, 3)


def test_bf16_training_keeps_prior_and_likelihood_float32_and_writes_float32(tmp_path):
    torch.set_num_threads(1)
    mc, tc = _tiny()
    tr = Trainer(mc, tc, _synthetic(32, 0))
    tr.autocast_dtype = torch.bfloat16
    seen = {}
    tr.model.prior.register_forward_hook(lambda mod, inp, out: seen.update(prior=inp[0].dtype))
    loss, kl, recon = tr.train_step(np.arange(16))
    assert seen["prior"] == torch.float32 and np.isfinite(loss) and abs(loss - kl - recon) < 1e-3
    # The whole CLI path with --precision bf16: the model file is float32.
    np.save(tmp_path / "train.npy", _synthetic(40, 0)[:, 0])
    res = train(load_array(tmp_path / "train.npy"), tmp_path / "m.pt", config="tiny",
                opts=RunOptions(max_steps=2, precision="bf16", **QUIET))
    assert res.steps == 2
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert {w.dtype for w in blob["weights"].values()} == {torch.float32}
