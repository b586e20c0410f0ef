"""Portable archives: the integer-exact networks (nn/integer.py) and portable tables give the
same bits for any batch, thread count and CPU vector unit, and their archives decode across
them. Untrained tiny models (real networks) and generated digits: runs on any clone."""
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from acnzip import api
from acnzip.archive import read_archive
from acnzip.modelfile import load_model
from acnzip.nn import integer
from acnzip.nn.integer import IntegerACN, calibrate, scale_names
from acnzip.nn.integer_stepper import IntegerStepper
from acnzip.protocol import SetTables
from codec import BinGrid

from .conftest import make_model_file
from .test_safety import digits

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=[True, False], ids=["binary", "8-bit"])
def net_and_images(request, tmp_path_factory):
    binary = request.param
    path = make_model_file(tmp_path_factory.mktemp("m") / "m.pt", binary=binary, seed=3)
    mf = load_model(path)
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.integers(0, 2 if binary else 256, (20, 1, 28, 28)).astype(np.uint8))
    scales = calibrate(mf.model, x[:8], 1 / 64)
    assert set(scales) == scale_names(mf.config)
    return mf, IntegerACN(mf.model, scales, 1 / 64), x


@pytest.mark.parametrize("numpy_product_rows", [1 << 30, 0], ids=["numpy product", "torch product"])
def test_stepper_gives_the_full_forward_pass_logits_bit_for_bit(net_and_images, monkeypatch,
                                                                 numpy_product_rows):
    """The stepper's sub-pixel work runs in numpy, with numpy's or torch's matrix products by
    batch size: both equal the full pass (torch) bit for bit."""
    monkeypatch.setattr(integer, "NUMPY_PRODUCT_ROWS", numpy_product_rows)
    mf, net, x = net_and_images
    z = net.code_bins(x[:6])
    full = net.logits(x[:6], z)
    seen = []

    def teacher(r, c, g, logits):
        seen.append(logits.clone())
        return x[:6, g, r, c]

    IntegerStepper(net, z, 28, 28).run(teacher)
    stepped = torch.stack(seen, 1).view(full.shape[:1] + (28, 28) + full.shape[4:])
    assert torch.equal(stepped, full[:, 0])


