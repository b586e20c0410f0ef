"""Table 2: each KL row is the mean of log q(z|x) - log p(z) under the stated prior, computed
independently here; the tour row conditions on the predecessor along the real tour."""
import numpy as np
import pytest
import torch

from acnzip.evaluate import (associative_kl, conditional_kl, evaluate_model, tour_kl,
                             unconditional_kl)
from acnzip.modelfile import load_model
from acnzip.nn.prior import mixture_log_prob
from acnzip.protocol import set_batches
from acnzip.tour import greedy_tour, short_tour


@pytest.fixture(scope="module")
def setup(binary_model, mnist_subset):
    mf = load_model(binary_model)
    x = torch.from_numpy(mnist_subset[:, None])
    with torch.no_grad():
        codes = mf.model.encoder(x)
    eps = torch.randn(codes.shape, generator=torch.Generator().manual_seed(3))
    return mf, x, codes, eps


def _log_q(eps):
    return (-0.5 * eps.double() ** 2 - 0.5 * np.log(2 * np.pi)).sum(1).numpy()


def test_conditional_kl_is_log_q_minus_log_p(setup):
    mf, _, codes, eps = setup
    cond = codes.roll(1, 0)
    with torch.no_grad():
        log_p = mixture_log_prob(codes + eps, mf.model.prior(cond)).double().numpy()
    got = conditional_kl(mf.model, codes, cond, eps, batch=7)          # batching must not matter
    np.testing.assert_allclose(got, _log_q(eps) - log_p, rtol=1e-5, atol=1e-5)


def test_tour_kl_conditions_on_the_predecessor(setup):
    mf, _, codes, eps = setup
    tour = greedy_tour(codes.numpy())
    kl = tour_kl(mf.model, mf.gmm, codes, eps, tour)
    first = tour[0]
    assert kl[first] == pytest.approx(unconditional_kl(mf.gmm, codes[first:first + 1],
                                                       eps[first:first + 1])[0])
    for prev, cur in zip(tour[:5], tour[1:6]):
        one = conditional_kl(mf.model, codes[cur:cur + 1], codes[prev:prev + 1],
                             eps[cur:cur + 1])[0]
        assert kl[cur] == pytest.approx(one, rel=1e-5, abs=1e-5)


def test_table2_rows_add_up_and_recon_is_the_decoder_nll(setup):
    mf, x, codes, eps = setup
    t = evaluate_model(mf.model, mf.gmm, x.numpy(), seed=3, batch=16)
    with torch.no_grad():
        recon = mf.model.decoder.nll(x, mf.model.decoder(x, codes + eps)).double().mean()
    assert t["recon"] == pytest.approx(float(recon), rel=1e-5)
    assert t["kl_uncond"] == pytest.approx(unconditional_kl(mf.gmm, codes, eps).mean(), rel=1e-6)
    assert t["ordered"] == pytest.approx(t["kl_tour"] + t["recon"])
    assert t["kl_short"] == pytest.approx(
        tour_kl(mf.model, mf.gmm, codes, eps, short_tour(codes.numpy())).mean(), rel=1e-6)
    assert t["short"] == pytest.approx(t["kl_short"] + t["recon"])
    assert t["keep"] == pytest.approx(t["kl_keep"] + t["recon"])
    assert t["set"] == pytest.approx(t["kl_set"] + t["recon"])
    assert t["n_images"] == 40 and t["dims_per_image"] == 784
    assert evaluate_model(mf.model, mf.gmm, x.numpy(), seed=3, batch=16) == t      # seeded
    other = evaluate_model(mf.model, mf.gmm, x.numpy(), seed=3, batch=40)
    assert other == pytest.approx(t, rel=1e-5)                                     # batch-free


def test_associative_kl_is_the_mixture_over_the_images_before(setup):
    """With every held image a candidate, each latent's cost is log q(z|x) minus the log of
    w p(z) + (1 - w)/H sum_j p(z | c_j) over the images of the batches before, computed here
    image by image."""
    mf, _, codes, eps = setup
    order = np.random.default_rng(1).permutation(len(codes))
    w = 0.25
    kl = associative_kl(mf.model, mf.gmm, codes, eps, order, batch=4, k=len(codes),
                        base_weight=w)
    z = codes + eps
    start = 0
    for size in set_batches(len(codes), 4):
        for i in order[start:start + size]:
            log_base = mf.gmm.log_prob(z[i:i + 1].double().numpy())[0]
            if start == 0:
                want = -log_base
            else:
                held = torch.from_numpy(order[:start])
                with torch.no_grad():
                    log_p = mixture_log_prob(z[i:i + 1].expand(start, -1),
                                             mf.model.prior(codes[held])).double().numpy()
                want = -np.logaddexp(np.log(w) + log_base,
                                     np.log((1 - w) / start) + np.logaddexp.reduce(log_p))
            assert kl[i] == pytest.approx(_log_q(eps[i:i + 1])[0] + want, rel=1e-5, abs=1e-4)
        start += size
