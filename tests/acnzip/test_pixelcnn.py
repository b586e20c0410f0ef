"""The Gated PixelCNN is causal in raster order (and R -> G -> B within a pixel), no blind spot."""
import pytest
import torch

from acnzip.config import ModelConfig
from acnzip.nn import GatedPixelCNN
from acnzip.nn.pixelcnn import logistic_log_probs


def _cfg(channels, binary, blocks=3, kernel=3, filters=12, h=5, w=6, likelihood="softmax"):
    return ModelConfig(channels=channels, height=h, width=w, binary=binary, latent_dim=3,
                       pixelcnn_blocks=blocks, pixelcnn_filters=filters, pixelcnn_kernel=kernel,
                       likelihood=likelihood)


def _input_grads(net, cfg, r, c, g, seed=0):
    """|d logits[(r, c, g)] / d x| summed over a batch of 8 (so no pixel has all head ReLUs
    off): (C, H, W)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (8, cfg.channels, cfg.height, cfg.width)
    x = (torch.rand(shape, generator=gen) < 0.5).double() if cfg.binary else \
        torch.randint(0, 256, shape, generator=gen).double()
    x.requires_grad_(True)
    logits = net(x, torch.randn(8, cfg.latent_dim, generator=gen, dtype=torch.double))
    out = logits[:, g, r, c]
    if not cfg.binary:                       # V outputs: a random projection of them
        out = out @ torch.randn(net.V, generator=gen, dtype=torch.double)
    (grad,) = torch.autograd.grad(out.sum(), x)
    return grad.abs().sum(0)


def _position(g, r, c, cfg):
    """Raster order with channels innermost: (r, c, g)."""
    return (r * cfg.width + c) * cfg.channels + g


@pytest.mark.parametrize("channels, binary, kernel, likelihood", [
    (1, True, 3, "softmax"), (1, True, 5, "softmax"), (1, False, 3, "softmax"),
    (3, False, 3, "softmax"), (3, False, 5, "softmax"), (3, True, 3, "softmax"),
    (3, False, 3, "logistic")])
def test_pixelcnn_is_causal(channels, binary, kernel, likelihood):
    torch.manual_seed(channels * 10 + kernel)
    cfg = _cfg(channels, binary, kernel=kernel, likelihood=likelihood)
    net = GatedPixelCNN(cfg).double()
    for r in range(cfg.height):
        for c in range(cfg.width):
            for g in range(cfg.channels):
                grad = _input_grads(net, cfg, r, c, g)
                i = _position(g, r, c, cfg)
                for gj in range(cfg.channels):
                    for rj in range(cfg.height):
                        for cj in range(cfg.width):
                            if _position(gj, rj, cj, cfg) >= i:
                                assert grad[gj, rj, cj] == 0, (g, r, c, "sees", gj, rj, cj)
                if i > 0:
                    assert grad.sum() > 0
                if c > 0:                                # the pixel to the left
                    assert grad[:, r, c - 1].min() > 0
                if r > 0 and c + 1 < cfg.width:          # above right: no blind spot
                    assert grad[:, r - 1, c + 1].min() > 0
                if g > 0:                                # earlier channels of this pixel
                    assert grad[:g, r, c].min() > 0


def test_deep_enough_network_sees_every_earlier_pixel():
    """With receptive field >= the image, every earlier sub-pixel influences the logits."""
    torch.manual_seed(0)
    cfg = _cfg(3, False, blocks=5, kernel=3, filters=9, h=4, w=5)
    net = GatedPixelCNN(cfg).double()
    for r, c, g in [(3, 4, 2), (3, 0, 1), (2, 2, 0)]:
        grad = _input_grads(net, cfg, r, c, g)
        i = _position(g, r, c, cfg)
        for gj in range(3):
            for rj in range(cfg.height):
                for cj in range(cfg.width):
                    earlier = _position(gj, rj, cj, cfg) < i
                    assert (grad[gj, rj, cj] > 0) == earlier, (gj, rj, cj)


@pytest.mark.parametrize("channels, binary", [(1, True), (3, False)])
def test_logit_shapes_and_nll_in_nats(channels, binary):
    cfg = _cfg(channels, binary)
    net = GatedPixelCNN(cfg)
    x = torch.randint(0, 2 if binary else 256, (4, channels, cfg.height, cfg.width))
    logits = net(x, torch.randn(4, cfg.latent_dim))
    V = () if binary else (256,)
    assert logits.shape == (4, channels, cfg.height, cfg.width, *V)
    # Zero logits: log 2 nats per binary sub-pixel, log 256 per 8-bit one.
    nats = net.nll(x, torch.zeros_like(logits))
    per = torch.log(torch.tensor(2.0 if binary else 256.0))
    assert torch.allclose(nats, per * channels * cfg.height * cfg.width * torch.ones(4))


def test_logistic_mixture_masses_are_the_logistic_cdf_differences():
    """One component: P(x) = sigmoid((x' + 1/255 - mu)/s) - sigmoid((x' - 1/255 - mu)/s) on
    x' = x/127.5 - 1, the end levels taking the tails; masses sum to 1; a mixture is the
    weighted sum; per-level and whole-table evaluation agree."""
    mu, log_s = 0.1, -3.0
    params = torch.tensor([[0.0, mu, log_s]], dtype=torch.float64)
    got = logistic_log_probs(params)[0].exp()                          # (256,)
    x = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    cdf = lambda v: torch.sigmoid((v - mu) / torch.exp(torch.tensor(log_s)))
    want = cdf(x + 1 / 255) - cdf(x - 1 / 255)
    want[0], want[255] = cdf(x[0] + 1 / 255), 1 - cdf(x[255] - 1 / 255)
    exact = want > 1e-5             # far tails: density x bin width (PixelCNN++), within 1%
    assert torch.allclose(got[exact], want[exact], rtol=1e-9)
    assert torch.allclose(got[~exact], want[~exact], rtol=1e-2)
    assert abs(float(got.sum()) - 1) < 1e-6
    two = torch.tensor([[0.3, -1.2, 0.1, 0.7, -2.0, -4.0]], dtype=torch.float64)
    w = torch.softmax(two[0, :2], 0)
    parts = [logistic_log_probs(two[:, [k, 2 + k, 4 + k]])[0].exp() for k in (0, 1)]
    assert torch.allclose(logistic_log_probs(two)[0].exp(), w[0] * parts[0] + w[1] * parts[1])
    levels = torch.tensor([[0, 17, 128, 255]])
    direct = logistic_log_probs(two.expand(4, 6)[None], levels)[0]
    assert torch.allclose(direct, logistic_log_probs(two)[0, levels[0]])


def test_logistic_head_shapes_and_nll():
    cfg = _cfg(1, False, likelihood="logistic")
    net = GatedPixelCNN(cfg)
    x = torch.randint(0, 256, (4, 1, cfg.height, cfg.width))
    out = net(x, torch.randn(4, cfg.latent_dim))
    assert out.shape == (4, 1, cfg.height, cfg.width, 3 * cfg.logistic_components)
    table = net.log_probs(out)                                          # (..., 256)
    want = -table.gather(-1, x[..., None].long())[..., 0].sum((1, 2, 3))
    assert torch.allclose(net.nll(x, out), want, rtol=1e-5)