def test_numpy_twins_of_the_integer_operations_give_torch_bits():
    """quantise, gate and relu in numpy (the stepper's) equal the torch ones (the full pass's)
    on the values where they could part: halves at the rounding steps, the clamps, signed
    zeros, tiny and huge values, scales that are not float32 numbers."""
    rng = np.random.default_rng(0)
    steps = np.arange(-600, 601) / 64.0
    special = np.concatenate([steps, steps + 0.5 / 64, steps - 0.5 / 64, [0.0, -0.0, 1e-30,
                              -1e-30, 3e38, -3e38, 127.5, -127.5, 126.5, 0.5, -0.5, 1.5]])
    values = np.concatenate([special, rng.normal(0, 20, 20000)]).astype(np.float32)
    for step in (64, 97, 256, 1024):                   # each table on its own half steps
        k = np.arange(-8 * step - 2, 8 * step + 3, dtype=np.float64)
        ties = np.concatenate([k, k + 0.5, k - 0.5]) / step
        own = np.concatenate([ties, np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf),
                              values[:20000]]).astype(np.float32)
        own = own[: len(own) // 64 * 64].reshape(-1, 64)
        with np.errstate(over="ignore"):               # 3e38 * 64 is inf, then the clamp
            got = integer.tables(step).gate_numpy(own.copy())
        want = integer.tables(step).gate(torch.from_numpy(own.copy()), dim=1)
        assert got.tobytes() == want.numpy().tobytes()
    assert integer.Precision().table_step == 64                # the default: tables at 1/64
    for scale in (1.0, 0.1, 0.0123, 3.3e-3, 1 / 127):
        for v in (values, values * np.float32(scale)):
            with np.errstate(over="ignore"):            # 3e38 / 0.0123 is inf, then 127
                got = integer.quantise_numpy(v.copy(), scale)
            assert got.tobytes() == \
                integer.quantise(torch.from_numpy(v.copy()), scale).numpy().tobytes()
    assert integer.relu_numpy(values).tobytes() == \
        torch.relu(torch.from_numpy(values)).numpy().tobytes()
    lin = integer.IntLinear(torch.randn(48, 64), torch.randn(48), 0.37)
    a = np.rint(rng.uniform(-127, 127, (70, 64))).astype(np.float32)
    want = lin(torch.from_numpy(a)).numpy().tobytes()
    for rows in (1, 1 << 30):
        integer.NUMPY_PRODUCT_ROWS, saved = rows, integer.NUMPY_PRODUCT_ROWS
        try:
            assert lin.call_numpy(a).tobytes() == want
        finally:
            integer.NUMPY_PRODUCT_ROWS = saved


def test_networks_do_not_depend_on_the_batch(net_and_images):
    """Codes, prior parameters and the stepper's logits of an image are the same computed
    alone, in a batch of 7 or of all 20, bit for bit."""
    mf, net, x = net_and_images
    whole = net.code_bins(x)
    assert np.array_equal(np.concatenate([net.code_bins(x[i:i + 1]) for i in range(20)]), whole)
    assert np.array_equal(np.concatenate([net.code_bins(x[i:i + 7]) for i in range(0, 20, 7)]),
                          whole)
    p_all = net.prior_params(whole)
    for i in (0, 13):
        for a, b in zip(net.prior_params(whole[i:i + 1]), p_all):
            assert np.array_equal(a[0], b[i])
    assert torch.equal(net.logits(x[3:4], whole[3:4])[0], net.logits(x[:9], whole[:9])[3])


def test_integer_model_stays_close_to_the_float_model(net_and_images):
    mf, net, x = net_and_images
    with torch.no_grad():
        c = mf.model.encoder(x).double().numpy()
    assert np.abs(net.code_bins(x) / 64 - c).max() < 0.1 + 0.05 * np.abs(c).max()


def test_mixture_tables_and_scores_do_not_depend_on_the_rows_beside_them(binary_model):
    """(Codes and priors in Bob's batches: test_set_protocol, portable case.) The portable
    mixture tables and q's scores of a row are the same computed with other rows or alone."""
    mf = load_model(binary_model)
    images = torch.from_numpy(digits(30, seed=2)[:, None])
    coder = api._coder(mf, BinGrid(), 1, calibrate(mf.model, images[:8], 1 / 64))
    tables = SetTables(coder, mf.config.latent_dim, mf.config.prior_components, 30)
    tables.add(images)
    rows = np.arange(30)
    assert np.array_equal(tables.mixture(rows[:9]).probs, tables.mixture(rows).probs[:9])
    z = coder.grid.index(tables.codes[:5].astype(np.float64))
    assert np.array_equal(tables.score(z, np.tile(rows[:4], (5, 1))),
                          np.stack([tables.score(z[i:i + 1], rows[None, :4])[0]
                                    for i in range(5)]))


# -- across machines: the same computation under other vector units and thread counts ----------
PROBE = """
import hashlib, sys, numpy as np, torch
from acnzip import api
from acnzip.modelfile import load_model
from acnzip.nn.integer import calibrate
from acnzip.protocol import SetTables
from codec import BinGrid
torch.set_num_threads(int(sys.argv[2]))
mf = load_model(sys.argv[1])
rng = np.random.default_rng(5)
x = torch.from_numpy(rng.integers(0, 2, (12, 1, 28, 28)).astype(np.uint8))
coder = api._coder(mf, BinGrid(), int(sys.argv[2]), calibrate(mf.model, x[:8], 1 / 64))
t = SetTables(coder, mf.config.latent_dim, mf.config.prior_components, 12)
t.add(x)
h = hashlib.sha256()
for a in (t.codes, t.w, t.mu, t.sc, t.mixture(np.arange(12)).probs, coder.base(12).mass):
    h.update(np.ascontiguousarray(a).tobytes())
z = coder.grid.index(t.codes.astype(np.float64))
h.update(t.score(z, np.tile(np.arange(12), (12, 1))).tobytes())
h.update(coder.posterior(t.codes.astype(np.float64)).probs.tobytes())
active = np.ones(12, bool)
def teacher(r, c, g, logits):
    h.update(logits.numpy().tobytes())
    h.update(coder.pixel_codec(logits, active).p.tobytes())
    return x[:, g, r, c]
coder.stepper(z, active).run(teacher)
print(h.hexdigest())
"""

MACHINES = {                       # what an ordinary laptop or an old server would compute
    "default": {},
    "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
             "NPY_DISABLE_CPU_FEATURES": "X86_V4", "OPENBLAS_CORETYPE": "Haswell"},
    "SSE41": {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default",
              "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4", "OPENBLAS_CORETYPE": "Nehalem"},
    "portable kernels": {"ATEN_CPU_CAPABILITY": "default"},
}


