"""The trained model file (`acnzip train -o MODEL.pt`): what it holds and how to load it.

A torch.save'd dict of tensors, numbers, strings, lists and dicts only, loaded with
torch.load(weights_only=True) so a model file (possibly embedded in an archive) can never run
code. Keys:

    format, version        "acnzip-model", 1
    model_config           ModelConfig.to_dict()
    train_config           TrainConfig.to_dict()
    weights                state dict of the ACN with the Polyak-averaged weights
    gmm                    unconditional p(z): {weights (K,), means (K, D), variances (K, D)}
    metadata               command, seed, wall time, machine, steps, final validation, ...
"""
from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write_bytes
from .config import ModelConfig, TrainConfig
from .errors import AcnzipError
from .gmm import DiagonalGMM
from .inputs import open_regular
from .nn import ACN
from .retired import MAX_CHAIN, PACKED_SUFFIX, RetiredFileError, unpack

__all__ = ["ModelFile", "ModelFileError", "save_model", "load_model", "MODEL_FORMAT", "MODELS",
           "DEFAULT_MODEL", "SHIPPED", "RETIRED", "default_model_path", "shipped_model_for",
           "ShippedFile", "is_shipped", "read_model_bytes", "model_file_name",
           "check_fits", "file_sha256"]

MODEL_FORMAT, MODEL_VERSION = "acnzip-model", 1


class ModelFileError(AcnzipError):
    """Not a readable acnzip model file."""


@dataclass
class ModelFile:
    model: ACN                  # in eval mode, averaged weights
    gmm: DiagonalGMM            # unconditional p(z)
    train_config: TrainConfig
    metadata: dict

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def model_bytes(model: ACN, train_config: TrainConfig, gmm: DiagonalGMM, metadata: dict) -> bytes:
    """The model file's bytes (weights moved to the CPU)."""
    blob = {"format": MODEL_FORMAT, "version": MODEL_VERSION,
            "model_config": model.config.to_dict(), "train_config": train_config.to_dict(),
            "weights": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "gmm": gmm.to_dict(), "metadata": metadata}
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.getvalue()


def save_model(path: Path, model: ACN, train_config: TrainConfig, gmm: DiagonalGMM,
               metadata: dict) -> None:
    """Write the model file atomically (temporary file + os.replace)."""
    atomic_write_bytes(Path(path), model_bytes(model, train_config, gmm, metadata))


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes, read 1 MiB at a time (how model files are named)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_model(path, device: str | torch.device = "cpu", name: str | None = None) -> ModelFile:
    """Read a model file (a path, or the bytes themselves; `name` for messages) -> ModelFile.
    Every part is checked (_model_file): a damaged or crafted file, one embedded in an
    archive too, gives a ModelFileError, never a traceback or a huge allocation."""
    what = name or (path if not isinstance(path, (bytes, bytearray)) else "model")
    try:
        src = io.BytesIO(path) if isinstance(path, (bytes, bytearray)) else path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # torch's notes on old pickle protocols
            blob = torch.load(src, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"{what}: no such model file") from None
    except Exception as exc:  # torch raises many types for foreign or damaged files
        raise ModelFileError(f"{what}: not a readable acnzip model "
                             f"({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{what}: not an acnzip model file")
    if blob.get("version") != MODEL_VERSION:
        raise ModelFileError(f"{what}: model file version {str(blob.get('version'))[:20]} is "
                             f"not supported (this acnzip reads version {MODEL_VERSION})")
    try:
        return _model_file(blob, device)
    except Exception as exc:     # a crafted or damaged file: whatever its fields make fail
        why = (f"no field {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else
               str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise ModelFileError(f"{what}: not a usable acnzip model ({why[:200]})") from None


# What a model file may declare; checked before anything is built, so that a crafted file
# (one embedded in an archive too) can neither make acnzip allocate far more than the file
# holds nor loop for ever. Far above any model acnzip trains.
_CONFIG_LIMITS = {"channels": 4, "height": 1 << 14, "width": 1 << 14, "latent_dim": 4096,
                  "prior_components": 4096, "prior_hidden": 1 << 14, "prior_layers": 64,
                  "pixelcnn_blocks": 256, "pixelcnn_filters": 4096, "pixelcnn_kernel": 63,
                  "logistic_components": 256}

# p(z)'s bounds: a log density of a latent on any grid stays finite in float64 (no overflow
# warnings from a crafted file). Every model acnzip has shipped: |means| <= 36, variances in
# [1.0, 131] (the GMM is fitted to c + eps, eps ~ N(0, I)).
GMM_MEAN_LIMIT = 1e6
GMM_VARIANCE_RANGE = (1e-8, 1e12)


def _model_file(blob: dict, device) -> ModelFile:
    """The ModelFile a loaded blob describes, every part checked against the others: the
    configuration within _CONFIG_LIMITS, the weights exactly the architecture's tensors (shapes
    compared on torch's meta device, which allocates nothing), p(z) of the latent size."""
    if not all(isinstance(blob[k], dict) for k in ("model_config", "train_config", "gmm")):
        raise ValueError("its model_config, train_config and gmm must be dicts")
    config = ModelConfig.from_dict(blob["model_config"])
    for name, limit in _CONFIG_LIMITS.items():
        v = getattr(config, name)
        if not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= limit):
            raise ValueError(f"model_config.{name} must be an integer from 1 to {limit}")
    layers = (*config.encoder_channels, *config.encoder_strides)
    if not (len(config.encoder_channels) <= 64 and all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in layers)):
        raise ValueError("model_config's encoder must have at most 64 layers of at most 4096")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in ACN(config).state_dict().items()}
    weights = blob["weights"]
    if not (isinstance(weights, dict) and all(isinstance(v, torch.Tensor)
                                              for v in weights.values())
            and {k: tuple(v.shape) for k, v in weights.items()} == expected):
        raise ValueError("its weights do not match its architecture")
    if not all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point()):
        raise ValueError("its weights are not all finite")
    model = ACN(config).to(device)
    model.load_state_dict(weights)
    gmm = DiagonalGMM.from_dict(blob["gmm"])
    k = gmm.weights.shape[0] if gmm.weights.ndim == 1 else 0
    if not (k >= 1 and gmm.means.shape == gmm.variances.shape == (k, config.latent_dim)):
        raise ValueError("its p(z) does not match its latent size")
    if not (np.all(np.abs(gmm.means) <= GMM_MEAN_LIMIT)
            and np.all((gmm.variances >= GMM_VARIANCE_RANGE[0])
                       & (gmm.variances <= GMM_VARIANCE_RANGE[1]))
            and np.all(gmm.weights >= 0) and abs(gmm.weights.sum() - 1) < 1e-6):
        raise ValueError(f"its p(z) is not a mixture of Gaussians with means within "
                         f"+-{GMM_MEAN_LIMIT:g} and variances in [{GMM_VARIANCE_RANGE[0]:g}, "
                         f"{GMM_VARIANCE_RANGE[1]:g}]")
    metadata = blob["metadata"]
    if not isinstance(metadata, dict):
        raise ValueError("its metadata is not a dict")
    return ModelFile(model.eval(), gmm, TrainConfig.from_dict(blob["train_config"]), metadata)


