"""The ACN's networks: encoder q(z|x), prior p(z|c_hat), Gated PixelCNN decoder r(x|z)."""
from .acn import ACN, LossTerms
from .encoder import Encoder
from .pixelcnn import GatedPixelCNN
from .prior import MixtureParams, Prior, kl_estimate, mixture_log_prob

__all__ = ["ACN", "Encoder", "GatedPixelCNN", "LossTerms", "MixtureParams", "Prior",
           "kl_estimate", "mixture_log_prob"]