def _run(code_or_args, env_extra, *args):
    env = {**os.environ, **env_extra, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", code_or_args, *args] if isinstance(code_or_args, str) \
        else [sys.executable, "-m", "acnzip", *code_or_args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


@pytest.mark.slow
def test_every_table_is_the_same_under_other_vector_units_and_threads(binary_model):
    hashes = {(name, threads): _run(PROBE, env, str(binary_model), str(threads))
              for name, env in MACHINES.items() for threads in ((1, 2) if name == "default"
                                                                 else (1,))}
    assert len(set(hashes.values())) == 1, hashes


@pytest.mark.slow
@pytest.mark.parametrize("order", ["set", "keep"])
def test_archives_decode_across_vector_units_and_thread_counts(tmp_path, binary_model, order):
    """Made under SSE4.1 and portable ATen kernels with 1 thread, decoded with the defaults
    (AVX-512 where the CPU has it) and 2 threads; made with the defaults, decoded under AVX2."""
    images = np.concatenate([digits(40, seed=9), np.zeros((2, 28, 28), np.uint8)])
    np.save(tmp_path / "d.npy", images)
    a, b = tmp_path / "a.acn", tmp_path / "b.acn"
    _run(["compress", str(tmp_path / "d.npy"), "-o", str(a), "--order", order, "--model",
          str(binary_model), "-q", "--threads", "1"], MACHINES["SSE41"])
    _run(["decompress", str(a), "-o", str(tmp_path / "out_a"), "--model", str(binary_model),
          "-q", "--threads", "2"], {})
    api.compress(tmp_path / "d.npy", b, model=binary_model, order=order, quiet=True)
    _run(["decompress", str(b), "-o", str(tmp_path / "out_b"), "--model", str(binary_model),
          "-q"], MACHINES["AVX2"])
    assert read_archive(a).payload == read_archive(b).payload      # the same bits everywhere
    for out in ("out_a", "out_b"):
        back = np.load(tmp_path / out / "d.npy")
        if order == "keep":
            assert np.array_equal(back, images)
        else:
            key = lambda x: sorted(bytes(i) for i in x.reshape(len(x), -1))
            assert key(back) == key(images)


def test_portable_header_has_scales_and_no_fingerprint(tmp_path, binary_model):
    np.save(tmp_path / "d.npy", digits(5))
    api.compress(tmp_path / "d.npy", tmp_path / "p.acn", model=binary_model, quiet=True)
    api.compress(tmp_path / "d.npy", tmp_path / "f.acn", model=binary_model, quiet=True,
                 portable=False)
    p, f = read_archive(tmp_path / "p.acn").header, read_archive(tmp_path / "f.acn").header
    assert set(p["portable"]["scales"]) == scale_names(load_model(binary_model).config)
    assert "levels" not in p["portable"] and p["posterior_window"] == 8.0
    assert read_archive(tmp_path / "p.acn").version == 9 and p["base_coding"] == "bits-back"
    assert "fingerprint" not in p and "portable" not in f and len(f["fingerprint"]) == 32
    assert "base_coding" not in f and read_archive(tmp_path / "f.acn").version == 6
    api.decompress(tmp_path / "f.acn", tmp_path / "out", model=binary_model, quiet=True)
    assert np.array_equal(np.load(tmp_path / "out" / "d.npy"), digits(5))


def test_tampered_scales_are_refused_in_one_line(tmp_path, binary_model):
    from acnzip.archive import pack
    np.save(tmp_path / "d.npy", digits(3))
    api.compress(tmp_path / "d.npy", tmp_path / "p.acn", model=binary_model, quiet=True)
    a = read_archive(tmp_path / "p.acn")
    for bad, message in ((dict(list(a.header["portable"]["scales"].items())[1:]), "do not fit"),
                         ({**a.header["portable"]["scales"], "enc_fc": -1.0}, "'portable'"),
                         ({**a.header["portable"]["scales"], "enc_fc": float("nan")},
                          "'portable'"),
                         (a.header["portable"]["scales"], "levels need format version 5")):
        a.header["portable"]["scales"] = bad
        data = bytearray(pack(a))
        if message.startswith("levels"):      # a version-4 container claiming levels
            a.header["portable"]["levels"] = 511
            data = bytearray(pack(a))
            struct.pack_into("<H", data, 4, 4)
            struct.pack_into("<I", data, 40, zlib.crc32(bytes(data[:40])))
        (tmp_path / "bad.acn").write_bytes(bytes(data))
        with pytest.raises(Exception, match=message):
            api.decompress(tmp_path / "bad.acn", tmp_path / "o", model=binary_model,
                           quiet=True)
        assert not (tmp_path / "o").exists()


def test_8bit_archives_use_finer_networks_and_older_ones_still_decode(tmp_path, monkeypatch):
    """8-bit portable archives record the PixelCNN's activation levels (1,023), the weights'
    levels (up to 2,047, fitted), the tables' step (1/1,024) and the gates' levels (511)
    (format version 10) and q's window; the stepper equals the full pass with them; archives of
    the older versions (8: 511 activation and weight levels, tables at 1/256; 6: 127 weight
    levels and tables at 1/64; 5: q on the whole grid too; 4: 127 activation levels too) still
    decode."""
    from acnzip.nn.integer import PRECISION_8BIT as finer, PRECISION_8BIT_V8 as v8, Precision
    model = make_model_file(tmp_path / "m8.pt", binary=False, seed=4)
    mf = load_model(model)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (9, 28, 28)).astype(np.uint8)
    np.save(tmp_path / "d.npy", x)
    t = torch.from_numpy(x[:, None])
    assert finer == Precision(1023, 2047, 1024, 511, fit_weights=True)
    net = IntegerACN(mf.model, calibrate(mf.model, t, 1 / 64, finer), 1 / 64, finer)
    z = net.code_bins(t[:3])
    full, seen = net.logits(t[:3], z), []

    def teacher(r, c, g, logits):
        seen.append(logits.clone())
        return t[:3, g, r, c]

    IntegerStepper(net, z, 28, 28).run(teacher)
    assert torch.equal(torch.stack(seen, 1).view(full.shape[:1] + (28, 28, 256)), full[:, 0])
    monkeypatch.setattr(api, "BASE_BITS_BACK", False)       # versions 4-8: the GMM by dims
    for i, (precision, window, version, recorded) in enumerate((
            (finer, 8.0, 10, {"levels": 1023, "weight_levels": 2047, "table_step": 1024,
                              "gate_levels": 511, "fit_weights": True}),
            (Precision(300, 1500, 97, 200, True), 8.0, 10,    # the reader uses what is recorded
             {"levels": 300, "weight_levels": 1500, "table_step": 97, "gate_levels": 200,
              "fit_weights": True}),
            (Precision(300, 1500, 97, 200), 8.0, 10,
             {"levels": 300, "weight_levels": 1500, "table_step": 97, "gate_levels": 200}),
            (v8, 8.0, 8, {"levels": 511, "weight_levels": 511, "table_step": 256}),
            (Precision(300, 1500, 97), 8.0, 8,
             {"levels": 300, "weight_levels": 1500, "table_step": 97}),
            (Precision(511), 8.0, 6, {"levels": 511}),
            (Precision(511), None, 5, {"levels": 511}), (Precision(), None, 4, {}))):
        monkeypatch.setattr(api, "PRECISION_8BIT", precision)
        monkeypatch.setattr(api, "POSTERIOR_WINDOW", window)
        api.compress(tmp_path / "d.npy", tmp_path / f"{i}.acn", model=model,
                     order="keep", quiet=True)
        a = read_archive(tmp_path / f"{i}.acn")
        assert a.version == version
        p = a.header["portable"]
        assert {k: v for k, v in p.items() if k != "scales"} == recorded
        assert Precision.from_header(p) == precision
        assert a.header.get("posterior_window") == window
        monkeypatch.setattr(api, "PRECISION_8BIT", finer)
        monkeypatch.setattr(api, "POSTERIOR_WINDOW", 8.0)
        api.decompress(tmp_path / f"{i}.acn", tmp_path / f"o{i}", model=model,
                       quiet=True)
        assert np.array_equal(np.load(tmp_path / f"o{i}" / "d.npy"), x)


