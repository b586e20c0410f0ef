"""The Gated PixelCNN is causal in raster order (and R -> G -> B within a pixel), no blind spot."""
import pytest
import torch

from acnzip.config import ModelConfig
from acnzip.nn import GatedPixelCNN


def _cfg(channels, binary, blocks=3, kernel=3, filters=12, h=5, w=6):
    return ModelConfig(channels=channels, height=h, width=w, binary=binary, latent_dim=3,
                       pixelcnn_blocks=blocks, pixelcnn_filters=filters, pixelcnn_kernel=kernel)


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
    if not cfg.binary:                       # 256 logits: a random projection of them
        out = out @ torch.randn(256, generator=gen, dtype=torch.double)
    (grad,) = torch.autograd.grad(out.sum(), x)
    return grad.abs().sum(0)


def _position(g, r, c, cfg):
    """Raster order with channels innermost: (r, c, g)."""
    return (r * cfg.width + c) * cfg.channels + g


@pytest.mark.parametrize("channels, binary, kernel", [(1, True, 3), (1, True, 5), (1, False, 3),
                                                      (3, False, 3), (3, False, 5), (3, True, 3)])
def test_pixelcnn_is_causal(channels, binary, kernel):
    torch.manual_seed(channels * 10 + kernel)
    cfg = _cfg(channels, binary, kernel=kernel)
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
