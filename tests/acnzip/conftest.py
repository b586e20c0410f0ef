"""Small real models and data for the protocol tests (untrained weights are enough for
exactness: they are still real networks computing real probabilities)."""
import numpy as np
import pytest
import torch

from acnzip.config import model_config, train_config
from acnzip.gmm import fit_gmm
from acnzip.modelfile import save_model
from acnzip.nn import ACN


def make_model_file(path, channels=1, size=28, binary=True, seed=0, **arch):
    torch.manual_seed(seed)
    cfg = model_config("tiny", channels=channels, height=size, width=size, binary=binary,
                       **arch)
    model = ACN(cfg).eval()
    rng = np.random.default_rng(seed)
    hi = 2 if binary else 256
    x = torch.from_numpy(rng.integers(0, hi, (64, channels, size, size)).astype(np.uint8))
    with torch.no_grad():
        codes = model.encoder(x).double().numpy()
    gmm = fit_gmm(codes, 2, seed=seed)[0].convolved(1.0)
    save_model(path, model, train_config("tiny"), gmm, {"note": "untrained, for tests"})
    return path


@pytest.fixture(scope="session")
def binary_model(tmp_path_factory):
    return make_model_file(tmp_path_factory.mktemp("models") / "tiny-binary.pt")


@pytest.fixture(scope="session")
def mnist_subset(datasets):
    """The first 40 binarised test digits of the `datasets` root, (40, 28, 28) uint8 {0, 1}."""
    return np.load(datasets / "binarized_mnist" / "test.npz")["x"][:40]
