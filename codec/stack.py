"""The ANS stack that every codec pushes onto and pops from.

`AnsStack` wraps constriction's `stream.stack.AnsCoder` (last in, first out) and adds the three
things bits-back coding needs on top of it:

* dtype discipline: symbols are always passed as contiguous int32, parameters as float64;
* an explicit initial-bits policy. constriction decodes past the bottom of its stack without
  complaint: once the state is exhausted every further symbol is the first of its alphabet,
  "for free". We refuse instead: popping from an empty stack raises `StackUnderflowError`.
  Bits-back coding, which must pop before it can push, starts from
  `AnsStack.with_initial_bits`: a seeded supply of random words (cost reported in
  `initial_bits`) on a stack marked `never_empty`, where a pop that leaves less than one
  32-bit word raises (a pop past the bottom always ends there, since constriction's state
  then sits below 2**24);
* serialisation to little-endian 32-bit words (`to_bytes` / `from_bytes`).
"""
from __future__ import annotations

import numpy as np
import constriction

__all__ = ["AnsStack", "CodecError", "StackUnderflowError", "WORD_BITS"]

WORD_BITS = 32
_SEED_SYMBOL_BITS = 16  # seed words are pushed as pairs of uniform 16-bit symbols
_MAX_SYMBOL_BITS = 24  # constriction's default precision: no symbol costs more than 24 bits
_UNDERFLOW = ("pop needs more bits than the stack holds; start bits-back coding from "
              "AnsStack.with_initial_bits(n_words, seed) with a larger supply")


class CodecError(ValueError):
    """Raised when coding cannot proceed: bad parameters, corrupt data, coder failure."""


class StackUnderflowError(CodecError):
    """Raised when a pop would consume the stack's last word (no silent invented bits)."""


def _call_coder(fn, *args):
    # constriction reports bad input with a pyo3 PanicException, which derives from
    # BaseException; turn it (and ValueError/TypeError) into a CodecError.
    try:
        return fn(*args)
    except (ValueError, TypeError) as exc:
        raise CodecError(f"constriction rejected the call: {exc}") from exc
    except BaseException as exc:  # noqa: BLE001 - PanicException only
        if type(exc).__name__ != "PanicException":
            raise
        raise CodecError(f"constriction panicked: {exc}") from None


class AnsStack:
    """A last-in-first-out ANS message: `push` appends symbols, `pop` removes them in reverse."""

    def __init__(self, words: np.ndarray | None = None, *, never_empty: bool = False):
        self.never_empty = never_empty
        if words is None:
            self._coder = constriction.stream.stack.AnsCoder()
        else:
            words = np.ascontiguousarray(words, dtype=np.uint32)
            self._coder = _call_coder(constriction.stream.stack.AnsCoder, words)
        self.initial_bits = 0

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def with_initial_bits(cls, n_words: int, seed: int) -> "AnsStack":
        """A stack holding `n_words` seeded random 32-bit words: the bits-back start-up supply.

        The supply costs `32 * n_words` bits of the final message (reported in `initial_bits`);
        decoding the whole message restores exactly these words, which a decoder can check.
        """
        if n_words < 1:
            raise CodecError("the initial-bits supply needs at least one word")
        stack = cls(never_empty=True)
        rng = np.random.default_rng(seed)
        symbols = rng.integers(0, 1 << _SEED_SYMBOL_BITS, size=2 * n_words, dtype=np.int64)
        stack.push(symbols, constriction.stream.model.Uniform(1 << _SEED_SYMBOL_BITS))
        stack.initial_bits = stack.num_bits
        return stack

    @classmethod
    def from_bytes(cls, data: bytes, *, never_empty: bool = False) -> "AnsStack":
        """Inverse of `to_bytes`; a bits-back decoder passes never_empty=True."""
        if len(data) % 4:
            raise CodecError(f"ANS data must be whole 32-bit words, got {len(data)} bytes")
        return cls(np.frombuffer(data, dtype="<u4").astype(np.uint32), never_empty=never_empty)

    def to_bytes(self) -> bytes:
        """The message as little-endian 32-bit words."""
        return self.words().astype("<u4").tobytes()

    def words(self) -> np.ndarray:
        return np.asarray(self._coder.get_compressed(), dtype=np.uint32).copy()

    def copy(self) -> "AnsStack":
        new = AnsStack.__new__(AnsStack)
        new._coder = self._coder.clone()
        new.initial_bits, new.never_empty = self.initial_bits, self.never_empty
        return new

    # -- size ---------------------------------------------------------------------------------
    @property
    def num_bits(self) -> int:
        """Size of the message in bits, rounded up to whole words (what `to_bytes` writes)."""
        return int(self._coder.num_bits())

    @property
    def num_valid_bits(self) -> int:
        """Information content of the message in bits (not rounded up to words)."""
        return int(self._coder.num_valid_bits())

    def is_empty(self) -> bool:
        return bool(self._coder.is_empty())

    # -- coding -------------------------------------------------------------------------------
    def push(self, symbols, model, *params) -> None:
        """Push `symbols` (any shape, flattened in C order) under `model` with per-symbol params.

        Symbols are pushed so that `pop` returns them in the same (flattened) order. Leaves pass
        parameters already shaped and typed for constriction (float64 or int32 arrays).
        """
        sym = np.ascontiguousarray(np.asarray(symbols).ravel(), dtype=np.int32)
        if sym.size == 0:
            return
        _call_coder(self._coder.encode_reverse, sym, model, *map(np.ascontiguousarray, params))

    def pop(self, model, *params, count: int | None = None) -> np.ndarray:
        """Pop symbols (int32, flat) under `model`; the exact inverse of `push`.

        Give per-symbol `params` arrays, or `count` i.i.d. symbols of a fully specified model.
        Raises `StackUnderflowError` (leaving the stack untouched) if the stack is empty, or,
        on a `never_empty` stack, if the pop would leave less than one word: a pop past the
        bottom always ends there, a genuine one never does once the supply is large enough.
        """
        args = (count,) if count is not None else tuple(map(np.ascontiguousarray, params))
        n = count if count is not None else len(args[0])
        if n == 0:
            return np.zeros(0, dtype=np.int32)
        if self._coder.is_empty():
            raise StackUnderflowError(_UNDERFLOW)
        # A symbol carries at most _MAX_SYMBOL_BITS bits, so a snapshot (a copy of the whole
        # message) is only needed when the pop could reach the bottom of the stack.
        near_bottom = self._coder.num_valid_bits() < WORD_BITS * 2 + _MAX_SYMBOL_BITS * n
        before = self._coder.clone() if near_bottom and self.never_empty else None
        out = _call_coder(self._coder.decode, model, *args)
        if before is not None and self._coder.num_valid_bits() < WORD_BITS:
            self._coder = before
            raise StackUnderflowError(_UNDERFLOW)
        return np.asarray(out, dtype=np.int32)

