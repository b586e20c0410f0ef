"""--order set and keep: batches coded with bits-back and the associative prior. Lossless for
any data (duplicates, one image, two, blank images), every table Bob builds equals Alice's, and
the archive costs its coded bound. Generated data and an untrained tiny model: runs on any
clone."""
import numpy as np
import pytest
import torch

from acnzip import api
from acnzip.archive import read_archive
from acnzip.modelfile import load_model
from acnzip.nn.integer import calibrate
from acnzip.protocol import AssociativeDataset, SetTables, set_batches
from codec import AnsStack, BinGrid

from .test_safety import digits


def _same_multiset(a: np.ndarray, b: np.ndarray) -> bool:
    key = lambda x: sorted(bytes(img) for img in x.reshape(len(x), -1))
    return len(a) == len(b) and key(a) == key(b)


@pytest.mark.parametrize("n", [1, 2, 3, 17, 60])
def test_set_batches_cover_the_images(n):
    sizes = set_batches(n, 8)
    assert sum(sizes) == n and min(sizes) >= 1 and max(sizes) <= 8
    assert sizes[0] == 1 and sizes[-1] == 1


@pytest.mark.parametrize("order", ["set", "keep", "tour"])
@pytest.mark.parametrize("images", [
    digits(1), digits(2), np.zeros((5, 28, 28), np.uint8),
    np.concatenate([digits(20), digits(4), np.zeros((3, 28, 28), np.uint8)]),  # duplicates
], ids=["one", "two", "all-blank", "duplicates"])
def test_round_trips_any_images(tmp_path, binary_model, images, order):
    np.save(tmp_path / "d.npy", images)
    r = api.compress(tmp_path / "d.npy", tmp_path / "a.acn", model=binary_model, order=order,
                     quiet=True)
    api.decompress(tmp_path / "a.acn", tmp_path / "out", model=binary_model, quiet=True)
    back = np.load(tmp_path / "out" / "d.npy")
    if order == "keep":
        assert np.array_equal(back, images)
    else:
        assert _same_multiset(back, images)
    # The payload is the coded bound plus the initial bits, within the coder's rounding.
    bound_bits = r["bound_bits_total"]
    assert abs(8 * r["payload_bytes"] - bound_bits - r["initial_bits_total"]) <= \
        96 + 2e-3 * bound_bits, r


def test_set_saves_the_order_and_reports_its_parts(tmp_path, binary_model):
    images = digits(48, seed=5)
    np.save(tmp_path / "d.npy", images)
    r = {o: api.compress(tmp_path / "d.npy", tmp_path / f"{o}.acn", model=binary_model,
                         order=o, quiet=True) for o in ("set", "keep", "tour")}
    s, k = r["set"], r["keep"]
    log2_fact = sum(np.log2(np.arange(1, 49)))
    assert s["choice_back_nats_per_image"] * 48 / np.log(2) == pytest.approx(log2_fact)
    assert k["choice_back_nats_per_image"] == 0
    for rep in (s, k):
        assert rep["j_nats_per_image"] > 0 and rep["chains"] == 0
        latent = (rep["kl_nats_per_image"] + rep["j_nats_per_image"]
                  - rep["j_back_nats_per_image"] - rep["choice_back_nats_per_image"])
        assert latent == pytest.approx(rep["latent_nats_per_image"])
        assert latent + rep["recon_nats_per_image"] == pytest.approx(rep["bound_nats_per_image"])
    assert r["tour"]["chains"] >= 1
    for order in ("set", "keep"):
        h = read_archive(tmp_path / f"{order}.acn").header
        assert h["order"] == order and "chain_lengths" not in h and h["batch"] >= 1
        assert h["base_weight"] == api.BASE_WEIGHT


