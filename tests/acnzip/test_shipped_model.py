"""The shipped model: present in the package, the default for 28x28 binary images, trained by
acnzip's own `acnzip train` (its command is recorded), and it codes real digits well."""
import numpy as np
import pytest

from acnzip import api
from acnzip.modelfile import DEFAULT_MODEL, load_model


def test_shipped_model_is_the_default_and_was_made_by_acnzip_train():
    path = api.default_model_path((1, 28, 28), True)
    assert path == DEFAULT_MODEL and path.stat().st_size < 20 * 2 ** 20
    mf = load_model(path)
    cfg = mf.config
    assert (cfg.channels, cfg.height, cfg.width, cfg.binary) == (1, 28, 28, True)
    assert mf.metadata["command"].startswith("acnzip train")
    assert mf.metadata["train_data"]["n"] == 50_000


@pytest.mark.slow
def test_shipped_model_compresses_real_digits_below_jbig_level(tmp_path, datasets):
    x = np.load(datasets / "binarized_mnist" / "test.npz")["x"]
    pick = np.random.default_rng(0).permutation(len(x))[:64]       # a seeded pick
    np.save(tmp_path / "d.npy", x[pick])
    r = api.compress(tmp_path / "d.npy", tmp_path / "d.acn", quiet=True)     # default model
    assert r["recon_nats_per_image"] + r["kl_nats_per_image"] < 100       # nats/image; JBIG1 tiled: ~125 measured
    api.decompress(tmp_path / "d.acn", tmp_path / "out", quiet=True)
    assert np.array_equal(np.load(tmp_path / "out" / "d.npy"), x[pick])


def test_shipped_8bit_model_is_the_default_for_grey_digits_and_was_made_by_acnzip_train():
    path = api.default_model_path((1, 28, 28), False)
    assert path.name == "mnist.pt" and path.stat().st_size < 20 * 2 ** 20
    mf = load_model(path)
    cfg = mf.config
    assert (cfg.channels, cfg.height, cfg.width, cfg.binary) == (1, 28, 28, False)
    assert cfg.likelihood == "softmax"            # portable archives need the softmax head
    assert mf.metadata["command"].startswith("acnzip train")
    assert mf.metadata["train_data"]["n"] == 55_000


@pytest.mark.slow
def test_shipped_8bit_model_codes_real_grey_digits_losslessly(tmp_path, datasets):
    x = np.load(datasets / "mnist" / "mnist.npz")["x_test"]
    pick = np.random.default_rng(1).permutation(len(x))[:32]
    np.save(tmp_path / "g.npy", x[pick])
    r = api.compress(tmp_path / "g.npy", tmp_path / "g.acn", quiet=True)     # default model
    assert r["model_name"] == "mnist.pt" and r["portable"]
    assert r["bits_per_dim"] < 1.6        # 8-bit MNIST test set: 1.04 measured; PNG ~ 2.3
    api.decompress(tmp_path / "g.acn", tmp_path / "out", quiet=True)
    assert np.array_equal(np.load(tmp_path / "out" / "g.npy"), x[pick])
