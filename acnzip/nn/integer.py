"""Integer-exact evaluation of a trained ACN, so that every machine computes the same bits.

A float32 network's outputs depend on how its sums are ordered (vector width, threads, batch
shape, CPU or GPU); an entropy coder needs Bob's tables to equal Alice's exactly. Following
Balle, Johnston & Minnen (2019, "Integer networks for data compression"), each layer here:

1. takes **integer activations** in [-127, 127] (`quantise`: x / s rounded half to even and
   clamped, s a fixed per-point scale), or inputs that are integers already (pixels as 2x - 1
   or 2x - 255, latents and codes as bin indices);
2. multiplies them with **integer weights** (per output unit, w_int = round(w / s_w),
   s_w = max |w| / W: int8 at W = 127; 8-bit models' archives of format version 10 fit W per
   output unit, up to 2,047, to what float32 sums exactly: `fitted_weight_levels`) in an
   ordinary float32 matrix product or convolution. Every product
   and partial sum is an integer; while their magnitudes stay below 2**24 every summation
   order (any BLAS blocking, vector width, thread count or batch shape; fused multiply-adds
   included) gives the exact sum. `IntLinear` checks the worst case, |input| max x
   sum |w_int|, per layer and sums in float64 (exact below 2**53) where float32 could round;
3. turns the exact integer sum into a float32 value, acc * (s_in s_w) + b: one correctly
   rounded multiplication and one addition per element, the same everywhere;
4. applies ReLU (exact) or tanh and sigmoid as **tables**: the input rounded to 1/64 (8-bit
   models' archives: 1/1,024) and clamped to [-8, 8] indexes a table computed with
   codec.exactmath; a gate tanh(a) sigmoid(b) is round(G tanh(a) x sigmoid(b)) from two
   lookups, an integer at 1/G (G = 127; 8-bit models' archives: 511).

Convolutions must be sums of products (direct or im2col + GEMM, as torch's CPU kernels are;
not Winograd or FFT: on a GPU, cuDNN must be off). Only exact integer sums and correctly
rounded elementwise float32 operations occur, so the outputs are functions of the inputs and
the model's weights alone. The cached stepper and the full
forward pass compute the same sums and give identical logits (tested).

The activation scales of the points that are not bounded by construction (encoder activations,
the PixelCNN's vertical pre-activations, residual stream and head) are calibrated once on a
batch of images (`calibrate`) and stored with the archive; tanh and sigmoid outputs have the
fixed scale 1/127.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from codec import exactmath

from ..errors import AcnzipError

__all__ = ["IntLinear", "IntegerACN", "Precision", "PRECISION_8BIT", "quantise",
           "quantise_numpy", "relu_numpy", "calibrate", "scale_names", "calibration_rows",
           "bernoulli_p", "softmax_weights", "softmax_table", "Q", "GATE_SCALE",
           "DECODER_LEVELS_8BIT", "WEIGHT_LEVELS_8BIT", "Tables", "tables", "TABLE_STEP",
           "TABLE_STEP_8BIT", "GATE_LEVELS_8BIT", "PRECISION_8BIT_V8", "fitted_weight_levels"]

Q = 127                  # activations are integers in [-Q, Q]
GATE_SCALE = 1.0 / Q     # tanh, sigmoid and gate outputs lie in (-1, 1)
TABLE_STEP = 64          # nonlinearity tables: inputs rounded to 1/64 (Tables) ...
_F32_EXACT = 2.0 ** 24
_F64_EXACT = 2.0 ** 53
_DT = torch.float32      # activations, values and tables
_CODE_MAX = 1 << 20      # codes and latents in bins are clamped to [-2**20, 2**20]
# How finely 8-bit models' integer networks compute (binary models keep every default: their
# integer path costs 0.05 nats/image). Format versions 8 and 9 (PRECISION_8BIT_V8):
# the PixelCNN's activations of 8-bit models take 511 levels each side instead of Q: measured
# on 128 MNIST test images with mnist.pt, recon 545.44 nats/image at Q (float model: 542.70),
# 542.58 at 511 (2.70 of the 2.86 nats gained at the vertical stacks' points); the sums stay
# below 2**24 (fan-in <= 96: 511 x 96 x 127 < 2**24), so float32 and the same speed.
# Binary models keep Q (their loss at Q: 0.05 nats/image).
# The weights of 8-bit models' networks take 511 levels each side instead of Q (per output
# unit): measured on 200 MNIST test images with mnist.pt (each image's own code as z), recon
# 551.62 nats/image with int8 weights against the float model's 548.65; 549.27 at 511 (2.35 of
# the 2.97 nats; 1023: 549.22); of mnist.pt's layers only the prior's output layer (once per
# image, not per pixel) moves to float64 sums for it (IntLinear checks every layer's worst
# case). Binary models keep Q.
# ... and their tables (Tables) take inputs at 1/256 instead of 1/64: the same 200 images with
# z drawn from q(z|x), 511 weight levels: recon 556.68 -> 556.24 (float model: 555.68), at the
# same speed (a lookup either way; 1023 activation levels would gain 0.30 but need float64
# sums in three layers).
# Format version 10 (PRECISION_8BIT): with the 8-block shifted mnist.pt (session 26) the
# version-8 networks cost 2.13 nats/image more than the float model (200 MNIST test images, z
# drawn from q(z|x): 526.36 against 524.23). Now each output unit's weights take as many levels
# (up to 2,047) as keep its sums exact in float32 (`fitted_weight_levels`): the layers fed by
# gates (|x| <= 511) keep about 2,047, those fed by the PixelCNN's activations (1,023 levels)
# 300-1,200, and no layer that summed in float32 moves to float64, so the speed is the same.
# Measured on those images: +0.63 with activations at 1,023 (gates at Q), +0.31 with gates at
# 511 too, +0.27 with tables at 1/1,024 (activations at 2,047 instead: +0.66; gates at 1,023:
# four layers in float64).
DECODER_LEVELS_8BIT = 1023
WEIGHT_LEVELS_8BIT = 2047
TABLE_STEP_8BIT = 1024
GATE_LEVELS_8BIT = 511
NUMPY_PRODUCT_ROWS = 32  # IntLinear.scaled_numpy: numpy's matrix product below this many rows,
                         # torch's from here (faster at 128 rows, slower at 1; measured)


def quantise(x: torch.Tensor, scale: float, levels: int = Q) -> torch.Tensor:
    """Float32 values -> integers (as float32) round(x / scale) clamped to [-levels, levels]."""
    return torch.round(x / scale).clamp_(-levels, levels)


def quantise_numpy(x: np.ndarray, scale: float, levels: int = Q) -> np.ndarray:
    """`quantise` for float32 numpy arrays, the same bits: torch's CPU kernel divides a float32
    tensor by a Python float rounded to float32 (ATen's div_true_kernel), as this does; both
    round half to even and clamp (tested, signed zeros included)."""
    y = x / np.float32(scale)
    np.rint(y, out=y)
    np.minimum(y, levels, out=y)       # np.clip's bits (no NaN here; bounds are not zeros),
    return np.maximum(y, -levels, out=y)   # without its Python wrapper (~4 us a call)


def relu_numpy(x: np.ndarray) -> np.ndarray:
    """torch.relu for float32 numpy arrays, the same bits: negatives become +0, and -0 stays
    -0 as torch keeps it (np.maximum would give +0)."""
    return np.where(x < 0, np.float32(0), x)


def _tanh(x):
    return 1.0 - 2.0 / (exactmath.exp(2.0 * x) + 1.0)


def _sigmoid(x):
    return 1.0 / (1.0 + exactmath.exp(-x))


class Tables:
    """tanh, and the gate tanh(a) sigmoid(b), as lookup tables computed with codec.exactmath
    (the same on every machine): an input is rounded to 1/step and clamped to [-8, 8]; a gate's
    output is an integer in [-gate_levels, gate_levels] at scale 1 / gate_levels.
    Portable archives of format version 8 record `step` (8-bit models: 256), version 10
    `gate_levels` (8-bit models: 511); older ones and binary models' use TABLE_STEP and Q."""

    def __init__(self, step: int = TABLE_STEP, gate_levels: int = Q):
        self.step, self.reach = int(step), 8 * int(step)
        self.gate_levels = int(gate_levels)
        grid = np.arange(-self.reach, self.reach + 1, dtype=np.float64) / self.step
        table = lambda fn: torch.from_numpy(fn(grid)).to(_DT)
        self.tanh_table = table(_tanh)
        # G tanh, then sigmoid: one lookup serves both halves of a gate's input
        self.gate_table = torch.cat([table(lambda u: self.gate_levels * _tanh(u)),
                                     table(_sigmoid)])
        self.gate_table_np = self.gate_table.numpy()
        self._shifts: dict = {}

    def index(self, x: torch.Tensor) -> torch.Tensor:
        """Table index of float32 values: round(step x) clamped to [-8 step, 8 step], shifted
        to >= 0."""
        return torch.round(x * self.step).clamp_(-self.reach, self.reach).add_(self.reach)

    def tanh(self, x: torch.Tensor) -> torch.Tensor:
        """tanh of float32 values, from the table."""
        return torch.take(self.tanh_table, self.index(x).long())

    def _gate_shift(self, channels: int, ndim: int, dim: int) -> torch.Tensor:
        """Per channel along `dim`: the offset of its table in gate_table plus the reach."""
        key = (channels, ndim, dim)
        if key not in self._shifts:
            half = channels // 2
            shift = torch.full((channels,), float(self.reach), dtype=_DT)
            shift[half:] += 2 * self.reach + 1
            self._shifts[key] = shift.view([-1 if d == dim else 1 for d in range(ndim)])
        return self._shifts[key]

    def gate(self, pre: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """The gate tanh(first half) * sigmoid(second half) along `dim`, as integers at
        1 / gate_levels: round(T(a) S(b)) with the tables T = gate_levels tanh and S = sigmoid
        (float32 product); the indices as in `tanh`, both halves looked up at once."""
        idx = torch.round(pre * self.step).clamp_(-self.reach, self.reach)
        idx = idx.add_(self._gate_shift(pre.shape[dim], pre.dim(), dim)).long()
        # index_select on the flat indices: 3x faster than torch.take here (measured)
        t = torch.index_select(self.gate_table, 0, idx.reshape(-1)).view(idx.shape)
        half = pre.shape[dim] // 2
        return torch.round(t.narrow(dim, 0, half) * t.narrow(dim, half, half))

    def gate_numpy(self, pre: np.ndarray) -> np.ndarray:
        """`gate` along the last axis of a float32 numpy array (R, 2F) -> (R, F), the same
        bits: the same float32 operations in the same order (tested)."""
        idx = pre * np.float32(self.step)
        np.rint(idx, out=idx)
        np.minimum(idx, self.reach, out=idx)                 # as quantise_numpy
        np.maximum(idx, -self.reach, out=idx)
        idx += self._gate_shift(pre.shape[-1], 1, 0).numpy()
        t = self.gate_table_np.take(idx.astype(np.intp))
        half = pre.shape[-1] // 2
        out = t[..., :half] * t[..., half:]
        return np.rint(out, out=out)


@functools.lru_cache(maxsize=4)
def tables(step: int = TABLE_STEP, gate_levels: int = Q) -> Tables:
    """The Tables of this step and gate range, built once (the last few used are kept)."""
    return Tables(step, gate_levels)


@dataclass(frozen=True)
class Precision:
    """How finely the integer networks compute: the PixelCNN's activations are integers in
    [-levels, levels] (the encoder's and prior's in [-Q, Q]), every layer's weights in
    [-weight_levels, weight_levels] per output unit (with `fit_weights`: as many levels, up to
    weight_levels, as keep each output's sum exact in float32; `fitted_weight_levels`), the
    tanh and gate tables take inputs at 1/table_step, and the PixelCNN's gates give integers
    in [-gate_levels, gate_levels]. A portable archive's header (`portable`) records each field
    that differs from the default (binary models' and format versions 4 and older: all
    defaults), so that a reader builds exactly the writer's networks."""
    levels: int = Q
    weight_levels: int = Q
    table_step: int = TABLE_STEP
    gate_levels: int = Q
    fit_weights: bool = False

    def header_entries(self) -> dict:
        """The fields a header records: those that differ from the default."""
        default = asdict(Precision())
        return {k: v for k, v in asdict(self).items() if v != default[k]}

    @classmethod
    def from_header(cls, portable: dict) -> "Precision":
        """The precision a header's `portable` entry records (absent fields: the default)."""
        return cls(**{k: type(v)(portable[k]) for k, v in asdict(cls()).items() if k in portable})


PRECISION_8BIT = Precision(DECODER_LEVELS_8BIT, WEIGHT_LEVELS_8BIT, TABLE_STEP_8BIT,
                           GATE_LEVELS_8BIT, fit_weights=True)
PRECISION_8BIT_V8 = Precision(511, 511, 256)        # what format versions 8 and 9 wrote


# -- the pixels' probabilities from the logits ------------------------------------------------
_LOGIT_STEP = 256                     # logits are rounded to 1/256 ...
_LOGIT_REACH = 32 * _LOGIT_STEP       # ... and clamped to [-32, 32]
_P_ONE = _sigmoid(np.arange(-_LOGIT_REACH, _LOGIT_REACH + 1) / _LOGIT_STEP)
_EXP_DOWN = exactmath.exp(-np.arange(_LOGIT_REACH + 1) / _LOGIT_STEP)


def bernoulli_p(logits: torch.Tensor) -> np.ndarray:
    """P(x = 1) for float32 Bernoulli logits (R,), float64 numpy: the sigmoid of the logit
    rounded to 1/256 and clamped to [-32, 32], from a table (the same everywhere)."""
    k = np.rint(logits.numpy().astype(np.float64) * _LOGIT_STEP)
    return _P_ONE[np.clip(k, -_LOGIT_REACH, _LOGIT_REACH).astype(np.int64) + _LOGIT_REACH]


def softmax_weights(logits: torch.Tensor) -> np.ndarray:
    """Unnormalised softmax weights (R, V) of float32 logits (R, V), float64 numpy:
    exp(l - max l) with the difference rounded to 1/256 and floored at -32, from a table.
    The coder's table is exact_table of these: `softmax_table`."""
    return _EXP_DOWN[_steps_down(logits)]


def _steps_down(logits: torch.Tensor) -> np.ndarray:
    """round(256 (max l - l)) capped at 32 * 256, int64 (R, V): the index into _EXP_DOWN."""
    lg = logits.numpy().astype(np.float64)
    d = np.rint((lg.max(axis=-1, keepdims=True) - lg) * _LOGIT_STEP)
    return np.minimum(d, _LOGIT_REACH).astype(np.int64)


# exact_table's integer counts of the _EXP_DOWN entries: every row of softmax weights holds
# _EXP_DOWN[0], the table's largest entry, so exact_table scales every row as it scales the
# whole table, and each weight's count depends on the weight alone
_EXP_COUNTS = exactmath.exact_counts(_EXP_DOWN)


def softmax_table(logits: torch.Tensor) -> np.ndarray:
    """The probability tables (R, V) of float32 logits (R, V): equal, bit for bit, to
    exactmath.exact_table(softmax_weights(logits)) (tested), in a third of its time: the
    counts come from a table, then one integer sum and one division per row."""
    counts = _EXP_COUNTS[_steps_down(logits)]
    return counts / counts.sum(axis=-1, keepdims=True)


def _integer_weights(flat: torch.Tensor, levels) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_int, s_w) of float64 weights (out, n) at `levels` (a number, or one per output):
    s_w = max |w| / levels per output (1 for an all-zero output), w_int = round(w / s_w)."""
    s_w = flat.abs().amax(dim=1) / levels
    s_w = torch.where(s_w > 0, s_w, torch.ones_like(s_w))
    return torch.round(flat / s_w[:, None]), s_w


def fitted_weight_levels(flat: torch.Tensor, in_max: float, cap: int) -> torch.Tensor:
    """Per output of float64 weights (out, n) with inputs |x| <= in_max: the weight levels L
    that keep its exact integer sum below 2**24, so that float32 computes it exactly, as
    float64 (out,) integers. L starts at min(cap, floor((2**24 / in_max - n / 2) m / S)) (m
    = max |w|, S = the correctly rounded sum of |w| (math.fsum): since |round(y)| <= |y| +
    1/2, that bound is met up to rounding) and drops by one while in_max * sum |round(w /
    s_w)| >= 2**24. If some output's start is below Q, the layer's sums need float64 anyway:
    every output then takes `cap`. Every step is exact or one correctly rounded IEEE
    operation, so every machine computes the same levels."""
    out, n = flat.shape
    m = flat.abs().amax(dim=1)
    S = torch.tensor([math.fsum(r) for r in flat.abs().tolist()], dtype=torch.float64)
    room = _F32_EXACT / float(in_max) - n / 2.0
    start = torch.where(S > 0, torch.floor(room * m / torch.where(S > 0, S, 1.0)),
                        torch.full_like(S, float(cap)))
    levels = torch.clamp(start, max=float(cap))
    if room <= 0 or float(levels.min()) < Q:
        return torch.full((out,), float(cap), dtype=torch.float64)
    while True:
        w_int, _ = _integer_weights(flat, levels)
        over = float(in_max) * w_int.abs().sum(dim=1) >= _F32_EXACT
        if not bool(over.any()):
            return levels
        levels = levels - over.double()


class IntLinear:
    """y = W x + b on integer inputs x (..., in) with |x| <= in_max at scale in_scale (x
    stands for in_scale * x): integer weights in [-weight_levels, weight_levels] (per output
    unit, s_w = max |w| / weight_levels; with `fit`, per output the levels of
    `fitted_weight_levels`, at most weight_levels), an exact integer sum, then float32
    acc * (in_scale s_w) + b. `weight` (out, ...) is a linear or convolution weight.

    The sum runs in float32 when the worst case |x| max * sum |w_int| of every output is
    below 2**24, else in float64 (below 2**53, checked): either way it is exact."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, in_scale: float,
                 in_max: float = Q, weight_levels: int = Q, fit: bool = False):
        w = weight.detach().double().cpu()
        flat = w.reshape(w.shape[0], -1)
        levels = fitted_weight_levels(flat, in_max, weight_levels) if fit else weight_levels
        self.levels = levels
        w_int, s_w = _integer_weights(flat, levels)
        w_int = w_int.view(w.shape)
        bound = float(in_max) * float(w_int.reshape(w.shape[0], -1).abs().sum(dim=1).max())
        if not bound < _F64_EXACT:
            raise ValueError(f"integer layer sums could reach {bound:.3g} > 2**53")
        self.dtype = torch.float32 if bound < _F32_EXACT else torch.float64
        self.weight = w_int.to(self.dtype)                             # (out, ...) integers
        self.weight_cl = (self.weight.contiguous(memory_format=torch.channels_last)
                          if w.dim() == 4 else None)
        self.weight_t = w_int.reshape(w.shape[0], -1).T.contiguous().to(self.dtype)
        self.mult = (s_w * float(in_scale)).to(self.dtype)             # (out,)
        b = bias.detach().double().cpu() if bias is not None else torch.zeros(w.shape[0])
        self.bias = b.to(_DT)
        self._numpy = (self.weight_t.numpy(), self.mult.numpy(), self.bias.numpy())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) integers -> (..., out) float32."""
        return self.scaled(x).add_(self.bias)

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        """acc * (in_scale s_w) without the bias, float32 (..., out)."""
        if x.dim() == 2 and self.dtype == _DT:
            return torch.mm(x, self.weight_t).mul_(self.mult)
        acc = torch.mm(x.reshape(-1, x.shape[-1]).to(self.dtype), self.weight_t)
        return acc.mul_(self.mult).to(_DT).view(*x.shape[:-1], -1)

    def scaled_numpy(self, x: np.ndarray) -> np.ndarray:
        """`scaled` for a float32 numpy batch x (R, in) -> (R, out), the same bits: the integer
        sum is exact in any order, so numpy's product (less overhead per call, for small R)
        and torch's (faster for large R; no copy) give the same sums; then the same correctly
        rounded multiplication (and rounding to float32 after a float64 sum)."""
        w_t, mult, _ = self._numpy
        if self.dtype == torch.float64:
            x = x.astype(np.float64)
        acc = x @ w_t if len(x) < NUMPY_PRODUCT_ROWS else \
            torch.mm(torch.from_numpy(x), self.weight_t).numpy()
        acc *= mult
        return acc.astype(np.float32, copy=False)

    def call_numpy(self, x: np.ndarray) -> np.ndarray:
        """`__call__` for a float32 numpy batch x (R, in) -> (R, out), the same bits."""
        y = self.scaled_numpy(x)
        y += self._numpy[2]
        return y

    def conv(self, x: torch.Tensor, stride: int = 1, padding=(0, 0),
             channels_last: bool = False) -> torch.Tensor:
        """The convolution of integer maps x (B, C, H, W) -> (B, out, H', W') float32;
        `channels_last`: computed (and returned) in that memory layout, faster for the
        encoder and the stepper's row slabs, slower for the full pass (measured, 1 thread)."""
        x = x.to(self.dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        acc = F.conv2d(x, self.weight_cl if channels_last else self.weight, None, stride, padding)
        return acc.mul_(self.mult[:, None, None]).to(_DT).add_(self.bias[:, None, None])


DECODER_POINTS = ("v", "h", "out")   # the PixelCNN's quantisation points (v{i}, h{i}, out1/2)


class _Scales:
    """The calibrated activation scales, by name; in calibration mode a missing scale is set
    from the first batch that reaches it (max |x| / levels to 4 significant digits).
    `decoder_levels`: the integer range [-L, L] of the PixelCNN's points (DECODER_POINTS);
    the encoder's and prior's use Q."""

    def __init__(self, values: dict | None, decoder_levels: int = Q):
        self.values = dict(values or {})
        self.calibrating = values is None
        self.decoder_levels = int(decoder_levels)

    def levels(self, name: str) -> int:
        return self.decoder_levels if name.startswith(DECODER_POINTS) else Q

    def __call__(self, name: str, x: torch.Tensor | None = None) -> float:
        if name not in self.values:
            if not self.calibrating or x is None:
                raise KeyError(f"no activation scale for {name!r}")
            top = float(x.abs().max()) if x.numel() else 0.0
            # 4 significant digits: a short header entry, exactly the float the reader parses
            self.values[name] = float(f"{top / self.levels(name):.4g}") if top > 0 else 1.0
        return self.values[name]

    def quantise(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return quantise(x, self(name, x), self.levels(name))


def pixel_ints(x: torch.Tensor, binary: bool) -> tuple[torch.Tensor, float]:
    """Raw pixels -> (integers 2x - 1 or 2x - 255 as float32, their scale): exactly the
    float model's inputs 2x - 1 and x / 127.5 - 1."""
    x = x.to(_DT)
    return (2.0 * x - 1.0, 1.0) if binary else (2.0 * x - 255.0, 1.0 / 255.0)


class IntegerACN:
    """The encoder, prior and PixelCNN of a float ACN evaluated with integer-exact layers.

    `scales`: the calibrated activation scales (None: calibrate on the first call of each
    network, see `calibrate`); `code_width`: the latent bin width, the unit of codes and z;
    `precision`: the activations', weights' and tables' resolution (Precision)."""

    def __init__(self, model, scales: dict | None, code_width: float,
                 precision: Precision = Precision()):
        self.config, self.code_width = model.config, float(code_width)
        self.binary = model.config.binary
        self.precision = precision
        self.tables = tables(precision.table_step, precision.gate_levels)
        self.scales = _Scales(scales, precision.levels)
        self._lins: dict = {}
        self._build_encoder(model.encoder)
        self._build_prior(model.prior)
        self._build_decoder(model.decoder)

    # -- encoder -------------------------------------------------------------------------------
    def _build_encoder(self, enc) -> None:
        self._enc_convs = [m for m in enc.convs if isinstance(m, torch.nn.Conv2d)]
        self._enc_fc = enc.fc

    def _lin(self, key, weight, bias, scale, in_max=Q) -> IntLinear:
        """IntLinear built once per layer (its input scale is known from the first call)."""
        if key not in self._lins:
            self._lins[key] = IntLinear(weight, bias, scale, in_max,
                                        self.precision.weight_levels, self.precision.fit_weights)
        return self._lins[key]

    @torch.no_grad()
    def code_bins(self, x: torch.Tensor) -> np.ndarray:
        """Codes of raw pixels x (B, C, H, W) in latent bins, int64 (B, D): c rounded to the
        nearest multiple of code_width. The same for any batch, on any machine."""
        a, s = pixel_ints(x, self.binary)
        in_max = 1.0 if self.binary else 255.0
        for i, conv in enumerate(self._enc_convs):
            if i:
                s = self.scales(f"enc{i}", a)
                a = quantise(a, s)
            lin = self._lin(("enc", i), conv.weight, conv.bias, s, in_max if i == 0 else Q)
            a = torch.relu(lin.conv(a, conv.stride[0], conv.padding, channels_last=True))
        s = self.scales("enc_fc", a)
        a = quantise(a, s).flatten(1)
        c = self._lin(("enc", "fc"), self._enc_fc.weight, self._enc_fc.bias, s)(a)
        return torch.round(c / self.code_width).clamp(-_CODE_MAX, _CODE_MAX).long().numpy()

    # -- prior ---------------------------------------------------------------------------------
    def _build_prior(self, prior) -> None:
        self._prior = prior

    @torch.no_grad()
    def prior_params(self, code_bins: np.ndarray):
        """p(z | c) for codes in bins (B, D): (weights, means, scales), each (B, D, M) float64
        numpy, computed with exact arithmetic (softmax and softplus with codec.exactmath)."""
        p = self._prior
        c = torch.from_numpy(np.asarray(code_bins, dtype=np.float64)).to(_DT)
        hiddens, h = [], None
        for i, lin in enumerate(p.from_input):
            pre = self._lin(("prior_in", i), lin.weight, lin.bias, self.code_width,
                            _CODE_MAX)(c)
            if h is not None:
                pre = pre + self._lin(("prior_below", i), p.from_below[i - 1].weight, None,
                                      GATE_SCALE)(h)
            h = quantise(self.tables.tanh(pre), GATE_SCALE)
            hiddens.append(h)
        raw = self._lin(("prior_out",), p.out.weight, p.out.bias, GATE_SCALE)(
            torch.cat(hiddens, dim=1))
        raw = raw.view(-1, p.D, p.M, 3).double().numpy()
        logits, means = raw[..., 0], raw[..., 1]
        e = exactmath.exp(logits - logits.max(axis=-1, keepdims=True))
        weights = e / exactmath.sum_last(e)[..., None]
        x = raw[..., 2]
        soft = np.where(x > 30.0, x, exactmath.log(1.0 + exactmath.exp(np.minimum(x, 30.0))))
        return weights, means, soft + p.floor

    # -- PixelCNN ------------------------------------------------------------------------------
    def _build_decoder(self, dec) -> None:
        if dec.logistic:
            raise AcnzipError("portable archives need a 256-way softmax decoder; this model's "
                              "is a logistic mixture: compress with --float")
        self.dec = dec
        self.C, self.V = dec.C, dec.V

    def _block_lins(self, i: int, z_scale: float) -> "_BlockLins":
        return _BlockLins(self, i, z_scale)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """relu -> 1x1 -> relu -> 1x1 on float32 stream values (..., F) -> logits (..., C V)."""
        sc = self.scales
        a = torch.relu(h)
        o = torch.relu(self._head_lin(1, sc("out1", a))(sc.quantise("out1", a)))
        return self._head_lin(2, sc("out2", o))(sc.quantise("out2", o))

    def _head_lin(self, k: int, scale: float) -> IntLinear:
        """The head's k-th 1x1 layer (k = 1, 2), masked, built once."""
        key = (f"out{k}",)
        if key not in self._lins:
            d = self.dec
            conv, mask = (d.out1, d.out1_mask) if k == 1 else (d.out2, d.out2_mask)
            self._lins[key] = IntLinear(conv.weight * mask, conv.bias, scale,
                                        self.scales.levels(f"out{k}"),
                                        self.precision.weight_levels, self.precision.fit_weights)
        return self._lins[key]

    @torch.no_grad()
    def logits(self, x: torch.Tensor, z_bins: np.ndarray) -> torch.Tensor:
        """The full forward pass (teacher forcing): raw pixels x (B, C, H, W) and latent bins
        (B, D) -> float32 logits (B, C, H, W) or (B, C, H, W, 256). Equal, bit for bit, to
        what nn/integer_stepper.py's IntegerStepper gives sub-pixel by sub-pixel."""
        sc = self.scales
        xi, _ = pixel_ints(x, self.binary)
        z = torch.from_numpy(np.asarray(z_bins, dtype=np.float64)).to(_DT)
        v = F.pad(xi, (0, 0, 1, 0))[:, :, :-1]
        h = xi
        hv = None
        for i, b in enumerate(self.dec.blocks):
            p = b.p
            if i:
                h = sc.quantise(f"h{i}", hv)
            L = self._block_lins(i, self.code_width)
            v_pre = L["v"].conv(F.pad(v, (p, p, p, 0)))
            v_pre = v_pre + L["v_cond"](z)[:, :, None, None]
            vq = sc.quantise(f"v{i}", v_pre)
            vh = L["v_to_h"](vq.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            row = (vh + L["h_cond"](z)[:, :, None, None]) + L["h"].bias[:, None, None]
            # horizontal: windows of p+1 columns, column-major (col, channel) like the stepper
            hp = F.pad(h, (p, 0, 0, 0))                                  # (B, C, H, W+p)
            win = hp.unfold(3, p + 1, 1)                                 # (B, C, H, W, p+1)
            win = win.permute(0, 2, 3, 4, 1).reshape(*h.shape[:1], h.shape[2], h.shape[3], -1)
            pre = L["h"].scaled(win).permute(0, 3, 1, 2) + row
            out = L["res"](self.tables.gate(pre).permute(0, 2, 3, 1))
            out = out.permute(0, 3, 1, 2)
            hv = out if b.first else hv + out
            v = self.tables.gate(v_pre)
        o = self._head(hv.permute(0, 2, 3, 1))                           # (B, H, W, C V)
        if self.binary:
            return o.permute(0, 3, 1, 2)
        B, H, W, _ = o.shape
        return o.view(B, H, W, self.C, self.V).permute(0, 3, 1, 2, 4)


class _BlockLins:
    """The IntLinears of PixelCNN block i, by name, each built when first used (so that in
    calibration its input scale is known by then)."""

    def __init__(self, net: IntegerACN, i: int, z_scale: float):
        self.net, self.i, self.z_scale = net, i, z_scale

    def __getitem__(self, name: str) -> IntLinear:
        net, i = self.net, self.i
        b, sc, gates = net.dec.blocks[i], net.scales, net.precision.gate_levels
        pix = (1.0, 1.0) if net.binary else (1.0 / 255, 255.0)    # (scale, max) of pixels
        if name == "v":
            s, top = pix if i == 0 else (1.0 / gates, gates)
            return net._lin(("v", i), b.v_conv.weight, b.v_conv.bias, s, top)
        if name == "h":
            s, top = pix if i == 0 else (sc(f"h{i}"), sc.levels(f"h{i}"))
            hw = b.h_conv.weight * b.h_mask
            # the window in column-major order ((p+1) columns x C_in), as nn/stepper.py has it
            hw = hw[:, :, 0, :].permute(0, 2, 1).reshape(hw.shape[0], -1)
            return net._lin(("h", i), hw, b.h_conv.bias, s, top)
        if name == "v_to_h":
            return net._lin(("vh", i), b.v_to_h.weight, b.v_to_h.bias, sc(f"v{i}"),
                            sc.levels(f"v{i}"))
        if name == "res":
            return net._lin(("res", i), b.h_res.weight * b.res_mask, b.h_res.bias, 1.0 / gates,
                            gates)
        lin = b.v_cond if name == "v_cond" else b.h_cond
        return net._lin((name, i), lin.weight, lin.bias, self.z_scale, _CODE_MAX)


def scale_names(config) -> set[str]:
    """The activation scales an IntegerACN of this ModelConfig needs (what `calibrate` sets)."""
    names = {f"enc{i}" for i in range(1, len(config.encoder_channels))}
    names |= {f"v{i}" for i in range(config.pixelcnn_blocks)}
    names |= {f"h{i}" for i in range(1, config.pixelcnn_blocks)}
    return names | {"enc_fc", "out1", "out2"}


@torch.no_grad()
def calibrate(model, images: torch.Tensor, code_width: float,
              precision: Precision = Precision()) -> dict:
    """Activation scales (name -> float) from one batch of raw images (B, C, H, W): each
    unbounded point's max |value| / its levels (Q, or `precision.levels` for the PixelCNN's),
    set in network order (later points see the quantised earlier ones, computed at
    `precision` as the networks that use the scales compute them). The latents are the
    images' codes."""
    net = IntegerACN(model, None, code_width, precision)
    images = torch.as_tensor(images)
    z = net.code_bins(images)
    net.prior_params(z)
    net.logits(images, z)
    return dict(net.scales.values)


def calibration_rows(n: int, count: int = 64) -> np.ndarray:
    """Which of n images calibrate the scales: `count` spread evenly over the dataset."""
    return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(np.int64))
