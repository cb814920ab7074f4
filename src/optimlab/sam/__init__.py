"""Sharpness-aware optimizers as ``torch.optim`` wrappers over any base optimizer.

``import optimlab.sam`` needs only torch.
"""

from optimlab.sam.base import SharpnessAware, global_norm, perturbation
from optimlab.sam.sam import SAM

__all__ = ["SAM", "SharpnessAware", "global_norm", "perturbation"]
