"""The benchmark machinery on a small real set: every method lossless, acnzip never below its
bound, the report's schema, and peers whose tool is missing reported rather than crashing."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from acnzip.data import load_dataset
from acnzip.train import RunOptions, train
from benchmarks.peers import (NotLossless, PEERS, Peer, pbm_array, pbm_bytes, run_peer,
                              run_peers, tile, untile, verify_lossless, zpaq_decode, zpaq_encode,
                              _tools)
from benchmarks.report import REQUIRED_KEYS, ROW_KEYS, write_report
from benchmarks.run import benchmark, load_images, same_set

pytestmark = pytest.mark.slow      # trains a model and runs every peer: `-m "not slow"` skips

N_IMAGES = 96
TOLERANCE = 0.01          # measured may fall below a bound by at most 1% (estimator noise)


@pytest.fixture(scope="module")
def tiny_model(datasets, tmp_path_factory):
    """A tiny ACN trained for 30 steps on 512 binarized MNIST training digits."""
    tmp = tmp_path_factory.mktemp("bench-model")
    np.save(tmp / "train.npy",
            np.load(datasets / "binarized_mnist" / "train.npz")["x"][:512])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    train(load_dataset(tmp / "train.npy"), tmp / "tiny.pt", config="tiny",
          opts=RunOptions(max_steps=30, progress=False, log=lambda msg: None), device="cpu")
    return tmp / "tiny.pt"


@pytest.fixture(scope="module")
def quick_report(datasets, tiny_model, tmp_path_factory):
    """benchmark() on the first N_IMAGES test digits, written as json/md/png."""
    images = load_images("binarized_mnist", "test", N_IMAGES, datasets)
    res = benchmark(images, "bm-test-small", "binarized_mnist", "test", str(tiny_model),
                    quick=True)
    paths = write_report(res, tmp_path_factory.mktemp("bench-out"))
    return res, paths


def test_report_files_are_written_with_the_schema(quick_report):
    res, paths = quick_report
    saved = json.loads(paths["json"].read_text())
    assert set(REQUIRED_KEYS) <= set(saved)
    assert saved["n_images"] == N_IMAGES and saved["dims_per_image"] == 784
    for row in saved["methods"]:
        assert set(ROW_KEYS) <= set(row), row["method"]
    md = paths["md"].read_text()
    assert "| method | form | bytes | bits/image | nats/image | bits/dim |" in md
    with Image.open(paths["png"]) as img:
        assert img.format == "PNG" and img.width > 500


def test_every_available_method_is_lossless_and_missing_ones_say_why(quick_report):
    res, _ = quick_report
    methods = {r["method"] for r in res["methods"]}
    assert {"acnzip", "PNG", "WebP lossless", "gzip -9", "bzip2 -9", "xz -9e"} <= methods
    for r in res["methods"]:
        if r["available"]:
            assert r["lossless"] is True and r["total_bytes"] > 0, r
            assert math.isclose(r["bits_per_image"], 8 * r["total_bytes"] / N_IMAGES)
            assert math.isclose(r["nats_per_image"], r["bits_per_image"] * math.log(2))
        else:
            assert r["reason"], r


def test_acnzip_measured_is_not_below_its_bounds(quick_report):
    res, _ = quick_report
    acn, bound = res["acnzip"], res["bound"]
    assert acn["available"] and bound["available"]
    for order in ("set", "keep", "tour"):
        r = acn[order]
        assert r["lossless"]
        assert r["nats_per_image"] >= r["bound_nats_per_image"] * (1 - TOLERANCE)
    # the tour pays what the short path's bound says, plus chain starts and the header
    assert acn["tour"]["nats_per_image"] >= bound["short"] * (1 - TOLERANCE)
    assert acn["keep"]["choice_back_nats_per_image"] == 0 == acn["tour"]["j_nats_per_image"]
    # the multiset choices give back about log2 N! bits
    choice_bits = acn["set"]["choice_back_nats_per_image"] * N_IMAGES / math.log(2)
    assert choice_bits == pytest.approx(math.lgamma(N_IMAGES + 1) / math.log(2), rel=1e-6)
    fwd = acn["forward_pass"]
    assert fwd["seconds"] > 0 and fwd["decode_over_forward_set"] > 0


def test_acnzip_is_skipped_with_a_reason_when_no_model_fits(datasets):
    images = load_images("cifar10", "test", 8, datasets)          # 32x32x3: no shipped model
    res = benchmark(images, "cifar-small", "cifar10", "test", model=None)
    assert not res["acnzip"]["available"] and "--model" in res["acnzip"]["reason"]
    assert not res["bound"]["available"]
    assert all(r["lossless"] for r in res["methods"] if r["available"])
    assert any(r["method"] == "PNG" and r["available"] for r in res["methods"])


def test_colour_peers_round_trip_on_cifar(datasets):
    images = load_images("cifar10", "test", 6, datasets)           # (6, 32, 32, 3)
    fast = [p for p in PEERS if p.method in ("PNG", "gzip -9", "JPEG XL lossless", "JBIG1")]
    rows = {(r.method, r.form): r for r in run_peers(images, False, peers=fast)}
    assert rows[("PNG", "whole-set")].lossless and rows[("gzip -9", "per-image")].lossless
    assert not rows[("JBIG1", "whole-set")].available                      # binary only


def test_a_peer_whose_tool_is_missing_is_unavailable_not_an_error():
    peer = Peer("nothing", "stream", zpaq_encode, zpaq_decode, _tools("acnzip-no-such-tool"),
                uses_tmp=True)
    r = run_peer(peer, np.zeros((3, 4, 4), np.uint8), True, "whole-set")
    assert not r.available and "acnzip-no-such-tool not found" in r.reason


def test_tiling_round_trips_for_any_count():
    rng = np.random.default_rng(0)
    for n, shape in ((1, (5, 7)), (10, (4, 3)), (17, (2, 2, 3))):
        x = rng.integers(0, 256, (n,) + shape).astype(np.uint8)
        big, tiling = tile(x)
        assert tiling["rows"] * tiling["cols"] >= n and tiling["cols"] == math.ceil(n ** 0.5)
        assert np.array_equal(untile(big, tiling, n), x)


def test_pbm_round_trips_rows_that_are_not_whole_bytes():
    x = np.random.default_rng(1).integers(0, 2, (13, 11)).astype(np.uint8)
    assert np.array_equal(pbm_array(pbm_bytes(x)), x)


def test_a_changed_pixel_is_caught():
    x = np.zeros((2, 3, 3), np.uint8)
    y = x.copy()
    y[1, 2, 2] = 1
    with pytest.raises(NotLossless):
        verify_lossless(x, y, "test")
    assert same_set(x[::-1], x) and not same_set(x, y)


@pytest.mark.parametrize("binary", [True, False])
def test_paq8px_peer_round_trips_tiled_images_where_it_runs(binary):
    from benchmarks.peers import paq8px_path
    paq = [p for p in PEERS if p.method.startswith("paq8px")][0]
    rng = np.random.default_rng(0)
    images = (rng.random((12, 9, 7)) < 0.3).astype(np.uint8) if binary else \
        rng.integers(0, 256, (12, 9, 7), dtype=np.uint8)
    r = run_peer(paq, images, binary, "whole-set")
    if paq8px_path() is None:
        assert not r.available and "paq8px not found" in r.reason
        return
    assert r.available and r.lossless and r.total_bytes > 0, r
    assert not run_peer(paq, images, binary, "per-image").available      # whole set only


def test_paq8px_peer_round_trips_colour_images_where_it_runs():
    from benchmarks.peers import paq8px_path
    paq = [p for p in PEERS if p.method.startswith("paq8px")][0]
    images = np.random.default_rng(2).integers(0, 256, (6, 8, 5, 3), dtype=np.uint8)
    r = run_peer(paq, images, False, "whole-set")
    if paq8px_path() is None:
        assert not r.available
        return
    assert r.available and r.lossless and r.total_bytes > 0, r