@pytest.mark.parametrize("in_max", [127.0, 1023.0, 255.0, float(1 << 20)])
def test_fitted_weight_levels_keep_every_sum_exact_in_float32(in_max):
    """Each output's fitted levels are at most the cap, at least Q where the layer stays in
    float32, and its worst case (every input at +-in_max, signed as its weights) is summed
    exactly: the float32 layer gives the float64 sum. Layers whose inputs are too wide for
    float32 even at Q take the cap and sum in float64."""
    g = torch.Generator().manual_seed(int(in_max) % 1000)
    w = torch.randn(48, 96, generator=g, dtype=torch.float64) * torch.rand(48, 1, generator=g,
                                                                          dtype=torch.float64)
    w[3] = 0.0                                                    # an all-zero output
    w[5, 7] = 40.0                                                # one large weight in a row
    lin = integer.IntLinear(w.float(), None, 1.0, in_max, 2047, fit=True)
    levels = lin.levels
    assert levels.shape == (48,) and float(levels.max()) <= 2047
    wi = lin.weight.double()
    worst = float(in_max) * wi.abs().sum(dim=1)
    if lin.dtype == torch.float32:
        assert float(levels.min()) >= integer.Q and float(worst.max()) < 2 ** 24
        assert float(levels[5]) == 2047 or float(levels[5]) > float(levels[0])   # peaked: more
        x = (torch.sign(wi) * in_max).float()                     # (48, 96): row r's worst case
        got = torch.stack([lin.scaled(x[r:r + 1])[0, r] for r in range(48)])
        want = (wi * torch.sign(wi) * in_max).sum(dim=1) * lin.mult.double()
        assert torch.equal(got.double(), want.float().double())
    else:
        assert in_max == 1 << 20 and bool((levels == 2047).all())
    again = integer.IntLinear(w.float(), None, 1.0, in_max, 2047, fit=True)
    assert torch.equal(again.levels, levels) and torch.equal(again.weight, lin.weight)


