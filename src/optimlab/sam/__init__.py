"""Sharpness-aware optimizers as ``torch.optim`` wrappers over any base optimizer.

``import optimlab.sam`` needs only torch. A variant implements one list-level method,
:meth:`SharpnessAware.ascent` (see :mod:`optimlab.sam.base`).
"""

from optimlab.sam.amp import amp_step
from optimlab.sam.base import Ascent, SharpnessAware
from optimlab.sam.batchnorm import batchnorm_guard
from optimlab.sam.functional import perturbation
from optimlab.sam.infosam import InfoSAM
from optimlab.sam.preconditioners import asam_scale, ema_direction, fisher_scale, invvar_weight, snr_weight
from optimlab.sam.presam import ASAM, FisherSAM, PreSAM
from optimlab.sam.sam import SAM
from optimlab.sam.schedule import RhoScheduler
from optimlab.sam.vasso import VaSSO

__all__ = [
    "ASAM",
    "SAM",
    "Ascent",
    "FisherSAM",
    "InfoSAM",
    "PreSAM",
    "RhoScheduler",
    "SharpnessAware",
    "VaSSO",
    "amp_step",
    "asam_scale",
    "batchnorm_guard",
    "ema_direction",
    "fisher_scale",
    "invvar_weight",
    "perturbation",
    "snr_weight",
]
