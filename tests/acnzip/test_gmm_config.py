"""The unconditional p(z) (EM, selection, per-dimension conditionals) and config round trips."""
import dataclasses

import numpy as np
import pytest

from acnzip.config import CONFIG_NAMES, ModelConfig, TrainConfig, model_config, train_config
from acnzip.gmm import DiagonalGMM, fit_gmm, select_gmm


def _two_clusters(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(-4, 0.5, (n // 2, 3))
    b = rng.normal(3, 1.0, (n - n // 2, 3))
    return np.concatenate([a, b])[rng.permutation(n)]


def test_em_recovers_two_clusters_and_is_seeded():
    x = _two_clusters(4000, 0)
    gmm, ll = fit_gmm(x, 2, seed=1)
    order = np.argsort(gmm.means[:, 0])
    assert np.allclose(gmm.means[order, 0], [-4, 3], atol=0.1)
    assert np.allclose(np.sqrt(gmm.variances[order, 0]), [0.5, 1.0], atol=0.1)
    assert np.allclose(gmm.weights, 0.5, atol=0.03)
    again, _ = fit_gmm(x, 2, seed=1)
    assert np.array_equal(gmm.means, again.means)
    assert ll == pytest.approx(gmm.log_prob(x).mean())


def test_selection_prefers_the_right_size_and_convolves():
    train, valid = _two_clusters(3000, 2), _two_clusters(1000, 3)
    gmm, report = select_gmm(train, valid, candidates=(1, 2), seed=0)
    assert report[2] > report[1] and len(gmm.weights) == 2
    assert np.all(gmm.variances >= 1.0)          # convolved with N(0, I): a prior for z


def test_codes_in_many_clusters_get_many_components():
    """Trained ACN codes sit in many small clusters: p(z)'s candidates go past 32 (on the
    shipped binarized model's codes 512 components score 1.8 nats/code above 32)."""
    rng = np.random.default_rng(6)
    centres = rng.normal(scale=8.0, size=(128, 16))
    draw = lambda n: centres[rng.integers(128, size=n)] + 0.3 * rng.normal(size=(n, 16))
    gmm, report = select_gmm(draw(4000), draw(1000), (32, 128), seed=0)
    assert report[128] > report[32] + 1.0 and len(gmm.weights) == 128
    assert set(TrainConfig().gmm_components) >= {32, 64, 128, 256, 512}


def test_log_prob_is_the_mixture_density_and_samples_follow_it():
    gmm = fit_gmm(_two_clusters(1000, 4), 3, seed=0)[0].convolved()
    z = np.random.default_rng(5).normal(size=(6, 3)) * 3
    comp = np.exp(-0.5 * ((z[:, None] - gmm.means) ** 2 / gmm.variances)) \
        / np.sqrt(2 * np.pi * gmm.variances)                                  # (6, K, D)
    assert np.allclose(np.log((gmm.weights * comp.prod(-1)).sum(-1)), gmm.log_prob(z))
    draws = gmm.sample(200_000, np.random.default_rng(1))
    assert np.allclose(draws.mean(0), gmm.weights @ gmm.means, atol=0.02)
    back = DiagonalGMM.from_dict(gmm.to_dict())
    assert np.array_equal(back.means, gmm.means)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_named_configs_round_trip_through_dicts(name):
    mc = model_config(name, channels=3, height=32, width=32, binary=False)
    assert ModelConfig.from_dict(mc.to_dict()) == mc
    tc = train_config(name, seed=7, lr=None)
    assert TrainConfig.from_dict(tc.to_dict()) == tc and tc.seed == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        mc.latent_dim = 3


def test_config_defaults_and_validation():
    paper = model_config("paper")
    assert paper.pixelcnn_blocks == 10 and paper.pixelcnn_filters == 64
    assert model_config("cpu").latent_dim == 16 and model_config("cpu").prior_components == 8
    assert TrainConfig().lr == 1e-3 and TrainConfig(optimizer="rmsprop").lr == 1e-5
    assert TrainConfig().polyak_decay == 0.9999 and TrainConfig().knn_k == 5
    with pytest.raises(ValueError, match="unknown config"):
        model_config("huge")
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"latent_dim": 3, "colour": True})
    with pytest.raises(ValueError):
        TrainConfig(optimizer="sgd")