def test_softmax_table_is_exact_table_of_the_softmax_weights_bit_for_bit():
    """The pixel tables' fast route (counts from one table) equals exact_table's, for logits
    of every spread, ties at the maximum and differences beyond the table's reach."""
    from codec import exactmath
    from acnzip.nn.integer import softmax_table, softmax_weights
    rng = np.random.default_rng(8)
    for spread in (1e-3, 1.0, 10.0, 1e3, 1e6):
        lg = torch.from_numpy((rng.standard_normal((64, 256)) * spread).astype(np.float32))
        lg[0] = 0.0
        lg[1, :7] = lg[1].max()
        want = exactmath.exact_table(softmax_weights(lg))
        assert np.array_equal(softmax_table(lg), want)


@pytest.mark.slow
def test_8bit_archives_decode_across_vector_units_and_thread_counts(tmp_path):
    """The 8-bit default (format version 10: weights fitted to float32's exact range, gates at
    511 levels, tables at 1/1,024) with the trained mnist.pt: made under SSE4.1 with 1 thread and with the defaults, the same bytes;
    decoded under AVX2 and with the defaults and 2 threads."""
    from .test_retired_models import _grey_digits
    images = np.concatenate([_grey_digits(20, seed=13), _grey_digits(20, seed=13)[:, :, ::-1]])
    np.save(tmp_path / "g.npy", images)
    a, b = tmp_path / "a.acn", tmp_path / "b.acn"
    _run(["compress", str(tmp_path / "g.npy"), "-o", str(a), "-q", "--threads", "1"],
         MACHINES["SSE41"])
    api.compress(tmp_path / "g.npy", b, quiet=True)
    assert read_archive(a).version == 10 and read_archive(a).header["model_name"] == "mnist.pt"
    assert read_archive(a).payload == read_archive(b).payload      # the same bits everywhere
    _run(["decompress", str(a), "-o", str(tmp_path / "out_a"), "-q"], MACHINES["AVX2"])
    _run(["decompress", str(b), "-o", str(tmp_path / "out_b"), "-q", "--threads", "2"], {})
    key = lambda x: sorted(bytes(i) for i in x.reshape(len(x), -1))
    for out in ("out_a", "out_b"):
        assert key(np.load(tmp_path / out / "g.npy")) == key(images)
