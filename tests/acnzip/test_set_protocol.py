"""--order set: multiset bits-back with the associative prior. Lossless for any multiset
(duplicates, one image, two, blank images), Alice's tables equal Bob's, and the archive costs
its coded bound. Generated data and an untrained tiny model: runs on any clone."""
import numpy as np
import pytest
import torch

from acnzip import api
from acnzip.modelfile import load_model
from acnzip.protocol import SetTables, decode_set, encode_set, set_batches
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


@pytest.mark.parametrize("images", [
    digits(1), digits(2), np.zeros((5, 28, 28), np.uint8),
    np.concatenate([digits(20), digits(4), np.zeros((3, 28, 28), np.uint8)]),  # duplicates
], ids=["one", "two", "all-blank", "duplicates"])
def test_set_round_trips_any_multiset(tmp_path, binary_model, images):
    np.save(tmp_path / "d.npy", images)
    r = api.compress(tmp_path / "d.npy", tmp_path / "s.acn", model=binary_model, order="set",
                     quiet=True)
    api.decompress(tmp_path / "s.acn", tmp_path / "out", model=binary_model, quiet=True)
    back = np.load(tmp_path / "out" / "d.npy")
    assert _same_multiset(back, images)
    # The payload is the coded bound plus the initial bits, within the coder's rounding.
    bound_bits = r["bound_bits_total"]
    assert abs(8 * r["payload_bytes"] - bound_bits - r["initial_bits_total"]) <= \
        96 + 2e-3 * bound_bits, r


def test_set_saves_the_order_and_reports_its_parts(tmp_path, binary_model):
    images = digits(48, seed=5)
    np.save(tmp_path / "d.npy", images)
    r = {o: api.compress(tmp_path / "d.npy", tmp_path / f"{o}.acn", model=binary_model,
                         order=o, quiet=True) for o in ("set", "tour")}
    s = r["set"]
    log2_fact = sum(np.log2(np.arange(1, 49)))
    assert s["choice_back_nats_per_image"] * 48 / np.log(2) == pytest.approx(log2_fact)
    assert s["j_nats_per_image"] > 0 and s["order_bits_total"] == 0
    assert s["chains"] == 0 and r["tour"]["chains"] >= 1
    from acnzip.archive import read_archive
    h = read_archive(tmp_path / "set.acn").header
    assert h["order"] == "set" and "chain_lengths" not in h and h["batch"] >= 1


def test_alice_and_bob_compute_identical_tables(binary_model):
    """Every table of every codec of a step is computed from per-image network outputs, so
    Bob's (images decoded in his batches) equal Alice's (all images at once), bit for bit."""
    mf = load_model(binary_model)
    coder = api._coder(mf, BinGrid(), 1)
    images = digits(30, seed=2)[:, None]
    stack = AnsStack.with_initial_bits(64, seed=0)
    encode_set(coder, images, stack, batch=8, k=4)
    tables_seen = []
    original_add = SetTables.add

    def recording_add(self, x):
        rows = original_add(self, x)
        tables_seen.append(self)
        return rows

    SetTables.add = recording_add
    try:
        back = decode_set(coder, 30, AnsStack.from_bytes(stack.to_bytes(), never_empty=True),
                          batch=8, k=4)
    finally:
        SetTables.add = original_add
    bob = tables_seen[-1]
    alice = SetTables(coder, mf.config.latent_dim, mf.config.prior_components, 30)
    alice.add(torch.from_numpy(images))
    order = {bytes(img): i for i, img in enumerate(images.reshape(30, -1))}
    rows = np.array([order[bytes(img)] for img in back.reshape(30, -1)])
    for name in ("codes", "w", "mu", "sc"):
        assert np.array_equal(getattr(bob, name)[:30], getattr(alice, name)[rows]), name
    held = np.arange(30)
    z = coder.grid.index(alice.codes[rows].astype(np.float64))
    assert np.array_equal(bob.mixture(held).probs, alice.mixture(rows).probs)
    cand = np.tile(np.arange(5), (30, 1))
    assert np.array_equal(bob.score(z, cand), alice.score(z, rows[cand]))