# -- which model serves which data -------------------------------------------------------------
MODELS = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS / "binarized-mnist.pt"
SHIPPED = {((1, 28, 28), True): "binarized-mnist.pt",      # binarized MNIST-like digits
           ((1, 28, 28), False): "mnist.pt"}               # 8-bit grey MNIST-like digits
# A shipped model that is replaced is never deleted: an archive made with it names only its
# hash, so its file moves here as STEM-SHA16.pt (the first 16 hex digits of its sha256), kept
# packed as STEM-SHA16.pt.packed (retired.py: its difference from the model that replaced it),
# and decompression still finds it.
RETIRED = MODELS / "retired"


@dataclass(frozen=True)
class ShippedFile:
    """A model file shipped with acnzip, found by its hash: its path and its verified bytes."""
    path: Path
    data: bytes

    @property
    def label(self) -> str:
        """How messages name it: 'the shipped model NAME' or 'the retired shipped model NAME'."""
        kind = "shipped" if self.path.parent == MODELS else "retired shipped"
        return f"the {kind} model {model_file_name(self.path)}"


def model_file_name(path: Path) -> str:
    """The model file's name as archives record it (a packed retired file: the .pt's name)."""
    return Path(path).name.removesuffix(PACKED_SUFFIX)


def shipped_model_for(sha256: str, _links: int = 0) -> ShippedFile | None:
    """The file shipped with acnzip whose bytes have this sha256 (64 hex digits): a default
    model of SHIPPED or a retired one (restored exactly if packed), with the bytes that were
    hashed; None if acnzip ships no such file. RetiredFileError if a packed file that should
    hold it cannot be restored."""
    sha256 = sha256.lower()
    key = sha256[:16]
    for path in ([MODELS / n for n in SHIPPED.values()] + sorted(RETIRED.glob(f"*-{key}.pt"))
                 + sorted(RETIRED.glob(f"*-{key}.pt{PACKED_SUFFIX}"))):
        if not path.is_file():
            continue
        if path.name.endswith(PACKED_SUFFIX):
            if _links >= MAX_CHAIN:
                raise RetiredFileError(f"{path.name}: a chain of more than {MAX_CHAIN} packed "
                                       "models")
            data = unpack(path.read_bytes(), lambda s: _data(shipped_model_for(s, _links + 1)),
                          what=path.name)
        else:
            data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == sha256:
            return ShippedFile(path, data)
    return None


def _data(found: ShippedFile | None) -> bytes | None:
    return None if found is None else found.data


def read_model_bytes(path: Path) -> bytes:
    """A model file's bytes: read, or restored if it is a packed retired model (OSError if it
    cannot be read)."""
    path = Path(path)
    with open_regular(path) as f:
        data = f.read()
    if path.name.endswith(PACKED_SUFFIX):
        data = unpack(data, lambda s: _data(shipped_model_for(s)), what=path.name)
    return data


def is_shipped(path: Path) -> bool:
    """A file shipped with acnzip (a default or a retired one): decompression finds it by hash."""
    return Path(path).resolve().parent in (MODELS.resolve(), RETIRED.resolve())


def default_model_path(shape_chw: tuple, binary: bool) -> Path:
    """The shipped model for this kind of image, else a ModelFileError saying what to do."""
    name = SHIPPED.get((tuple(shape_chw), bool(binary)))
    if name and (MODELS / name).exists():
        return MODELS / name
    kind = "binary" if binary else "8-bit"
    raise ModelFileError(f"no shipped model fits {kind} {shape_chw[1]}x{shape_chw[2]}x"
                         f"{shape_chw[0]} images: train one with `acnzip train DATA -o "
                         "MODEL.pt` and pass --model MODEL.pt")


def check_fits(mf: ModelFile, shape_chw, binary: bool, what: str) -> None:
    """ModelFileError unless the model codes images of this shape and kind."""
    cfg = mf.config
    if (cfg.channels, cfg.height, cfg.width) != tuple(shape_chw) or cfg.binary != binary:
        raise ModelFileError(
            f"{what} is for {'binary' if cfg.binary else '8-bit'} {cfg.height}x{cfg.width}x"
            f"{cfg.channels} images, the data are {'binary' if binary else '8-bit'} "
            f"{shape_chw[1]}x{shape_chw[2]}x{shape_chw[0]}")
