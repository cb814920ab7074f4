"""Online RLHF with transfer from imperfect reward models (TPO; Huang, Li, Dann, He, arXiv:2502.19255).

KL-regularised utilities in log space (:mod:`~optimlab.rlhf.objective`), reward models and the Bradley–Terry
oracle (:mod:`~optimlab.rlhf.rewards`), finite policies and best-of-n (:mod:`~optimlab.rlhf.policies`), source
selection (:mod:`~optimlab.rlhf.selectors`), preference losses (:mod:`~optimlab.rlhf.losses`), the online learner
(:mod:`~optimlab.rlhf.learner`), the KL-bandit simulator (:mod:`~optimlab.rlhf.env`, :mod:`~optimlab.rlhf.simulate`),
the theoretical block form (:mod:`~optimlab.rlhf.block`) and an optional Hugging Face adapter
(:mod:`~optimlab.rlhf.hf`, needs ``transformers``). ``import optimlab.rlhf`` needs only torch and numpy.
"""

from optimlab.rlhf.block import BlockTPO
from optimlab.rlhf.curves import bootstrap_se, curve_band, plot_bands
from optimlab.rlhf.env import KLBanditEnv
from optimlab.rlhf.learner import TransferPreferenceLearner
from optimlab.rlhf.losses import (
    distill_rpo,
    dpo_loss,
    ipo_loss,
    preference_loss,
    rpo_loss,
    select_pairs,
    xpo_loss,
)
from optimlab.rlhf.objective import (
    coverage,
    coverage_bound,
    kappa,
    kl_divergence,
    kl_optimal_logprobs,
    kl_value,
    log_partition,
    optimal_value,
    suboptimality,
)
from optimlab.rlhf.policies import (
    FinitePolicy,
    FixedPolicy,
    LinearSoftmaxPolicy,
    Policy,
    TabularSoftmaxPolicy,
    best_of_n,
)
from optimlab.rlhf.rewards import (
    BradleyTerryOracle,
    LinearReward,
    NoisySource,
    PreferenceOracle,
    RewardModel,
    SequenceLogProbReward,
    StandardizedReward,
    TabularReward,
)
from optimlab.rlhf.selectors import SourceSelector, ValueUCBSelector, value_ucb
from optimlab.rlhf.simulate import RunLog, run_bandit

__all__ = ["BlockTPO", "BradleyTerryOracle", "FinitePolicy", "FixedPolicy", "HFCausalLMPolicy", "KLBanditEnv",
           "LinearReward", "LinearSoftmaxPolicy", "NoisySource", "Policy", "PreferenceOracle", "RewardModel",
           "RunLog", "SequenceLogProbReward", "SourceSelector", "StandardizedReward", "TabularReward",
           "TabularSoftmaxPolicy", "TransferPreferenceLearner", "ValueUCBSelector", "best_of_n", "bootstrap_se",
           "coverage", "coverage_bound", "curve_band", "distill_rpo", "dpo_loss", "ipo_loss", "kappa",
           "kl_divergence", "kl_optimal_logprobs", "kl_value", "log_partition", "optimal_value", "plot_bands",
           "preference_loss", "rpo_loss", "run_bandit", "select_pairs", "suboptimality", "value_ucb", "xpo_loss"]


def __getattr__(name: str):
    if name == "HFCausalLMPolicy":  # needs transformers only when used
        from optimlab.rlhf.hf import HFCausalLMPolicy

        return HFCausalLMPolicy
    raise AttributeError(f"module 'optimlab.rlhf' has no attribute {name!r}")
