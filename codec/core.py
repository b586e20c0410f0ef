"""The codec algebra: a codec is a push/pop pair on an `AnsStack`, `pop` the inverse of `push`.

Decode order. The stack is last-in-first-out, so a decoder pops in the reverse of the order in
which the encoder pushed. Every combinator here is written so that `pop` returns parts in their
*natural* order (the order a decoder needs them); `push` therefore pushes the parts in reverse.

    Serial(a, b):            pop a, then b                    (push b, then a)
    Dependent(a, then):      pop a, then b under then(a)      (push b under then(a), then a)
    BitsBack(p, lik, post):  pop z under p, x under lik(z), push z under post(x)
                             (encoder: pop z under post(x), push x under lik(z), push z under p)

Bits-back coding pops before it pushes; start it from `AnsStack.with_initial_bits` (see stack.py).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

from .stack import AnsStack

__all__ = ["Codec", "Serial", "Dependent", "BitsBack"]


class Codec(ABC):
    """Something that can push symbols onto an `AnsStack` and pop them back exactly."""

    @abstractmethod
    def push(self, stack: AnsStack, symbols: Any) -> None:
        """Encode `symbols` onto `stack`."""

    @abstractmethod
    def pop(self, stack: AnsStack) -> Any:
        """Decode and remove symbols from `stack`: the inverse of `push`."""


class Serial(Codec):
    """A tuple of independent parts, one codec each; `pop` returns them in the listed order."""

    def __init__(self, *codecs: Codec):
        self.codecs = codecs

    def push(self, stack, symbols):
        if len(symbols) != len(self.codecs):
            raise ValueError(f"expected {len(self.codecs)} parts, got {len(symbols)}")
        for codec, part in zip(reversed(self.codecs), reversed(tuple(symbols))):
            codec.push(stack, part)

    def pop(self, stack):
        return tuple(codec.pop(stack) for codec in self.codecs)


class Dependent(Codec):
    """A pair (a, b) where b's codec depends on a: `pop` decodes a, then b under `then(a)`."""

    def __init__(self, first: Codec, then: Callable[[Any], Codec]):
        self.first, self.then = first, then

    def push(self, stack, symbols):
        a, b = symbols
        self.then(a).push(stack, b)
        self.first.push(stack, a)

    def pop(self, stack):
        a = self.first.pop(stack)
        return a, self.then(a).pop(stack)


class BitsBack(Codec):
    """Bits-back coding of x with a latent z: prior p(z), likelihood p(x|z), posterior q(z|x).

    The net cost of `push` is -log p(x|z) - log p(z) + log q(z|x) bits: on average the KL plus
    the reconstruction cost, once the stack holds enough bits to pop z from. After a push,
    `last` is (z, likelihood codec, posterior codec), for measuring what each part cost.
    """

    def __init__(self, prior: Codec, likelihood: Callable[[Any], Codec],
                 posterior: Callable[[Any], Codec]):
        self.prior, self.likelihood, self.posterior = prior, likelihood, posterior

    def push(self, stack, x):
        posterior = self.posterior(x)
        z = posterior.pop(stack)
        likelihood = self.likelihood(z)
        likelihood.push(stack, x)
        self.prior.push(stack, z)
        self.last = (z, likelihood, posterior)

    def pop(self, stack):
        z = self.prior.pop(stack)
        x = self.likelihood(z).pop(stack)
        self.posterior(x).push(stack, z)
        return x
