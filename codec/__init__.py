"""codec: model-agnostic bits-back ANS coding over constriction (numpy + constriction only).

A codec is a push/pop pair on an `AnsStack` (see core.py for decode order); leaves.py holds the
entropy models, grid.py the latent bin grid, window.py the posterior on a window of it.
Nothing here knows about images or networks.
"""
from . import exactmath
from .associative import AssociativePrior, nearest
from .core import BitsBack, Codec, Dependent, Serial
from .grid import DEFAULT_GRID, BinGrid
from .leaves import (Bernoulli, Categorical, DiscretisedDiagonalMixture, DiscretisedGaussian,
                     DiscretisedMixture, Uniform, sanitise_table)
from .multiset import Multiset
from .stack import WORD_BITS, AnsStack, CodecError, StackUnderflowError
from .window import WindowedGaussian

__all__ = ["AnsStack", "AssociativePrior", "exactmath", "Multiset", "nearest", "BinGrid", "DEFAULT_GRID", "Bernoulli", "BitsBack", "Categorical",
           "Codec", "CodecError", "Dependent", "DiscretisedDiagonalMixture", "DiscretisedGaussian", "DiscretisedMixture",
           "Serial", "StackUnderflowError", "Uniform", "WindowedGaussian", "WORD_BITS", "sanitise_table"]
