"""Model and training configurations: frozen dataclasses, named presets, dict round trip.

Configs are stored inside checkpoints and model files as plain dicts (`to_dict`), so a model
can be rebuilt from its file alone (`from_dict`). The image shape and `binary` come from the
data; a named preset fixes only the architecture (`model_config(name, ...)`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["ModelConfig", "TrainConfig", "CONFIG_NAMES", "model_config", "train_config",
           "DEFAULT_LR"]


def _tuples(d: dict) -> dict:
    """JSON/pickle-friendly lists back to the tuples the frozen dataclasses hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


class _DictMixin:
    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**_tuples(d))


@dataclass(frozen=True)
class ModelConfig(_DictMixin):
    """Architecture of an ACN: encoder, prior p(z|c_hat) and Gated PixelCNN decoder."""
    channels: int = 1                 # C: 1 grey, 3 RGB (R -> G -> B ordering in the decoder)
    height: int = 28                  # H
    width: int = 28                   # W
    binary: bool = True               # Bernoulli pixels {0,1}; else 256-way categorical
    latent_dim: int = 16              # D
    prior_components: int = 8         # M Gaussians per latent dimension
    prior_hidden: int = 512           # tanh units per hidden layer of the prior MLP
    prior_layers: int = 3
    encoder_channels: tuple = (64, 64, 128, 128, 256)   # one 3x3 conv per entry
    encoder_strides: tuple = (1, 2, 1, 2, 1)            # 2 = halve height and width
    pixelcnn_blocks: int = 10
    pixelcnn_filters: int = 64        # F feature maps per stack
    pixelcnn_kernel: int = 5          # k: odd; vertical k x (k//2+1), horizontal 1 x (k//2+1)
    scale_floor: float = 1e-3         # prior scales = softplus(.) + floor
    likelihood: str = "softmax"       # 8-bit sub-pixels: "softmax" (256-way) or "logistic"
    logistic_components: int = 10     # L of the discretised logistic mixture (PixelCNN++)

    def __post_init__(self):
        if len(self.encoder_channels) != len(self.encoder_strides):
            raise ValueError("encoder_channels and encoder_strides differ in length")
        if self.pixelcnn_kernel % 2 == 0 or self.pixelcnn_kernel < 3:
            raise ValueError("pixelcnn_kernel must be odd and >= 3")
        if self.likelihood not in ("softmax", "logistic") or self.logistic_components < 1:
            raise ValueError("likelihood must be softmax or logistic, with >= 1 components")
        if self.pixelcnn_filters < self.channels:
            raise ValueError("pixelcnn_filters must be >= channels (one group per channel)")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


DEFAULT_LR = {"adam": 1e-3, "rmsprop": 1e-5}


@dataclass(frozen=True)
class TrainConfig(_DictMixin):
    """Hyper-parameters of Algorithm 1 (what changes the trained weights, not how it is run)."""
    batch_size: int = 64
    lr: float | None = None           # None: DEFAULT_LR[optimizer]
    optimizer: str = "adam"           # "adam" | "rmsprop" (paper: RMSprop lr 1e-5, momentum 0.9)
    momentum: float = 0.9             # RMSprop only
    polyak_decay: float = 0.9999      # EMA of the weights (with warm-up, see train.Polyak)
    knn_k: int = 5                    # c_hat uniform among the K nearest stored codes
    neighbours: str = "knn"           # c_hat: "knn" (Algorithm 1) | "tour" (see trainer)
    tour_sizes: tuple = (2500, 5000, 10000, 25000)   # "tour": subset sizes of the tours
    tour_every: int = 500             # "tour": steps between rebuilds of the tours
    kl_warmup: int = 0                # steps over which the KL weight rises 0 -> 1 (0: none)
    shift: int = 0                    # translate each training image by up to this many pixels
    epochs: int = 10
    seed: int = 0
    valid_every: int = 1000           # steps between validations (and at every epoch end)
    valid_images: int = 1000          # validation subset size for the periodic check
    gmm_components: tuple = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # candidates for p(z)

    def __post_init__(self):
        if self.optimizer not in DEFAULT_LR:
            raise ValueError(f"optimizer must be one of {sorted(DEFAULT_LR)}")
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.optimizer])
        if self.batch_size < 1 or self.knn_k < 1 or self.epochs < 0 or self.shift < 0:
            raise ValueError("batch_size and knn_k must be >= 1, epochs and shift >= 0")
        if self.neighbours not in ("knn", "tour"):
            raise ValueError("neighbours must be knn or tour")
        if self.tour_every < 1 or not self.tour_sizes or min(self.tour_sizes) < 2:
            raise ValueError("tour_every must be >= 1 and every tour size >= 2")
        if not 0.0 <= self.polyak_decay < 1.0:
            raise ValueError("polyak_decay must be in [0, 1)")


_ARCH = {
    # ACN paper, binarized MNIST: D=16, M=8, VGG-ish 5-layer encoder, 10 gated blocks x 64 5x5.
    "paper": dict(latent_dim=16, prior_components=8, encoder_channels=(64, 64, 128, 128, 256),
                  encoder_strides=(1, 2, 1, 2, 1), pixelcnn_blocks=10, pixelcnn_filters=64,
                  pixelcnn_kernel=5),
    # Trainable on 2 CPU cores: 77 images/s fwd+bwd at batch 64 on 1 thread, 125 on 2
    # (`paper`: 11 and 21), 1.6M parameters.
    "cpu": dict(latent_dim=16, prior_components=8, encoder_channels=(32, 32, 64, 64, 128),
                encoder_strides=(1, 2, 1, 2, 1), pixelcnn_blocks=5, pixelcnn_filters=32,
                pixelcnn_kernel=5),
    # For tests: seconds, not minutes.
    "tiny": dict(latent_dim=4, prior_components=2, prior_hidden=32, encoder_channels=(8, 16),
                 encoder_strides=(2, 2), pixelcnn_blocks=2, pixelcnn_filters=8,
                 pixelcnn_kernel=3),
}
_TRAIN = {
    "paper": dict(polyak_decay=0.9999, epochs=100),
    # KL warm-up: with Adam at 1e-3 and no warm-up the decoder ignored z (KL 0.5 nats/image
    # after 400 steps, measured); the paper's slow RMSprop (1e-5) does not need it.
    "cpu": dict(polyak_decay=0.999, epochs=10, kl_warmup=3000),
    "tiny": dict(batch_size=16, polyak_decay=0.99, epochs=1, valid_every=50, valid_images=64),
}
CONFIG_NAMES = tuple(_ARCH)


def model_config(name: str, channels: int = 1, height: int = 28, width: int = 28,
                 binary: bool = True, **overrides) -> ModelConfig:
    """The named architecture for images of shape (channels, height, width); `overrides`
    (ModelConfig fields, e.g. pixelcnn_blocks) replace the preset's values."""
    if name not in _ARCH:
        raise ValueError(f"unknown config {name!r} (choose from {', '.join(CONFIG_NAMES)})")
    return ModelConfig(channels=channels, height=height, width=width, binary=binary,
                       **{**_ARCH[name], **overrides})


def train_config(name: str, **overrides) -> TrainConfig:
    """The named training preset; `overrides` that are None are ignored."""
    if name not in _TRAIN:
        raise ValueError(f"unknown config {name!r} (choose from {', '.join(CONFIG_NAMES)})")
    kw = dict(_TRAIN[name])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**kw)
