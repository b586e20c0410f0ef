"""Alice and Bob: exact round trips, the same code path on both sides, and the bound."""
import numpy as np
import pytest
import torch

from codec import AnsStack
from acnzip.config import model_config
from acnzip.modelfile import load_model
from acnzip.nn.pixelcnn import GatedPixelCNN
from acnzip.nn.stepper import PixelStepper
from acnzip.protocol import (Coder, Layout, chain_lengths, decode_dataset, encode_dataset,
                             seed_words)


@pytest.mark.parametrize("channels, binary, likelihood", [(1, True, "softmax"),
                                                         (3, False, "softmax"),
                                                         (3, False, "logistic")])
def test_cached_stepper_logits_equal_full_pass(channels, binary, likelihood):
    torch.manual_seed(0)
    cfg = model_config("tiny", channels=channels, height=7, width=6, binary=binary,
                       likelihood=likelihood)
    net = GatedPixelCNN(cfg).eval()
    for p in net.parameters():
        p.data.normal_(0, 0.3)
    x = torch.randint(0, 2 if binary else 256, (3, channels, 7, 6))
    z = torch.randn(3, cfg.latent_dim)
    with torch.no_grad():
        full = net(x, z)
        if not binary:                    # the coder's 256 log-probabilities (or logits)
            full = net.log_probs(full)
    seen = []

    def teacher(r, c, g, logits):
        ref = full[:, g, r, c]
        assert torch.allclose(logits, ref, atol=1e-5, rtol=1e-5), (r, c, g)
        seen.append((r, c, g))
        return x[:, g, r, c]

    out = PixelStepper(net, z, 7, 6).run(teacher)
    assert torch.equal(out.long(), x.long())
    assert seen == [(r, c, g) for r in range(7) for c in range(6) for g in range(channels)]


@pytest.mark.parametrize("n, b", [(1, 1), (10, 3), (100, 10), (10_000, 100), (37, 37)])
def test_chain_lengths_cover_the_tour_and_ramp_down(n, b):
    lengths = chain_lengths(n, b)
    assert lengths.sum() == n and lengths.size == b and lengths.min() >= 1
    assert np.all(np.diff(lengths) <= 0)
    if n >= 100:
        assert (lengths == lengths[0]).sum() <= 2     # few chains run in the last step


def _coder(model_path):
    mf = load_model(model_path)
    g = mf.gmm
    return Coder(mf.model, (g.weights, g.means, np.sqrt(g.variances)))


def test_alice_and_bob_compute_identical_probabilities(binary_model, mnist_subset):
    coder = _coder(binary_model)
    images = mnist_subset[:, None]
    n = len(images)
    tour = np.random.default_rng(0).permutation(n)
    layout = Layout(chain_lengths(n, 6))
    tables = {"alice": [], "bob": []}
    make = coder.pixel_codec

    def recording(side):
        def pixel_codec(logits, active):
            codec = make(logits, active)
            tables[side].append(codec.p.copy())
            return codec
        return pixel_codec

    stack = AnsStack.with_initial_bits(seed_words(2, coder.model.config.latent_dim), 0)
    coder.pixel_codec = recording("alice")
    encode_dataset(coder, images, tour, layout, stack)
    coder.pixel_codec = recording("bob")
    out = decode_dataset(coder, layout, AnsStack.from_bytes(stack.to_bytes(), never_empty=True))
    assert np.array_equal(out, images[tour])
    # Alice codes steps T-1..0 and, within a step, builds tables in reverse raster order (at
    # push time); Bob goes forwards. Compare step by step, every bit of every table.
    per_step = 28 * 28
    alice = [tables["alice"][i:i + per_step] for i in range(0, len(tables["alice"]), per_step)]
    bob = [tables["bob"][i:i + per_step] for i in range(0, len(tables["bob"]), per_step)]
    assert len(alice) == len(bob) == layout.steps
    for a_step, b_step in zip(reversed(alice), bob):
        assert all(np.array_equal(a, b) for a, b in zip(reversed(a_step), b_step))


def test_measured_payload_matches_ideal_code_length(binary_model, mnist_subset):
    coder = _coder(binary_model)
    images = mnist_subset[:, None]
    layout = Layout(chain_lengths(len(images), 6))
    stack = AnsStack.with_initial_bits(seed_words(2, coder.model.config.latent_dim), 0)
    costs = encode_dataset(coder, images, np.arange(len(images)), layout, stack)
    ideal = costs.kl_bits + costs.recon_bits + stack.initial_bits
    assert abs(stack.num_valid_bits - ideal) <= 1e-4 * ideal + 40


def test_prior_tables_leave_out_only_negligible_components():
    from acnzip.protocol import MIN_WEIGHT, _significant
    from codec import DiscretisedMixture
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.full(8, 0.05), size=(6, 4))                     # nearly one-hot
    w[0, 0] = np.r_[0.5, 0.5, np.zeros(6)]                               # a row needing two
    mu, sc = rng.normal(size=w.shape), rng.uniform(0.1, 2, size=w.shape)
    kw, kmu, ksc = _significant(w, mu, sc)
    k = int((w >= MIN_WEIGHT).sum(-1).max())
    assert kw.shape == (6, 4, k) and k < 8
    full = DiscretisedMixture(w, mu, sc).probs
    pruned = DiscretisedMixture(kw, kmu, ksc).probs
    assert np.abs(full - pruned).sum(-1).max() < 8 * MIN_WEIGHT
