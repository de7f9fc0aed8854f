"""CIAGAN networks: generator, critic, siamese identity network, and spectral-norm folding."""

from ciagan_core.models.discriminator import Discriminator
from ciagan_core.models.folding import fold_spectral_norm
from ciagan_core.models.generator import FLOPS_PER_FACE, IMAGE_SIZE, Generator
from ciagan_core.models.identity import IdentityNet

__all__ = [
    "FLOPS_PER_FACE",
    "IMAGE_SIZE",
    "Discriminator",
    "Generator",
    "IdentityNet",
    "fold_spectral_norm",
]
