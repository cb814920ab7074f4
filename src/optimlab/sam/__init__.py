"""Sharpness-aware optimizers as ``torch.optim`` wrappers over any base optimizer.

``import optimlab.sam`` needs only torch.
"""

from optimlab.sam.amp import amp_step
from optimlab.sam.base import SharpnessAware, global_norm, perturbation
from optimlab.sam.infosam import InfoSAM
from optimlab.sam.presam import ASAM, FisherSAM, PreSAM, asam_scale, ema_direction, fisher_scale, snr_weight
from optimlab.sam.sam import SAM
from optimlab.sam.schedule import RhoScheduler
from optimlab.sam.vasso import VaSSO

__all__ = [
           "ASAM",
           "SAM",
           "FisherSAM",
           "InfoSAM",
           "PreSAM",
           "RhoScheduler",
           "SharpnessAware",
           "VaSSO",
           "amp_step",
           "asam_scale",
           "ema_direction",
           "fisher_scale",
           "global_norm",
           "perturbation",
           "snr_weight",
]