class RecordingStack(AnsStack):
    """An ANS stack that records every operation: (push or pop, model type, parameter bytes,
    symbol bytes)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = []

    def _note(self, op, symbols, model, params):
        self.log.append((op, type(model).__name__,
                         tuple(np.ascontiguousarray(p).tobytes() for p in params),
                         np.asarray(symbols, dtype=np.int64).ravel().tobytes()))

    def push(self, symbols, model, *params):
        self._note("push", symbols, model, params)
        super().push(symbols, model, *params)

    def pop(self, model, *params, count=None):
        out = super().pop(model, *params, count=count)
        self._note("pop", out, model, params)
        return out


@pytest.mark.parametrize("order, base_weight, portable", [
    ("set", 0.0, False), ("set", 0.25, False), ("keep", 0.5, False), ("set", 0.25, True),
    ("keep", 0.0625, True)])
def test_alice_and_bob_code_every_symbol_with_identical_tables(binary_model, order, base_weight,
                                                              portable):
    """Every stack operation of Bob's run is the inverse of one of Alice's, in reverse order,
    with bit-identical model parameters and symbols: the multiset choices, the component
    choices, q(c | z), the priors, the posteriors and every pixel (float and portable)."""
    mf = load_model(binary_model)
    images = np.concatenate([digits(28, seed=2), digits(2, seed=2)])[:, None]  # 2 duplicates
    scales = calibrate(mf.model, torch.from_numpy(images[:8]), 1 / 64) if portable else None
    coder = api._coder(mf, BinGrid(), 1, scales)
    alice = RecordingStack.with_initial_bits(64, seed=0)
    alice.log.clear()
    AssociativeDataset(coder, 30, order == "set", 16, 4, base_weight).push(alice, images)
    bob = RecordingStack.from_bytes(alice.to_bytes(), never_empty=True)
    back = AssociativeDataset(coder, 30, order == "set", 16, 4, base_weight).pop(bob)
    flip = {"push": "pop", "pop": "push"}
    inverse = [(flip[op], *rest) for op, *rest in reversed(alice.log)]
    assert len(bob.log) == len(inverse) > 28 * 28 * len(set_batches(30, 16))
    for i, (a, b) in enumerate(zip(inverse, bob.log)):
        assert a == b, f"operation {i} differs"
    assert np.array_equal(bob.words(), AnsStack.with_initial_bits(64, seed=0).words())
    assert np.array_equal(back, images) if order == "keep" else _same_multiset(back, images)


@pytest.mark.parametrize("portable", [False, True], ids=["float", "portable"])
def test_per_image_tables_do_not_depend_on_the_batch(binary_model, portable):
    """Codes and prior parameters computed for images in Bob's batches equal Alice's, computed
    for all images at once, bit for bit (float: one image at a time; portable: batched)."""
    mf = load_model(binary_model)
    images = torch.from_numpy(digits(30, seed=2)[:, None])
    scales = calibrate(mf.model, images[:8], 1 / 64) if portable else None
    coder = api._coder(mf, BinGrid(), 1, scales)
    alice = SetTables(coder, mf.config.latent_dim, mf.config.prior_components, 30)
    alice.add(images)
    bob = SetTables(coder, mf.config.latent_dim, mf.config.prior_components, 30)
    for size in set_batches(30, 8):
        bob.add(images[bob.size:bob.size + size])
    for name in ("codes", "w", "mu", "sc"):
        assert np.array_equal(getattr(bob, name), getattr(alice, name)), name


ODD = ["a b", "é-日本", "#1", "%20", "-dash", "..dots", "x.y.z", "UPPER", "upper", "l" * 120,
       "tab\tin", "quote'\"", "semi;colon", "(paren)", "[br]"]


@pytest.mark.slow
def test_keep_restores_300_pngs_in_nested_folders_with_odd_names(tmp_path, binary_model):
    """keep mode on a folder tree of 300 PNG files with odd names: every file comes back
    with its name and pixels, and the payload is within 1% of the coded bound."""
    from PIL import Image
    src = tmp_path / "src"
    images = digits(300, seed=9)
    paths = []
    for i, img in enumerate(images):
        sub = src / ODD[i % 7] / ODD[(i // 7) % 15] / f"d{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{ODD[i % 15]} {i}.png"
        Image.fromarray(img * 255).convert("1").save(path)
        paths.append(path)
    r = api.compress(src, tmp_path / "k.acn", model=binary_model, order="keep", quiet=True)
    assert r["n_images"] == 300 and r["n_other_files"] == 0
    bound_bits = r["bound_bits_total"]
    assert abs(8 * r["payload_bytes"] - bound_bits - r["initial_bits_total"]) <= 0.01 * bound_bits
    api.decompress(tmp_path / "k.acn", tmp_path / "out", model=binary_model, quiet=True)
    restored = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*")
                      if p.is_file())
    assert restored == sorted(p.relative_to(src) for p in paths)
    for path in paths:
        back = Image.open(tmp_path / "out" / path.relative_to(src))
        assert back.mode == "1"
        assert np.array_equal(np.asarray(back), np.asarray(Image.open(path)))
