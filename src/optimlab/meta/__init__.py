"""Gradient-based meta-learning with one ``torch.func`` interface: MAML, Meta-SGD and mirror-descent
meta-learning with learned mirror maps (arXiv:1703.03400, arXiv:1707.09835, arXiv:2312.13486), task samplers and
the analytic floors of the synthetic families."""

from optimlab.meta.curvature import MetaCurvature
from optimlab.meta.digits import DigitsFewShot
from optimlab.meta.iaf import BlockIAFMap, ModeLinear
from optimlab.meta.icnn import ICNNGradientMap
from optimlab.meta.learners import MAML, MAPS, EvalResult, GradientMetaLearner, MetaSGD, MirrorMeta
from optimlab.meta.maps import DiagonalAffineMap, ElementwiseMonotoneMap, MirrorMap
from optimlab.meta.tasks import (
    ExpGeometryTasks,
    ParameterVector,
    PoissonTasks,
    QuadraticTasks,
    SinusoidTasks,
    TaskBatch,
)
from optimlab.meta.train import meta_train

__all__ = ["MAML", "MAPS", "BlockIAFMap", "DiagonalAffineMap", "DigitsFewShot", "ElementwiseMonotoneMap",
           "EvalResult", "ExpGeometryTasks", "GradientMetaLearner", "ICNNGradientMap", "MetaCurvature", "MetaSGD", "MirrorMap", "MirrorMeta", "ModeLinear",
           "ParameterVector", "PoissonTasks", "QuadraticTasks", "SinusoidTasks", "TaskBatch", "meta_train"]
