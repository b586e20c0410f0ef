"""The default bin grid keeps the discretised KL within 0.01 nats/dim of the continuous KL."""
import subprocess
import sys

import numpy as np
import pytest

from codec import DEFAULT_GRID, DiscretisedGaussian, DiscretisedMixture
from codec.leaves import CATEGORICAL_FLOOR


def continuous_kl_nats(c, w, mu, s):
    """KL(N(c,1) || p) by fine quadrature in numpy, nats, where p is the mixture with the
    codec's floor: (1 - F) sum_m w_m N(mu_m, s_m^2) + F uniform over the grid's span."""
    z = np.linspace(c - 10, c + 10, 400_001)
    log_q = -0.5 * (z - c) ** 2 - 0.5 * np.log(2 * np.pi)
    comp = np.log(w)[:, None] - np.log(s)[:, None] - 0.5 * np.log(2 * np.pi) \
        - 0.5 * ((z[None] - mu[:, None]) / s[:, None]) ** 2
    span = DEFAULT_GRID.n_bins * DEFAULT_GRID.width
    comp = np.concatenate([comp + np.log1p(-CATEGORICAL_FLOOR),
                           np.full((1, z.size), np.log(CATEGORICAL_FLOOR / span))])
    top = comp.max(0)
    log_p = top + np.log(np.exp(comp - top).sum(0))
    return np.sum(np.exp(log_q) * (log_q - log_p)) * (z[1] - z[0])


def discrete_kl_nats(c, w, mu, s):
    q = DiscretisedGaussian(np.array([c])).table()[0]
    q = q / q.sum()
    p = DiscretisedMixture(w[None], mu[None], s[None]).probs[0]
    keep = q > 0
    return np.sum(q[keep] * np.log(q[keep] / p[keep]))


@pytest.mark.parametrize("seed", range(12))
def test_discretised_kl_matches_continuous_for_mixtures_down_to_scale_005(seed):
    rng = np.random.default_rng(seed)
    m = 8
    w, mu = rng.dirichlet(np.ones(m)), rng.normal(0, 1.5, m)
    s = np.exp(rng.uniform(np.log(0.05), np.log(2.0), m))
    c = rng.normal()
    assert abs(discrete_kl_nats(c, w, mu, s) - continuous_kl_nats(c, w, mu, s)) < 0.01


@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_discretised_kl_matches_continuous_for_single_gaussians(scale):
    one = np.ones(1)
    for c in (0.0, 1.0, 2.5):
        d = discrete_kl_nats(c, one, np.array([0.3]), np.array([scale]))
        assert abs(d - continuous_kl_nats(c, one, np.array([0.3]), np.array([scale]))) < 0.01


def test_grid_symbols_and_values():
    assert DEFAULT_GRID.n_bins == 1025 and DEFAULT_GRID.edges().size == 1026
    z = np.array([-100.0, -0.004, 0.008, 7.99, 100.0])
    k = DEFAULT_GRID.index(z)
    assert k.tolist() == [-512, 0, 1, 511, 512]
    assert np.allclose(DEFAULT_GRID.value(k)[1:4], [0, 1 / 64, 511 / 64])


def test_codec_imports_only_numpy_and_constriction():
    code = ("import sys, codec, codec.testing; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'faiss', 'click', 'scipy', 'tqdm', 'PIL', 'acnzip'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
