"""acnzip tune-prior: only the prior's weights change, deterministically, toward lower cost on
tour pairs; the tuned file codes losslessly; the command never replaces its input."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from acnzip.cli import main
from acnzip.config import model_config
from acnzip.evaluate import tour_kl
from acnzip.gmm import DiagonalGMM
from acnzip.modelfile import load_model
from acnzip.nn import ACN
from acnzip.nn.prior import mixture_log_prob
from acnzip.prior_tuning import PriorTuning, PriorTuningError, tune_prior
from acnzip.tour import greedy_tour_reference


def _walk_codes(n, dim, seed):
    """Codes along a noisy random walk: near neighbours exist, as in a trained model's."""
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.normal(0, 0.3, (n, dim)), axis=0)
            + rng.normal(0, 0.1, (n, dim))).astype(np.float32)


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return ACN(model_config("tiny")).eval()


def test_tuning_refuses_tours_of_fewer_than_two_images():
    with pytest.raises(PriorTuningError, match="at least 2 images, not 1"):
        tune_prior(_tiny_model(), _walk_codes(1, 4, 0), PriorTuning(steps=1))


def test_only_the_prior_changes_deterministically_and_its_cost_falls():
    codes = _walk_codes(600, 4, 1)
    held = torch.from_numpy(_walk_codes(300, 4, 2))
    tuning = PriorTuning(set_sizes=(100, 300), steps=400, batch_size=64, lr=3e-3)
    models = [_tiny_model(), _tiny_model()]
    before = {k: v.clone() for k, v in models[0].state_dict().items()}
    eps = torch.randn(held.shape, generator=torch.Generator().manual_seed(0))
    path = greedy_tour_reference(held.numpy())
    gmm = DiagonalGMM(np.ones(1), np.zeros((1, 4)), np.full((1, 4), 4.0))   # first image
    kl_before = tour_kl(models[0], gmm, held, eps, path).mean()
    losses = tune_prior(models[0], codes, tuning)
    tune_prior(models[1], codes, tuning)
    after = models[0].state_dict()
    for key, value in before.items():
        if key.startswith("prior."):
            continue
        assert torch.equal(after[key], value), key              # encoder, decoder untouched
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("prior."))
    for key, value in after.items():
        assert torch.equal(models[1].state_dict()[key], value), key   # same seed, same weights
    assert len(losses) == 4 and losses[-1] < losses[0]
    # on held-out codes of the same kind, the KL along their greedy tour falls
    kl_after = tour_kl(models[0], gmm, held, eps, path).mean()
    assert kl_after < kl_before - 0.5, (kl_before, kl_after)
    # and the file keeps the averaged weights: the model is in eval mode, prior not training
    assert not models[0].prior.training
    z = held[1:] + eps[1:]
    lp = mixture_log_prob(z, models[0].prior(held[:-1]))
    assert torch.isfinite(lp).all()


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def tuned(tmp_path, binary_model):
    rng = np.random.default_rng(3)
    x = (rng.random((60, 28, 28)) < 0.3).astype(np.uint8)
    np.save(tmp_path / "train.npy", x)
    np.save(tmp_path / "valid.npy", x[:12])
    out = tmp_path / "tuned.pt"
    res = _run("tune-prior", binary_model, tmp_path / "train.npy", "-o", out, "--valid",
               tmp_path / "valid.npy", "--set-sizes", "20,60", "--steps", "30", "-q",
               "--threads", "1")
    assert res.exit_code == 0, res.output
    assert "validation before" in res.stderr and "wrote" in res.stderr
    return tmp_path, out


def test_tune_prior_command_writes_a_model_that_codes_losslessly(tuned, binary_model):
    tmp_path, out = tuned
    src, new = load_model(binary_model), load_model(out)
    entry = new.metadata["prior_tuning"]
    assert entry["tuning"]["steps"] == 30 and entry["tuning"]["set_sizes"] == [20, 60]
    assert entry["data"]["n"] == 60 and len(entry["source_sha256"]) == 64
    keys = {"tour", "set", "ordered", "final_valid"}
    assert set(entry["valid_before"]) == set(entry["valid_after"]) == keys
    assert new.metadata["final_valid"] == entry["valid_after"]["final_valid"]
    v = entry["valid_after"]
    assert v["ordered"] == pytest.approx(v["tour"] + v["final_valid"]["recon"])
    # the recon term is the untouched decoder's: the same before and after
    assert v["final_valid"]["recon"] == entry["valid_before"]["final_valid"]["recon"]
    for key, value in src.model.state_dict().items():
        assert torch.equal(new.model.state_dict()[key], value) != key.startswith("prior."), key
    np.testing.assert_array_equal(new.gmm.means, src.gmm.means)
    arc, outdir = tmp_path / "t.acn", tmp_path / "back"
    res = _run("compress", tmp_path / "valid.npy", "-o", arc, "--model", out, "-q")
    assert res.exit_code == 0, res.output
    res = _run("decompress", arc, "-o", outdir, "--model", out, "-q")
    assert res.exit_code == 0, res.output
    back = np.load(next(outdir.glob("*.npy")))
    np.testing.assert_array_equal(back, np.load(tmp_path / "valid.npy"))


def test_tune_prior_never_replaces_its_input_or_an_existing_file(tuned, binary_model):
    tmp_path, out = tuned
    before = out.read_bytes()
    res = _run("tune-prior", out, tmp_path / "train.npy", "-o", out, "--steps", "1", "-q")
    assert res.exit_code == 1 and "already exists (use -f" in res.stderr
    res = _run("tune-prior", out, tmp_path / "train.npy", "-o", out, "-f", "--steps", "1", "-q")
    assert res.exit_code == 1 and "would replace a model file" in res.stderr
    assert out.read_bytes() == before
    res = _run("tune-prior", binary_model, tmp_path / "train.npy", "-o", tmp_path / "x.pt",
               "--set-sizes", "1,5", "-q")
    assert res.exit_code == 2 and "at least 2" in res.output
    assert not (tmp_path / "x.pt").exists()


def test_validation_figures_are_table2s_rows(binary_model):
    """tune-prior's before/after figures are `acnzip eval`'s kl_tour and kl_set, same seed."""
    from acnzip.evaluate import coder_kls, evaluate_model
    mf = load_model(binary_model)
    x = (np.random.default_rng(4).random((30, 1, 28, 28)) < 0.3).astype(np.uint8)
    x[7] = x[3]                                     # a repeated image: the order's bits differ
    table = evaluate_model(mf.model, mf.gmm, x, seed=0)
    got = coder_kls(mf.model, mf.gmm, x, seed=0)
    assert got["kl_tour"] == pytest.approx(table["kl_tour"], rel=1e-12)
    assert got["kl_set"] == pytest.approx(table["kl_set"], rel=1e-12)
