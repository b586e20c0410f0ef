"""The prior's mixture density and the Monte-Carlo KL estimator (nats)."""
import math

import numpy as np
import torch
from torch import distributions as dist

from acnzip.nn import MixtureParams, Prior, kl_estimate, mixture_log_prob


def _random_mixture(B, D, M, seed):
    g = torch.Generator().manual_seed(seed)
    return MixtureParams(torch.randn(B, D, M, generator=g, dtype=torch.double),
                         2 * torch.randn(B, D, M, generator=g, dtype=torch.double),
                         0.2 + torch.rand(B, D, M, generator=g, dtype=torch.double) * 2)


def _mean_estimate(c, p, n, seed):
    """Mean and standard error of n single-sample estimates, per image."""
    g = torch.Generator().manual_seed(seed)
    cs = c.repeat(n, 1)
    ps = MixtureParams(*(t.repeat(n, 1, 1) for t in p))
    kl, _ = kl_estimate(cs, ps, eps=torch.randn(cs.shape, generator=g, dtype=torch.double))
    kl = kl.view(n, -1)
    return kl.mean(0), kl.std(0) / math.sqrt(n)


def _quadrature_kl(c, p):
    """KL(N(c, I) || mixture) per image by numerical integration, dimension by dimension."""
    z = np.linspace(-25, 25, 200001)
    out = np.zeros(len(c))
    for b in range(len(c)):
        for d in range(c.shape[1]):
            q = np.exp(-0.5 * (z - c[b, d].item()) ** 2) / math.sqrt(2 * math.pi)
            w = torch.softmax(p.logits[b, d], -1).numpy()
            mu, s = p.means[b, d].numpy(), p.scales[b, d].numpy()
            dens = np.exp(-0.5 * ((z[:, None] - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))
            pz = (w * dens).sum(1)
            out[b] += np.trapezoid(q * (np.log(q + 1e-300) - np.log(pz + 1e-300)), z)
    return torch.from_numpy(out)


def test_mixture_log_prob_matches_torch_distributions():
    p = _random_mixture(5, 4, 3, seed=0)
    z = torch.randn(5, 4, dtype=torch.double)
    ref = dist.MixtureSameFamily(dist.Categorical(logits=p.logits),
                                 dist.Normal(p.means, p.scales)).log_prob(z).sum(-1)
    assert torch.allclose(mixture_log_prob(z, p), ref, atol=1e-10)


def test_kl_estimator_agrees_with_quadrature_and_large_monte_carlo():
    p = _random_mixture(3, 4, 5, seed=1)
    c = torch.randn(3, 4, dtype=torch.double)
    mean, se = _mean_estimate(c, p, 100_000, seed=2)
    exact = _quadrature_kl(c, p)
    assert torch.all((mean - exact).abs() < 5 * se + 1e-3), (mean, exact, se)


def test_kl_estimator_matches_closed_form_for_one_component():
    p = _random_mixture(4, 3, 1, seed=3)
    c = torch.randn(4, 3, dtype=torch.double)
    mu, s = p.means[..., 0], p.scales[..., 0]
    closed = (torch.log(s) + (1 + (c - mu) ** 2) / (2 * s ** 2) - 0.5).sum(-1)
    mean, se = _mean_estimate(c, p, 100_000, seed=4)
    assert torch.all((mean - closed).abs() < 5 * se), (mean, closed, se)
    assert torch.allclose(_quadrature_kl(c, p), closed, atol=1e-6)


def test_estimator_is_log_q_minus_log_p_and_reparameterised():
    p = _random_mixture(2, 3, 2, seed=5)
    c = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    eps = torch.randn(2, 3, dtype=torch.double)
    kl, z = kl_estimate(c, p, eps=eps)
    assert torch.equal(z, c + eps)
    log_q = dist.Normal(c, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(kl, log_q - mixture_log_prob(z, p))
    kl.sum().backward()
    assert c.grad is not None and torch.all(c.grad != 0)


def test_prior_network_shapes_and_scale_floor():
    torch.manual_seed(0)
    prior = Prior(latent_dim=6, components=4, hidden=32, layers=3, scale_floor=1e-3)
    p = prior(torch.randn(7, 6) * 100)
    assert all(t.shape == (7, 6, 4) for t in p)
    assert torch.all(p.scales >= 1e-3)
    assert torch.allclose(p.weights.sum(-1), torch.ones(7, 6))
