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
